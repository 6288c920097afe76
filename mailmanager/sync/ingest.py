"""Writes one fetched batch into the database, idempotently, inside the caller's transaction.

`store_batch` upserts messages (one per key, see `models`; with what the parser read in
their bodies for the reminder rules, `ParsedMessage.text_facts`), their locations,
participants, raw bytes and quarantined items, applies removals and flag changes, threads
the new messages and refreshes the summaries of the threads it touched. Running it twice on
the same batch changes nothing the second time, which is what makes a crash at any moment
harmless: the sync engine commits the folder cursor in the same transaction, so a batch is
either wholly in the database with its cursor, or not at all and fetched again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import events
from mailmanager.config import identity as identity_mod
from mailmanager.db import models, store
from mailmanager.db.models import Message, MessageLocation, Participant
from mailmanager.mail import copies, mime, parsing
from mailmanager.sync import privacy, threadstore
from mailmanager.sync.threadstore import clean, stored_message_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailboxContext:
    """What ingest needs to know about the mailbox a batch comes from."""

    mailbox_id: int
    identity: identity_mod.Identity  # the mailbox's: its owner's addresses, our domains
    subject_fallback: bool = True
    subject_window: timedelta = timedelta(days=14)
    keep_raw: bool = True
    store: str = "full"  # the folder's storage level (`sync.privacy`)
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
    stored_as: str = "full"  # what is kept of it (`sync.privacy.keep`)


def direction(p: parsing.ParsedMessage, ctx: MailboxContext) -> str:
    """outbound when sent by the mailbox owner or the organization; internal when everyone
    involved is internal; inbound otherwise."""
    sender = p.from_[0].email if p.from_ else ""
    ours = ctx.identity.is_ours
    if not sender or not ours(sender):
        return "inbound"
    everyone = [a.email for a in (*p.to, *p.cc, *p.bcc)]
    if everyone and all(ours(a) for a in everyone):
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
    expectation = p.text_facts.expectation if p.text_facts else None
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
        "expects_reply": expectation.expects if expectation else None,
        "expects_reply_reason": expectation.reason if expectation else None,
        "return_date": p.text_facts.return_date if p.text_facts else None,
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


def _body_digests(parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]]) -> list[str | None]:
    """Each item's `copies.body_digest`; None for a message over `max_message_size`, whose
    body may not have been fetched whole (the fingerprint alone tells its copies apart)."""
    return [None if "too_large" in p.defects else copies.body_digest(f.raw) for f, p in parsed]


def _stored_body(session: Session, message_id: int) -> str | None:
    """The body digest of a message stored before schema 0015, from its raw bytes; None
    when they were not kept whole."""
    found = session.execute(
        sa.select(Message.defects, models.MessageRaw.data)
        .join(models.MessageRaw, models.MessageRaw.sha256 == Message.sha256)
        .where(Message.id == message_id)
    ).first()
    if found is None or "too_large" in found[0].split():
        return None
    return copies.body_digest(found[1])


def _resolve_keys(
    session: Session,
    parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]],
    bodies: Sequence[str | None],
) -> tuple[dict[int, int], dict[int, str]]:
    """Decide, per batch item, which existing message it is, or which new key it gets.

    Returns (index → existing message id, index → new key). A Message-ID seen with other
    bytes is the same message when sender, date, subject and body agree
    (`copies.same_message`: a Sent copy, a CRLF copy, another mailbox's copy with its own
    transport headers); otherwise it is a reused or forged Message-ID and gets a suffixed
    key, so a forged copy that arrives first cannot hide the real message.
    """
    ids = sorted({stored_message_id(p) for _, p in parsed})
    # Message-ID → (message id or new key, raw sha256, body digest, fingerprint)
    known: dict[str, list[tuple[int | str, str, str | None, tuple[Any, ...]]]] = {}
    for chunk in store.chunks(ids):
        rows = session.execute(
            sa.select(
                Message.id,
                Message.message_id,
                Message.sha256,
                Message.body_sha256,
                Message.from_email,
                Message.sent_at,
                Message.subject_normalized,
            ).where(Message.message_id.in_(chunk))
        )
        for mid, msgid, sha, body, frm, sent, subj in rows:
            known.setdefault(msgid, []).append((mid, sha, body, _fingerprint(frm, sent, subj)))
    legacy: dict[int, str | None] = {}  # stored before schema 0015: hashed when needed
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
        for ident, sha, body, kfp in known.get(stored_message_id(p), ()):
            if body is None and isinstance(ident, int) and sha != p.sha256 and kfp == fp:
                if ident not in legacy:
                    legacy[ident] = _stored_body(session, ident)
                body = legacy[ident]
            if copies.same_message((sha, p.sha256), (kfp, fp), (body, bodies[index])):
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
        known.setdefault(stored_message_id(p), []).append((key, p.sha256, bodies[index], fp))
    return existing, new_keys


@dataclass(frozen=True)
class _NewMessages:
    """The messages a batch inserted, and which message each batch item is."""

    first_index: dict[str, int]  # new key → first batch index using it
    rows: list[dict[str, Any]]  # the inserted rows, in `first_index` order
    key_to_id: dict[str, int]
    message_of: dict[int, int]  # batch index → message id (new or existing)


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
    parsed = _kept(session, ctx, parsed)
    if ctx.store != "full":  # a quarantined item's bytes are kept at the full level only
        quarantined = [dataclasses.replace(f, raw=b"") for f in quarantined]

    new = _insert_messages(session, ctx, parsed)
    listed = _note_list_copies(session, parsed, new, now)
    result.new_messages = len(new.rows)
    result.message_ids = list(new.key_to_id.values())
    _insert_participants_and_raw(session, ctx, parsed, new)
    result.new_locations = _store_locations(session, folder_id, parsed, new.message_of, now)
    if quarantined:
        _store_quarantined(session, folder_id, quarantined, now)
        result.quarantined = len(quarantined)
    result.removed = _remove_locations(session, folder_id, removed)
    result.flag_changes = _change_flags(session, folder_id, flag_changes)
    result.threads = _thread_new_messages(session, ctx, parsed, new) | listed
    return result


def _kept(
    session: Session, ctx: MailboxContext, parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]]
) -> list[tuple[Fetched, parsing.ParsedMessage]]:
    """The items as the privacy settings keep them (`sync.privacy`): reduced to the folder's
    storage level; an erased person's messages dropped, or scrubbed of them."""
    erased = privacy.erased_check(session)
    if ctx.store == "full" and erased is None:
        return list(parsed)
    out = []
    for f, p in parsed:
        kept = privacy.keep(p, ctx.store, erased, ctx.identity.is_ours)
        if kept is not None:
            f = dataclasses.replace(f, parsed=kept.parsed, stored_as=kept.stored_as)
            out.append((f, kept.parsed))
    return out


def _insert_messages(
    session: Session, ctx: MailboxContext, parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]]
) -> _NewMessages:
    """Insert each new key once (see `_resolve_keys`), then map every batch index to its
    message id."""
    bodies = _body_digests(parsed)
    existing, new_keys = _resolve_keys(session, parsed, bodies)
    first_index: dict[str, int] = {}
    for index, key in new_keys.items():
        first_index.setdefault(key, index)
    rows = [
        {**_message_row(parsed[i][1], key, ctx), "body_sha256": bodies[i]}
        | {"stored_as": parsed[i][0].stored_as}
        for key, i in first_index.items()
    ]
    key_to_id: dict[str, int] = {}
    if rows:
        t = store.table(Message)
        # Keys are unique, so RETURNING needs no order: batched, not a statement per row.
        returned = session.execute(sa.insert(t).returning(t.c.id, t.c.key), rows)
        key_to_id = {key: mid for mid, key in returned}
    message_of: dict[int, int] = dict(existing)
    for index, key in new_keys.items():
        message_of[index] = key_to_id[key]
    return _NewMessages(first_index, rows, key_to_id, message_of)


def _note_list_copies(
    session: Session,
    parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]],
    new: _NewMessages,
    now: datetime,
) -> set[int]:
    """A copy of a stored message that came through a mailing list (our post, distributed
    back to us with a `List-Id`) leaves its list on the stored message when it has none:
    later stages then know the message was a list post (the reminder rules: a post to a
    list awaits no one's reply). Returns the threads of those messages."""
    inserted = set(new.key_to_id.values())
    lists: dict[int, str] = {}
    for index, mid in new.message_of.items():
        p = parsed[index][1]
        if mid not in inserted and p.list_id:
            lists.setdefault(mid, clean(p.list_id, 300))
    if not lists:
        return set()
    t, threads = store.table(Message), store.table(models.Thread)
    bare: dict[int, int | None] = {}  # (a rescan finds the list's own mail: already set)
    for chunk in store.chunks(sorted(lists)):
        bare.update(
            session.execute(
                sa.select(t.c.id, t.c.thread_id).where(t.c.id.in_(chunk), t.c.list_id.is_(None))
            ).all()
        )
    if not bare:
        return set()
    session.execute(
        sa.update(t).where(t.c.id == sa.bindparam("mid")).values(list_id=sa.bindparam("lid")),
        [{"mid": mid, "lid": lists[mid]} for mid in bare],
    )
    changed = {tid for tid in bare.values() if tid is not None}
    if changed:
        session.execute(sa.update(threads).where(threads.c.id.in_(changed)).values(updated_at=now))
    return changed


def _insert_participants_and_raw(
    session: Session,
    ctx: MailboxContext,
    parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]],
    new: _NewMessages,
) -> None:
    """The new messages' participants, and their raw bytes unless the mailbox keeps none."""
    participant_rows: list[dict[str, Any]] = []
    raw_rows: list[dict[str, Any]] = []
    for key, index in new.first_index.items():
        fetched, p = parsed[index]
        participant_rows.extend(_participant_rows(new.key_to_id[key], p))
        data = privacy.stored_raw(fetched.raw, fetched.stored_as)
        if ctx.keep_raw and data is not None:
            if "too_large" in p.defects:  # over sync.max_message_size: headers and a note
                data = mime.oversize_stub(data, p.size)
            raw_rows.append({"sha256": p.sha256, "data": data})
    if participant_rows:
        session.execute(sa.insert(store.table(Participant)), participant_rows)
    store.insert_ignore(session, store.table(models.MessageRaw), raw_rows)


def _store_locations(
    session: Session,
    folder_id: int,
    parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]],
    message_of: dict[int, int],
    now: datetime,
) -> int:
    """Upsert where each item lies in the folder; returns how many locations are new (known
    ones are refreshed: `seen_at` feeds the rescan sweep)."""
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
    store.upsert(
        session,
        store.table(MessageLocation),
        list(location_rows.values()),
        keys=("folder_id", "provider_id"),
        update=("message_id", "flags", "labels", "seen_at"),
    )
    return len(set(location_rows) - known_locations)


def _store_quarantined(
    session: Session, folder_id: int, quarantined: Sequence[Fetched], now: datetime
) -> None:
    """Keep the items that could not be parsed, with their reason and bytes."""
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


def _remove_locations(session: Session, folder_id: int, removed: Sequence[str]) -> int:
    """Delete the locations (and quarantined items) gone from the folder; returns how many."""
    count = 0
    for chunk in store.chunks(list(removed)):
        for model in (MessageLocation, models.Quarantine):
            res = session.execute(
                sa.delete(model).where(
                    model.folder_id == folder_id,
                    model.provider_id.in_(chunk),
                )
            )
            count += res.rowcount  # type: ignore[attr-defined]
    return count


def _change_flags(
    session: Session, folder_id: int, flag_changes: Iterable[tuple[str, frozenset[str]]]
) -> int:
    """Set the new flags of known locations; returns how many changes were applied."""
    count = 0
    for provider_id, flags in flag_changes:
        session.execute(
            sa.update(MessageLocation)
            .where(
                MessageLocation.folder_id == folder_id,
                MessageLocation.provider_id == provider_id,
            )
            .values(flags=" ".join(sorted(flags)))
        )
        count += 1
    return count


def _thread_new_messages(
    session: Session,
    ctx: MailboxContext,
    parsed: Sequence[tuple[Fetched, parsing.ParsedMessage]],
    new: _NewMessages,
) -> set[int]:
    """Attach the new messages to threads and refresh the summaries of the threads that
    grew or merged (new ones got theirs when created); returns every thread touched."""
    fresh = [
        threadstore.NewMessage(
            new.key_to_id[key], parsed[index][1], parsed[index][0].thread_hint, row["direction"]
        )
        for (key, index), row in zip(new.first_index.items(), new.rows, strict=True)
    ]
    created: set[int] = set()
    threads = threadstore.attach(
        session,
        str(ctx.mailbox_id),
        fresh,
        ctx.subject_fallback,
        ctx.subject_window,
        created,
        ctx.on_merge,
    )
    threadstore.refresh_summaries(session, threads - created)
    return threads


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable, locked or busy (the whole batch
    waits for the next run), not that it refuses one item. Operational errors are outages,
    except PostgreSQL's "program limit exceeded" (SQLSTATE class 54: an index row too big,
    say), which one message's values cause."""
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    state = getattr(exc.orig, "sqlstate", None) or ""
    return not state.startswith("54")


def failure(exc: BaseException) -> str:
    """Why an item was not stored, in one line: the exception class and its message (the
    driver's own for a database error, without SQLAlchemy's statement dump)."""
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"


def _lost_insert_race(exc: BaseException) -> bool:
    """True when another transaction committed the same message key first (two mailboxes
    holding one message, synced at once): read again, it is an existing message."""
    if not isinstance(exc, sa.exc.IntegrityError):
        return False
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None) == "uq_messages_key"


def _store_one(
    session: Session, ctx: MailboxContext, folder_id: int, item: Fetched
) -> events.BatchResult:
    """`store_batch` of one item in a savepoint, again when it lost an insert race."""
    for attempt in range(3):
        try:
            with session.begin_nested():
                return store_batch(session, ctx, folder_id, [item])
        except sa.exc.IntegrityError as exc:
            if attempt == 2 or not _lost_insert_race(exc):
                raise
    raise AssertionError("unreachable")


def store_items_apart(
    session: Session,
    ctx: MailboxContext,
    folder_id: int,
    items: Sequence[Fetched],
    removed: Sequence[str] = (),
    flag_changes: Iterable[tuple[str, frozenset[str]]] = (),
) -> events.BatchResult:
    """`store_batch` one item at a time, each in a savepoint: an item that fails to store,
    whatever the reason (the database refuses a value, a bug in a later step), is
    quarantined with that reason instead of failing the whole batch. Only a database
    outage (`is_outage`) is raised."""
    total = store_batch(session, ctx, folder_id, (), removed, flag_changes)
    for item in items:
        try:
            one = _store_one(session, ctx, folder_id, item)
        except Exception as exc:
            if is_outage(exc):
                raise
            size, sha = len(item.raw), hashlib.sha256(item.raw).hexdigest()
            why = "database rejected" if isinstance(exc, sa.exc.DBAPIError) else "could not store"
            reason = clean(f"{why} the message: {failure(exc)}", 500)
            logger.warning(
                "message quarantined at store",
                extra={"action": "store_quarantined", "sha256": sha, "reason": reason},
            )
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
