"""Threads in the database: attach new messages, merge threads, refresh their summaries.

The decisions are `threads`' pure functions; this module reads what they need in a few set
queries per batch and writes the outcome with executemany statements, so threading costs a
handful of round trips per batch, not several per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import events
from mailmanager.db import models, store
from mailmanager.db.models import Message, Participant, Thread, ThreadNode
from mailmanager.mail import parsing, storable, threads


def clean(value: str, limit: int | None = None) -> str:
    """A string every database accepts: PostgreSQL refuses NUL characters in text (shown
    as U+FFFD here), and no driver can encode a lone surrogate (see `storable.text`)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    value = storable.text(value)
    return value[:limit] if limit is not None else value


def stored_message_id(p: parsing.ParsedMessage) -> str:
    """The Message-ID as stored: clean, with room left for a "#hash" suffix."""
    return clean(p.message_id, 900)


@dataclass(frozen=True)
class NewMessage:
    """A message just inserted, to be threaded."""

    id: int
    parsed: parsing.ParsedMessage
    thread_hint: str | None = None
    direction: str = "inbound"  # as stored on the message (see ingest.direction)

    def summary_input(self) -> threads.SummaryInput:
        p = self.parsed
        noise = p.is_auto_reply or p.is_bulk or p.is_bounce
        return threads.SummaryInput(self.id, p.date, self.direction, noise, clean(p.subject))


def _nodes(scope: str, m: NewMessage) -> tuple[str, ...]:
    p = m.parsed
    nodes = [stored_message_id(p)]
    if not p.message_id_synthetic:
        nodes.extend(clean(n, 900) for n in (*p.in_reply_to, *p.references))
    if p.bounce is not None and p.bounce.original_message_id:
        # A bounce belongs with the message that bounced (quoted in its report).
        nodes.append(clean(p.bounce.original_message_id, 900))
    if m.thread_hint:
        nodes.append(clean(threads.hint_node(scope, m.thread_hint), 1000))
    return tuple(nodes)


MAX_CANDIDATES = 5  # stored threads sharing one subject inside a batch's time window


def _fallback_eligible(p: parsing.ParsedMessage) -> bool:
    # On list mail everyone shares the list address, so shared participants prove nothing;
    # bounces and auto-replies have better ways home (the bounced id, In-Reply-To) or none.
    return not (
        p.in_reply_to
        or p.references
        or p.is_bulk
        or p.list_id
        or p.is_bounce
        or p.is_auto_reply
        or not p.subject_normalized
        or p.date is None
        or not p.from_
    )


def _people(p: parsing.ParsedMessage) -> list[str]:
    return [a.email for a in (*p.from_, *p.to, *p.cc)]


class _Candidates:
    """Fallback candidates by normalised subject: stored threads (found with one query per
    batch, their participants read only for those inside a message's time window) and the
    threads this batch creates."""

    def __init__(
        self, session: Session, eligible: Sequence[parsing.ParsedMessage], window: timedelta
    ) -> None:
        self.session = session
        self.window = window
        self.stored: dict[str, list[tuple[int, Any, int, str]]] = {}
        self.new: dict[str, list[threads.FallbackCandidate]] = {}
        self.cache: dict[int, threads.FallbackCandidate] = {}
        self.ambiguous: set[str] = set()
        dates = [p.date for p in eligible if p.date is not None]
        if not dates:
            return
        subjects = sorted({clean(p.subject_normalized, 500) for p in eligible})
        for chunk in store.chunks(subjects):
            rows = self.session.execute(
                sa.select(
                    Thread.id,
                    Thread.subject_normalized,
                    Thread.last_at,
                    Thread.message_count,
                    Thread.subject,
                ).where(
                    Thread.subject_normalized.in_(chunk),
                    Thread.last_at >= min(dates) - window,
                    Thread.last_at <= max(dates) + window,
                )
            )
            for tid, subj, last_at, count, subject in rows:
                self.stored.setdefault(subj, []).append((tid, last_at, count, subject))
        # A subject shared by many recent threads ("Invoice", "Devis") cannot single one
        # out: no fallback for it, and no cost growing with the mailbox.
        self.ambiguous = {
            subj for subj, found in self.stored.items() if len(found) > MAX_CANDIDATES
        }

    def _load(self, tid: int, last_at: Any, count: int, subject: str) -> threads.FallbackCandidate:
        if tid in self.cache:
            return self.cache[tid]
        people = frozenset(
            self.session.scalars(
                sa.select(Participant.email)
                .join(Message, Message.id == Participant.message_id)
                .where(Message.thread_id == tid)
                .distinct()
            )
        )
        lone = None
        if count == 1 and parsing.subject_has_prefix(subject):
            irt, refs, sent = self.session.execute(
                sa.select(Message.in_reply_to, Message.references, Message.sent_at)
                .where(Message.thread_id == tid)
                .limit(1)
            ).one()
            lone = sent if not irt and not refs else None
        self.cache[tid] = threads.FallbackCandidate(tid, last_at, people, lone)
        return self.cache[tid]

    def add_new(self, ref: int, p: parsing.ParsedMessage) -> None:
        lone = p.date if p.subject_had_prefix else None
        cand = threads.FallbackCandidate(ref, p.date, frozenset(_people(p)), lone)
        self.new.setdefault(clean(p.subject_normalized, 500), []).append(cand)

    def pick(self, p: parsing.ParsedMessage) -> int | None:
        assert p.date is not None
        subj = clean(p.subject_normalized, 500)
        if subj in self.ambiguous:
            return None
        found = [
            self._load(*row)
            for row in self.stored.get(subj, ())
            if row[1] is not None and abs(p.date - row[1]) <= self.window
        ]
        found += self.new.get(subj, [])
        if not found:
            return None
        return threads.subject_fallback(
            p.from_[0].email, _people(p), p.date, p.subject_had_prefix, found, self.window
        )


def attach(
    session: Session,
    scope: str,
    fresh: Sequence[NewMessage],
    subject_fallback: bool = True,
    window: timedelta = timedelta(days=14),
    created: set[int] | None = None,
    on_merge: Sequence[events.MergeHook] = (),
) -> set[int]:
    """Put new messages into threads (creating and merging threads); returns touched ids.

    Threads it creates get their summary at once (they hold only messages of this call);
    when `created` is given, their ids are added to it. A merge calls `on_merge`.
    """
    if not fresh:
        return set()
    inputs = [threads.ThreadInput(str(m.id), _nodes(scope, m)) for m in fresh]
    by_key = {str(m.id): m for m in fresh}
    all_nodes = sorted({n for i in inputs for n in i.nodes})
    known: dict[str, int] = {}
    for chunk in store.chunks(all_nodes):
        known.update(
            session.execute(
                sa.select(ThreadNode.node, ThreadNode.thread_id).where(ThreadNode.node.in_(chunk))
            ).all()
        )
    groups = threads.plan(inputs, known)
    singles = [
        by_key[g.keys[0]].parsed
        for g in groups
        if not g.existing and len(g.keys) == 1 and subject_fallback
    ]
    eligible = [p for p in singles if _fallback_eligible(p)]
    candidates = _Candidates(session, eligible, window)

    # Threads to create get negative placeholder refs until inserted; `members` gathers
    # their messages (several groups may join one by the subject fallback).
    refs: list[int] = []
    members: dict[int, list[NewMessage]] = {}
    for g in groups:
        first = by_key[g.keys[0]].parsed
        ref: int | None = g.existing[0] if g.existing else None
        if ref is None and subject_fallback and len(g.keys) == 1 and _fallback_eligible(first):
            ref = candidates.pick(first)
        if ref is None:
            ref = -(len(members) + 1)
            members[ref] = []
            if len(g.keys) == 1 and _fallback_eligible(first):
                candidates.add_new(ref, first)
        if ref < 0:
            members[ref].extend(by_key[k] for k in g.keys)
        refs.append(ref)
    real = _insert_threads(session, members)
    if created is not None:
        created.update(real.values())

    touched: set[int] = set()
    node_rows: list[dict[str, Any]] = []
    message_rows: list[dict[str, Any]] = []
    for g, ref in zip(groups, refs, strict=True):
        tid = real.get(ref, ref)
        if len(g.existing) > 1:
            merge(session, tid, g.existing[1:], on_merge)
        touched.add(tid)
        node_rows.extend({"node": n, "thread_id": tid} for n in g.new_nodes)
        message_rows.extend({"mid": by_key[k].id, "tid": tid} for k in g.keys)
    m = store.table(Message)
    session.execute(
        sa.update(m).where(m.c.id == sa.bindparam("mid")).values(thread_id=sa.bindparam("tid")),
        message_rows,
    )
    store.insert_ignore(session, store.table(ThreadNode), node_rows)
    return touched


def merge(
    session: Session,
    survivor: int,
    losers: Sequence[int],
    on_merge: Sequence[events.MergeHook] = (),
) -> None:
    """Fold `losers` into `survivor`: their messages and nodes move, their rows go.

    The later stages' rows (links, reminders) are theirs to move: `on_merge` hooks run
    first, while the losers' messages still say which thread they were in.
    """
    losers = list(losers)
    for hook in on_merge:
        hook(session, survivor, losers)
    for model in (Message, ThreadNode):
        session.execute(
            sa.update(model).where(model.thread_id.in_(losers)).values(thread_id=survivor)
        )
    session.execute(sa.delete(Thread).where(Thread.id.in_(losers)))


def refresh_summaries(session: Session, thread_ids: Iterable[int]) -> None:
    """Recompute the summary columns of the given threads from their messages."""
    for chunk in store.chunks(sorted(thread_ids)):
        per_thread: dict[int, list[threads.SummaryInput]] = {}
        norm: dict[int, tuple[Any, str]] = {}
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
        for tid, mid, sent, direction, noise, subject, subject_norm in rows:
            assert tid is not None
            per_thread.setdefault(tid, []).append(
                threads.SummaryInput(mid, sent, direction, bool(noise), subject)
            )
            # The thread's normalised subject is its earliest message's.
            if tid not in norm or (
                sent is not None and (norm[tid][0] is None or sent < norm[tid][0])
            ):
                norm[tid] = (sent, subject_norm)
        values = []
        now = models.utcnow()
        for tid, msgs in per_thread.items():
            values.append({"tid": tid, **_summary(threads.summarize(msgs), norm[tid][1], now)})
        if values:
            t = store.table(Thread)
            session.execute(sa.update(t).where(t.c.id == sa.bindparam("tid")), values)


_MIN = datetime.min.replace(tzinfo=UTC)


def _insert_threads(session: Session, members: dict[int, list[NewMessage]]) -> dict[int, int]:
    """Insert the new threads (placeholder ref → its messages) with their summaries; returns
    ref → thread id.

    RETURNING rows come unordered (ordering them costs a statement per row on SQLite), so
    each row carries its first message's id in `last_message_id` to be told apart; the
    few whose true last message differs are corrected after.
    """
    if not members:
        return {}
    now = models.utcnow()
    rows, summaries = [], {}
    for ref, msgs in members.items():
        sm = summaries[ref] = threads.summarize(m.summary_input() for m in msgs)
        earliest = min(msgs, key=lambda m: (m.parsed.date is None, m.parsed.date or _MIN, m.id))
        norm = clean(earliest.parsed.subject_normalized, 500)
        rows.append({**_summary(sm, norm, now), "last_message_id": msgs[0].id})
    ref_of = {row["last_message_id"]: ref for ref, row in zip(members, rows, strict=True)}
    t = store.table(Thread)
    returned = session.execute(sa.insert(t).returning(t.c.id, t.c.last_message_id), rows)
    real = {ref_of[marker]: tid for tid, marker in returned}
    fixes = [
        {"tid": real[ref], "last": sm.last_message_id}
        for ref, sm in summaries.items()
        if sm.last_message_id != members[ref][0].id
    ]
    if fixes:
        session.execute(
            sa.update(t)
            .where(t.c.id == sa.bindparam("tid"))
            .values(last_message_id=sa.bindparam("last")),
            fixes,
        )
    return real


def _summary(s: threads.ThreadSummary, subject_normalized: str, now: datetime) -> dict[str, Any]:
    return {
        "subject": s.subject,
        "subject_normalized": subject_normalized,
        "first_at": s.first_at,
        "last_at": s.last_at,
        "last_inbound_at": s.last_inbound_at,
        "last_outbound_at": s.last_outbound_at,
        "last_direction": s.last_direction,
        "last_message_id": s.last_message_id,
        "message_count": s.message_count,
        "updated_at": now,
    }
