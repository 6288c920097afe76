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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import models, parsing, store, threads
from mailmanager.models import Message, MessageLocation, Participant, Thread, ThreadNode


@dataclass(frozen=True)
class MailboxContext:
    """What ingest needs to know about the mailbox a batch comes from."""

    mailbox_id: int
    own_addresses: frozenset[str]
    org_domains: frozenset[str]
    subject_fallback: bool = True
    subject_window: timedelta = timedelta(days=14)
    keep_raw: bool = True


@dataclass(frozen=True)
class Fetched:
    """One fetched item with its parse result."""

    provider_id: str
    raw: bytes
    parsed: parsing.ParsedMessage | parsing.Quarantined
    flags: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    thread_hint: str | None = None


@dataclass
class BatchResult:
    new_messages: int = 0
    new_locations: int = 0
    quarantined: int = 0
    removed: int = 0
    flag_changes: int = 0
    threads: set[int] = field(default_factory=set)


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


def _text(value: str, limit: int | None = None) -> str:
    """A string every database accepts: PostgreSQL refuses NUL characters in text."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit is not None else value


def _mid(p: parsing.ParsedMessage) -> str:
    """The Message-ID as stored: clean, with room left for a "#hash" suffix."""
    return _text(p.message_id, 900)


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
        "message_id": _mid(p),
        "message_id_synthetic": p.message_id_synthetic,
        "subject": _text(p.subject),
        "subject_normalized": _text(p.subject_normalized, 500),
        "sent_at": p.date,
        "date_source": p.date_source,
        "direction": direction(p, ctx),
        "from_email": _text(sender.email, 320) if sender else "",
        "from_name": _text(sender.name, 300) if sender else "",
        "is_auto_reply": p.is_auto_reply,
        "is_out_of_office": p.is_out_of_office,
        "is_bulk": p.is_bulk,
        "is_bounce": p.is_bounce,
        "is_calendar": p.is_calendar,
        "list_id": _text(p.list_id, 300) if p.list_id else None,
        "snippet": _text(p.snippet),
        "size": p.size,
        "sha256": p.sha256,
        "in_reply_to": _text(" ".join(p.in_reply_to)),
        "references": _text(" ".join(p.references)),
        "attachments": _text(attachments),
        "bounce": _text(bounce),
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
                    "email": _text(addr.email, 320),
                    "name": _text(addr.name, 300),
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
    ids = sorted({_mid(p) for _, p in parsed})
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
            _text(p.from_[0].email, 320) if p.from_ else "",
            p.date,
            _text(p.subject_normalized, 500),
        )
        match: int | str | None = None
        for ident, sha, kfp in known.get(_mid(p), ()):
            if sha == p.sha256 or kfp == fp:
                match = ident
                break
        if isinstance(match, int):
            existing[index] = match
            continue
        if isinstance(match, str):  # a key created earlier in this batch
            new_keys[index] = match
            continue
        taken = known.get(_mid(p))
        key = _mid(p) if not taken else f"{_mid(p)}#{p.sha256[:16]}"
        if key in batch_new:
            new_keys[index] = key
            continue
        batch_new[key] = index
        new_keys[index] = key
        known.setdefault(_mid(p), []).append((key, p.sha256, fp))
    return existing, new_keys


def store_batch(
    session: Session,
    ctx: MailboxContext,
    folder_id: int,
    items: Sequence[Fetched],
    removed: Sequence[str] = (),
    flag_changes: Iterable[tuple[str, frozenset[str]]] = (),
) -> BatchResult:
    """Write one batch; see the module docstring. The caller commits."""
    result = BatchResult()
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
        returned = session.execute(
            sa.insert(Message).returning(Message.id, Message.key, sort_by_parameter_order=True),
            new_rows,
        )
        key_to_id = {key: mid for mid, key in returned}
    result.new_messages = len(new_rows)
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
        session.execute(sa.insert(Participant), participant_rows)
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
        (key_to_id[key], parsed[index][0], parsed[index][1]) for key, index in first_index.items()
    ]
    result.threads = thread_messages(session, ctx, fresh)
    refresh_summaries(session, result.threads)
    return result


def store_items_apart(
    session: Session,
    ctx: MailboxContext,
    folder_id: int,
    items: Sequence[Fetched],
    removed: Sequence[str] = (),
    flag_changes: Iterable[tuple[str, frozenset[str]]] = (),
) -> BatchResult:
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
            reason = _text(f"database rejected the message: {exc.orig}", 500)
            bad = Fetched(item.provider_id, item.raw, parsing.Quarantined(reason, size, sha))
            one = store_batch(session, ctx, folder_id, [bad])
        total.new_messages += one.new_messages
        total.new_locations += one.new_locations
        total.quarantined += one.quarantined
        total.threads |= one.threads
    return total


def thread_messages(
    session: Session,
    ctx: MailboxContext,
    fresh: Sequence[tuple[int, Fetched, parsing.ParsedMessage]],
) -> set[int]:
    """Attach new messages to threads (creating and merging threads); returns touched ids."""
    if not fresh:
        return set()
    inputs: list[threads.ThreadInput] = []
    by_key: dict[str, tuple[int, parsing.ParsedMessage]] = {}
    for mid, fetched, p in fresh:
        nodes = [_mid(p)]
        if not p.message_id_synthetic:
            nodes.extend(_text(n, 900) for n in (*p.in_reply_to, *p.references))
        if p.bounce is not None and p.bounce.original_message_id:
            # A bounce belongs with the message that bounced (quoted in its report).
            nodes.append(_text(p.bounce.original_message_id, 900))
        if fetched.thread_hint:
            hint = threads.hint_node(str(ctx.mailbox_id), fetched.thread_hint)
            nodes.append(_text(hint, 1000))
        key = str(mid)
        inputs.append(threads.ThreadInput(key=key, nodes=tuple(nodes)))
        by_key[key] = (mid, p)
    all_nodes = sorted({n for i in inputs for n in i.nodes})
    known: dict[str, int] = {}
    for chunk in store.chunks(all_nodes):
        known.update(
            session.execute(
                sa.select(ThreadNode.node, ThreadNode.thread_id).where(ThreadNode.node.in_(chunk))
            ).all()
        )
    touched: set[int] = set()
    node_rows: list[dict[str, Any]] = []
    for group in threads.plan(inputs, known):
        thread_id: int | None = group.existing[0] if group.existing else None
        if thread_id is None and ctx.subject_fallback and len(group.keys) == 1:
            thread_id = _fallback_thread(session, ctx, *by_key[group.keys[0]])
        if thread_id is None:
            # Summary fields are filled now so later messages of this batch can find the
            # thread by subject; `refresh_summaries` recomputes them at the end.
            first = by_key[group.keys[0]][1]
            thread_id = session.execute(
                sa.insert(Thread)
                .values(
                    subject=_text(first.subject),
                    subject_normalized=_text(first.subject_normalized, 500),
                    first_at=first.date,
                    last_at=first.date,
                    message_count=len(group.keys),
                    updated_at=models.utcnow(),
                )
                .returning(Thread.id)
            ).scalar_one()
        if len(group.existing) > 1:
            merge_threads(session, thread_id, group.existing[1:])
        touched.add(thread_id)
        node_rows.extend({"node": n, "thread_id": thread_id} for n in group.new_nodes)
        ids = [by_key[k][0] for k in group.keys]
        for chunk in store.chunks(ids):
            session.execute(
                sa.update(Message).where(Message.id.in_(chunk)).values(thread_id=thread_id)
            )
    store.insert_ignore(session, store.table(ThreadNode), node_rows)
    return touched


def _fallback_thread(
    session: Session, ctx: MailboxContext, message_id: int, p: parsing.ParsedMessage
) -> int | None:
    """The thread a header-less message joins by subject, if any (see `threads`).

    Works in both arrival orders: a header-less "Re:" joins its original's thread, and an
    original arriving after such a reply (a Sent folder synced after the inbox) joins the
    reply's one-message thread.
    """
    if p.in_reply_to or p.references:
        return None
    # On list mail everyone shares the list address, so shared participants prove nothing.
    if p.is_bulk or p.list_id:
        return None
    if not p.subject_normalized or p.date is None or not p.from_:
        return None
    rows = session.execute(
        sa.select(Thread.id, Thread.last_at, Thread.message_count, Thread.subject)
        .where(
            Thread.subject_normalized == _text(p.subject_normalized, 500),
            Thread.last_at >= p.date - ctx.subject_window,
            Thread.last_at <= p.date + ctx.subject_window,
        )
        .limit(5)
    ).all()
    candidates = []
    for thread_id, last_at, count, subject in rows:
        if not p.subject_had_prefix:
            # Only a lone, later, header-less "Re:" may be attached to this original.
            if count != 1 or not parsing.subject_has_prefix(subject):
                continue
            irt, refs, sent = session.execute(
                sa.select(Message.in_reply_to, Message.references, Message.sent_at).where(
                    Message.thread_id == thread_id
                )
            ).one()
            if irt or refs or sent is None or sent < p.date:
                continue
        people = session.scalars(
            sa.select(Participant.email)
            .join(Message, Message.id == Participant.message_id)
            .where(Message.thread_id == thread_id)
            .distinct()
        )
        candidates.append(threads.FallbackCandidate(thread_id, last_at, frozenset(people)))
    if not candidates:
        return None
    everyone = [a.email for a in (*p.from_, *p.to, *p.cc)]
    return threads.subject_fallback(
        p.from_[0].email, everyone, p.date, candidates, ctx.subject_window
    )


def merge_threads(session: Session, survivor: int, losers: Sequence[int]) -> None:
    """Fold `losers` into `survivor`: their messages, nodes and links move; rows go."""
    losers = list(losers)
    for model in (Message, ThreadNode, models.Link):
        session.execute(
            sa.update(model).where(model.thread_id.in_(losers)).values(thread_id=survivor)
        )
    # TODO(#5): reminders of merged threads need a cycle-aware merge; until reminders
    # exist, they are re-pointed when no reminder of the same kind and cycle is there.
    session.execute(
        sa.update(models.Reminder)
        .where(models.Reminder.thread_id.in_(losers))
        .values(thread_id=survivor)
    )
    session.execute(sa.delete(Thread).where(Thread.id.in_(losers)))


def refresh_summaries(session: Session, thread_ids: Iterable[int]) -> None:
    """Recompute the summary columns of the given threads from their messages."""
    ids = sorted(thread_ids)
    for chunk in store.chunks(ids):
        per_thread: dict[int, list[threads.SummaryInput]] = {}
        rows = session.execute(
            sa.select(
                Message.thread_id,
                Message.id,
                Message.sent_at,
                Message.direction,
                Message.is_auto_reply | Message.is_bulk | Message.is_bounce,
                Message.subject,
                Message.subject_normalized,
            ).where(Message.thread_id.in_(chunk))
        )
        norm: dict[int, str] = {}
        for tid, mid, sent, direction_, noise, subject, subject_norm in rows:
            assert tid is not None
            per_thread.setdefault(tid, []).append(
                threads.SummaryInput(mid, sent, direction_, bool(noise), subject)
            )
            norm.setdefault(tid, subject_norm)
        values = []
        for tid, msgs in per_thread.items():
            s = threads.summarize(msgs)
            values.append(
                {
                    "tid": tid,
                    "subject": s.subject,
                    "subject_normalized": norm.get(tid, ""),
                    "first_at": s.first_at,
                    "last_at": s.last_at,
                    "last_inbound_at": s.last_inbound_at,
                    "last_outbound_at": s.last_outbound_at,
                    "last_direction": s.last_direction,
                    "last_message_id": s.last_message_id,
                    "message_count": s.message_count,
                    "updated_at": models.utcnow(),
                }
            )
        if values:
            t = store.table(Thread)
            session.execute(
                sa.update(t).where(t.c.id == sa.bindparam("tid")),
                values,
            )
