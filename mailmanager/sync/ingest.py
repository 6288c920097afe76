"""Writes one fetched batch into the database, idempotently, inside the caller's transaction.

`store_batch` upserts messages (one per key, see `models`), their locations, participants,
raw bytes and quarantined items, applies removals and flag changes, threads the new messages
and refreshes the summaries of the threads it touched. Running it twice on the same batch
changes nothing the second time, which is what makes a crash at any moment harmless: the
sync engine commits the folder cursor in the same transaction, so a batch is either wholly
in the database with its cursor, or not at all and fetched again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import events
from mailmanager.db import models, store
from mailmanager.db.models import Message, MessageLocation, Participant
from mailmanager.mail import parsing
from mailmanager.sync import threadstore
from mailmanager.sync.threadstore import clean, stored_message_id


@dataclass(frozen=True)
class MailboxContext:
    """What ingest needs to know about the mailbox a batch comes from."""

    mailbox_id: int
    own_addresses: frozenset[str]
    org_domains: frozenset[str]
    subject_fallback: bool = True
    subject_window: timedelta = timedelta(days=14)
    keep_raw: bool = True
    # Later stages' reactions to a thread merge (see `mailmanager.events`).
    on_merge: tuple[events.MergeHook, ...] = ()


@dataclass(frozen=True)
class Fetched:
    """One fetched item with its parse result."""

    provider_id: str
    raw: bytes
    parsed: parsing.ParsedMessage | parsing.Quarantined
    flags: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    thread_hint: str | None = None


def _is_internal(address: str, ctx: MailboxContext) -> bool:
    if address in ctx.own_addresses:
        return True
    domain = address.rpartition("@")[2]
    while domain:
        if domain in ctx.org_domains:
            return True
        domain = domain.partition(".")[2]
    return False


def direction(p: parsing.ParsedMessage, ctx: MailboxContext) -> str:
    """outbound when sent by the mailbox owner or the organization; internal when everyone
    involved is internal; inbound otherwise."""
    sender = p.from_[0].email if p.from_ else ""
    if not sender or not _is_internal(sender, ctx):
        return "inbound"
    everyone = [a.email for a in (*p.to, *p.cc, *p.bcc)]
    if everyone and all(_is_internal(a, ctx) for a in everyone):
        return "internal"
    return "outbound"


def _fingerprint(from_email: str, sent_at: datetime | None, subject_norm: str) -> tuple[Any, ...]:
    return (from_email, sent_at, subject_norm)


def _message_row(p: parsing.ParsedMessage, key: str, ctx: MailboxContext) -> dict[str, Any]:
    sender = p.from_[0] if p.from_ else None
    bounce = ""
    if p.bounce is not None:
        bounce = json.dumps(
            {
                "recipients": list(p.bounce.recipients),
                "permanent": p.bounce.permanent,
                "status": p.bounce.status,
                "original_message_id": p.bounce.original_message_id,
            }
        )
    attachments = ""
    if p.attachments:
        attachments = json.dumps(
            [[a.filename, a.content_type, a.size] for a in p.attachments], ensure_ascii=False
        )
    return {
        "key": key,
        "message_id": stored_message_id(p),
        "message_id_synthetic": p.message_id_synthetic,
        "subject": clean(p.subject),
        "subject_normalized": clean(p.subject_normalized, 500),
        "sent_at": p.date,
        "date_source": p.date_source,
        "direction": direction(p, ctx),
        "from_email": clean(sender.email, 320) if sender else "",
        "from_name": clean(sender.name, 300) if sender else "",
        "is_auto_reply": p.is_auto_reply,
        "is_out_of_office": p.is_out_of_office,
        "is_bulk": p.is_bulk,
        "is_bounce": p.is_bounce,
        "is_calendar": p.is_calendar,
        "list_id": clean(p.list_id, 300) if p.list_id else None,
        "snippet": clean(p.snippet),
        "size": p.size,
        "sha256": p.sha256,
        "in_reply_to": clean(" ".join(p.in_reply_to)),
        "references": clean(" ".join(p.references)),
        "attachments": clean(attachments),
        "bounce": clean(bounce),
        "defects": " ".join(p.defects),
        "created_at": models.utcnow(),
    }


ROLES = ("from_", "sender", "reply_to", "to", "cc", "bcc")


def _participant_rows(message_id: int, p: parsing.ParsedMessage) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for role in ROLES:
        for addr in getattr(p, role):
            rows.append(
                {
                    "message_id": message_id,
                    "role": role.rstrip("_"),
                    "email": clean(addr.email, 320),
                    "name": clean(addr.name, 300),
                }
            )
    return rows


def _resolve_keys(
    session: Session, parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]]
) -> tuple[dict[int, int], dict[int, str]]:
    """Decide, per batch item, which existing message it is, or which new key it gets.

    Returns (index → existing message id, index → new key). A Message-ID seen with other
    bytes is the same message when sender, date and subject agree (a Sent copy, a CRLF copy,
    another mailbox's copy); otherwise it is a reused Message-ID and gets a suffixed key.
    """
    ids = sorted({stored_message_id(p) for _, p in parsed})
    known: dict[str, list[tuple[int | str, str, tuple[Any, ...]]]] = {}
    for chunk in store.chunks(ids):
        rows = session.execute(
            sa.select(
                Message.id,
                Message.message_id,
                Message.sha256,
                Message.from_email,
                Message.sent_at,
                Message.subject_normalized,
            ).where(Message.message_id.in_(chunk))
        )
        for mid, msgid, sha, frm, sent, subj in rows:
            known.setdefault(msgid, []).append((mid, sha, _fingerprint(frm, sent, subj)))
    existing: dict[int, int] = {}
    new_keys: dict[int, str] = {}
    batch_new: dict[str, int] = {}  # new key → first batch index using it
    for index, (_, p) in enumerate(parsed):
        fp = _fingerprint(
            clean(p.from_[0].email, 320) if p.from_ else "",
            p.date,
            clean(p.subject_normalized, 500),
        )
        match: int | str | None = None
        for ident, sha, kfp in known.get(stored_message_id(p), ()):
            if sha == p.sha256 or kfp == fp:
                match = ident
                break
        if isinstance(match, int):
            existing[index] = match
            continue
        if isinstance(match, str):  # a key created earlier in this batch
            new_keys[index] = match
            continue
        taken = known.get(stored_message_id(p))
        key = stored_message_id(p) if not taken else f"{stored_message_id(p)}#{p.sha256[:16]}"
        if key in batch_new:
            new_keys[index] = key
            continue
        batch_new[key] = index
        new_keys[index] = key
        known.setdefault(stored_message_id(p), []).append((key, p.sha256, fp))
    return existing, new_keys


def store_batch(
    session: Session,
    ctx: MailboxContext,
    folder_id: int,
    items: Sequence[Fetched],
    removed: Sequence[str] = (),
    flag_changes: Iterable[tuple[str, frozenset[str]]] = (),
) -> events.BatchResult:
    """Write one batch; see the module docstring. The caller commits."""
    result = events.BatchResult()
    now = models.utcnow()
    parsed = [(f, f.parsed) for f in items if isinstance(f.parsed, parsing.ParsedMessage)]
    quarantined = [f for f in items if isinstance(f.parsed, parsing.Quarantined)]

    existing, new_keys = _resolve_keys(session, parsed)
    # Insert each new key once, then map every batch index to a message id.
    first_index: dict[str, int] = {}
    for index, key in new_keys.items():
        first_index.setdefault(key, index)
    new_rows = [_message_row(parsed[i][1], key, ctx) for key, i in first_index.items()]
    key_to_id: dict[str, int] = {}
    if new_rows:
        t = store.table(Message)
        # Keys are unique, so RETURNING needs no order: batched, not a statement per row.
        returned = session.execute(sa.insert(t).returning(t.c.id, t.c.key), new_rows)
        key_to_id = {key: mid for mid, key in returned}
    result.new_messages = len(new_rows)
    result.message_ids = list(key_to_id.values())
    message_of: dict[int, int] = dict(existing)
    for index, key in new_keys.items():
        message_of[index] = key_to_id[key]

    participant_rows: list[dict[str, Any]] = []
    raw_rows: list[dict[str, Any]] = []
    for key, index in first_index.items():
        fetched, p = parsed[index]
        participant_rows.extend(_participant_rows(key_to_id[key], p))
        if ctx.keep_raw:
            raw_rows.append({"sha256": p.sha256, "data": fetched.raw})
    if participant_rows:
        session.execute(sa.insert(store.table(Participant)), participant_rows)
    store.insert_ignore(session, store.table(models.MessageRaw), raw_rows)

    # Locations: new ones are counted, known ones refreshed (seen_at feeds the rescan sweep).
    provider_ids = [f.provider_id for f, _ in parsed]
    known_locations: set[str] = set()
    for chunk in store.chunks(provider_ids):
        known_locations.update(
            session.scalars(
                sa.select(MessageLocation.provider_id).where(
                    MessageLocation.folder_id == folder_id,
                    MessageLocation.provider_id.in_(chunk),
                )
            )
        )
    location_rows = {
        f.provider_id: {
            "folder_id": folder_id,
            "provider_id": f.provider_id,
            "message_id": message_of[index],
            "flags": " ".join(sorted(f.flags)),
            "labels": " ".join(sorted(f.labels)),
            "seen_at": now,
        }
        for index, (f, _) in enumerate(parsed)
    }
    result.new_locations = len(set(location_rows) - known_locations)
    store.upsert(
        session,
        store.table(MessageLocation),
        list(location_rows.values()),
        keys=("folder_id", "provider_id"),
        update=("message_id", "flags", "labels", "seen_at"),
    )
    if quarantined:
        store.upsert(
            session,
            store.table(models.Quarantine),
            [
                {
                    "folder_id": folder_id,
                    "provider_id": f.provider_id,
                    "reason": f.parsed.reason,  # type: ignore[union-attr]
                    "sha256": f.parsed.sha256,
                    "size": f.parsed.size,
                    "data": f.raw,
                    "created_at": now,
                }
                for f in quarantined
            ],
            keys=("folder_id", "provider_id"),
            update=("reason", "sha256", "size", "data"),
        )
        result.quarantined = len(quarantined)

    for chunk in store.chunks(list(removed)):
        for model in (MessageLocation, models.Quarantine):
            res = session.execute(
                sa.delete(model).where(
                    model.folder_id == folder_id,
                    model.provider_id.in_(chunk),
                )
            )
            result.removed += res.rowcount  # type: ignore[attr-defined]
    for provider_id, flags in flag_changes:
        session.execute(
            sa.update(MessageLocation)
            .where(
                MessageLocation.folder_id == folder_id,
                MessageLocation.provider_id == provider_id,
            )
            .values(flags=" ".join(sorted(flags)))
        )
        result.flag_changes += 1

    fresh = [
        threadstore.NewMessage(
            key_to_id[key], parsed[index][1], parsed[index][0].thread_hint, row["direction"]
        )
        for (key, index), row in zip(first_index.items(), new_rows, strict=True)
    ]
    created: set[int] = set()
    result.threads = threadstore.attach(
        session,
        str(ctx.mailbox_id),
        fresh,
        ctx.subject_fallback,
        ctx.subject_window,
        created,
        ctx.on_merge,
    )
    threadstore.refresh_summaries(session, result.threads - created)
    return result


def store_items_apart(
    session: Session,
    ctx: MailboxContext,
    folder_id: int,
    items: Sequence[Fetched],
    removed: Sequence[str] = (),
    flag_changes: Iterable[tuple[str, frozenset[str]]] = (),
) -> events.BatchResult:
    """`store_batch` one item at a time, each in a savepoint: an item the database rejects
    is quarantined with the database's reason instead of failing the whole batch."""
    total = store_batch(session, ctx, folder_id, (), removed, flag_changes)
    for item in items:
        try:
            with session.begin_nested():
                one = store_batch(session, ctx, folder_id, [item])
        except sa.exc.OperationalError:
            raise
        except sa.exc.DBAPIError as exc:
            size, sha = len(item.raw), hashlib.sha256(item.raw).hexdigest()
            reason = clean(f"database rejected the message: {exc.orig}", 500)
            # The quarantine row must be storable even when the provider id was the problem.
            pid = clean(item.provider_id)
            bad = Fetched(pid, item.raw, parsing.Quarantined(reason, size, sha))
            one = store_batch(session, ctx, folder_id, [bad])
        total.new_messages += one.new_messages
        total.new_locations += one.new_locations
        total.quarantined += one.quarantined
        total.threads |= one.threads
        total.message_ids += one.message_ids
    return total
