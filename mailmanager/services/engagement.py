"""Interaction history per record: timelines, engagement figures, explanations, export.

Engagement of a contact or company is computed from the real (non-noise) messages linked
to it, over fixed windows ending now:

- last inbound / last outbound message;
- exchanges (messages either way) over 30, 90 and 365 days;
- median response time each way, per thread: from the first message of one side's turn to
  the first message of the other side's next turn ("ours" answers them, "theirs" answers us);
- an RFM-style score, three marks from 1 to 5 on fixed thresholds (stable, not quantiles):
  recency  R: last exchange ≤7 days 5, ≤30 4, ≤90 3, ≤180 2, else 1;
  frequency F: threads with an exchange in 365 days ≥12 5, ≥6 4, ≥3 3, ≥1 2, else 1;
  volume   V: messages in 365 days ≥50 5, ≥20 4, ≥8 3, ≥1 2, else 1.
  `score` = R + F + V (3-15) and `rfm` the digits ("545").
- segment: **vip** R≥4 and F≥4 and V≥4 (recent, frequent and heavy); **active** R≥4 (an
  exchange within 30 days); **at_risk** R 2-3 (last exchange 31-180 days ago: follow up);
  **dormant** otherwise (nothing for 180 days, or never).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Folder, Link, Mailbox, MatchState, Message, MessageLocation
from mailmanager.services import curation

_REAL = ~(Message.is_bulk | Message.is_auto_reply | Message.is_out_of_office | Message.is_bounce)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Engagement:
    last_inbound: datetime | None
    last_outbound: datetime | None
    exchanges_30: int
    exchanges_90: int
    exchanges_365: int
    threads_365: int
    median_reply_ours: timedelta | None
    median_reply_theirs: timedelta | None
    recency: int
    frequency: int
    volume: int
    score: int
    rfm: str
    segment: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_inbound", "last_outbound"):
            data[key] = _iso(data[key])
        for key in ("median_reply_ours", "median_reply_theirs"):
            value = data[key]
            data[key + "_hours"] = round(value.total_seconds() / 3600, 1) if value else None
            del data[key]
        return data


def _mark(value: float, thresholds: tuple[float, float, float, float], lower: bool) -> int:
    for mark, limit in zip((5, 4, 3, 2), thresholds, strict=True):
        if (value <= limit) if lower else (value >= limit):
            return mark
    return 1


def _replies(rows: list[tuple[int, datetime, str]]) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    theirs: list[float] = []
    by_thread: dict[int, list[tuple[datetime, str]]] = {}
    for tid, sent, direction in rows:
        by_thread.setdefault(tid, []).append((sent, direction))
    for msgs in by_thread.values():
        msgs.sort()
        turn_start, turn_side = msgs[0]
        for sent, side in msgs[1:]:
            if side != turn_side:
                (ours if turn_side == "inbound" else theirs).append(
                    (sent - turn_start).total_seconds()
                )
                turn_start, turn_side = sent, side
    return ours, theirs


def rate(age_days: float, threads_365: int, volume_365: int) -> tuple[int, int, int, str]:
    """The marks (recency, frequency, volume) and the segment (module docstring), from the
    days since the last exchange (`inf`: never), the threads and the messages of 365 days."""
    r = _mark(age_days, (7, 30, 90, 180), lower=True)
    f = _mark(threads_365, (12, 6, 3, 1), lower=False)
    v = _mark(volume_365, (50, 20, 8, 1), lower=False)
    if r >= 4 and f >= 4 and v >= 4:
        segment = "vip"
    elif r >= 4:
        segment = "active"
    elif r >= 2:
        segment = "at_risk"
    else:
        segment = "dormant"
    return r, f, v, segment


def summarize(rows: list[tuple[int, datetime, str]], now: datetime) -> Engagement:
    """Engagement from (thread id, sent at, direction) of the linked real messages."""
    inbound = [t for _, t, d in rows if d == "inbound"]
    outbound = [t for _, t, d in rows if d == "outbound"]
    last = max((t for _, t, _ in rows), default=None)

    def within(days: int) -> list[tuple[int, datetime, str]]:
        return [r for r in rows if r[1] >= now - timedelta(days=days)]

    year = within(365)
    ours, theirs = _replies(rows)
    age = (now - last).total_seconds() / 86400 if last else float("inf")
    r, f, v, segment = rate(age, len({tid for tid, _, _ in year}), len(year))
    return Engagement(
        last_inbound=max(inbound, default=None),
        last_outbound=max(outbound, default=None),
        exchanges_30=len(within(30)),
        exchanges_90=len(within(90)),
        exchanges_365=len(year),
        threads_365=len({tid for tid, _, _ in year}),
        median_reply_ours=timedelta(seconds=statistics.median(ours)) if ours else None,
        median_reply_theirs=timedelta(seconds=statistics.median(theirs)) if theirs else None,
        recency=r,
        frequency=f,
        volume=v,
        score=r + f + v,
        rfm=f"{r}{f}{v}",
        segment=segment,
    )


def engagement(
    session: Session, kind: str, ids: Collection[int], now: datetime | None = None
) -> dict[int, Engagement]:
    """Engagement of these contacts or companies (every id gets one, "dormant" if no mail)."""
    now = now or models.utcnow()
    rows: dict[int, list[tuple[int, datetime, str]]] = {i: [] for i in ids}
    for part in store.chunks(sorted(ids)):
        for target, _, tid, sent, direction in session.execute(
            sa.select(
                Link.target_id, Message.id, Message.thread_id, Message.sent_at, Message.direction
            )
            .join(Message, Message.id == Link.message_id)
            .where(
                models.linking(kind, part),
                ~Link.tombstone,
                Message.sent_at.is_not(None),
                Message.direction.in_(("inbound", "outbound")),
                _REAL,
            )
            .distinct()
        ):
            if sent is not None:
                rows[target].append((tid or 0, sent, direction))
    return {target: summarize(r, now) for target, r in rows.items()}


def ranked(session: Session, kind: str, segment: str | None = None) -> list[dict[str, Any]]:
    """Every contact or company (`kind`) with its label and engagement, highest score first;
    only those of `segment` (vip, active, at_risk, dormant) when it is given."""
    model = models.Contact if kind == "contact" else models.Company
    ids = list(session.scalars(sa.select(model.id)))
    figures = engagement(session, kind, ids)
    return [
        {"id": i, "label": curation.target_label(session, kind, i), **e.as_dict()}
        for i, e in sorted(figures.items(), key=lambda x: -x[1].score)
        if segment is None or e.segment == segment
    ]


def _mailboxes(session: Session, message_ids: Collection[int]) -> dict[int, list[str]]:
    out: dict[int, set[str]] = {}
    for part in store.chunks(sorted(message_ids)):
        for mid, name in session.execute(
            sa.select(MessageLocation.message_id, Mailbox.name)
            .join(Folder, Folder.id == MessageLocation.folder_id)
            .join(Mailbox, Mailbox.id == Folder.mailbox_id)
            .where(MessageLocation.message_id.in_(part))
        ):
            out.setdefault(mid, set()).add(name)
    return {mid: sorted(names) for mid, names in out.items()}


@dataclass(frozen=True)
class Linked:
    """A message linked to a record, and the link's method and confidence."""

    id: int
    message_id: str
    thread_id: int | None
    sent_at: datetime | None
    direction: str
    from_email: str
    subject: str
    snippet: str
    method: str
    confidence: float


def linked_messages(
    session: Session, kind: str, target_id: int, limit: int | None = None
) -> list[Linked]:
    """The messages linked to a record, oldest first (the last `limit` when given). Read
    as columns, not Message objects: a record with thousands of messages (the web record
    page) would spend its time building those."""
    m = Message
    query = (
        sa.select(
            m.id,
            m.message_id,
            m.thread_id,
            m.sent_at,
            m.direction,
            m.from_email,
            m.subject,
            m.snippet,
            Link.method,
            Link.confidence,
        )
        .join(Link, Link.message_id == m.id)
        .where(models.linking(kind, [target_id]), ~Link.tombstone)
        .order_by(m.sent_at.desc(), m.id.desc())
    )
    if limit:
        query = query.limit(limit)
    found = [Linked(*row[:9], float(row[9])) for row in session.execute(query)]
    found.reverse()
    return found


def timeline(
    session: Session, kind: str, target_id: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """The messages linked to a record, oldest first (the last `limit` when given)."""
    found = linked_messages(session, kind, target_id, limit)
    boxes = _mailboxes(session, [row.id for row in found])
    return [
        {
            "id": row.id,
            "message_id": row.message_id,
            "thread_id": row.thread_id,
            "sent_at": _iso(row.sent_at),
            "direction": row.direction,
            "from": row.from_email,
            "subject": row.subject,
            "snippet": row.snippet,
            "mailboxes": boxes.get(row.id, []),
            "method": row.method,
            "confidence": row.confidence,
        }
        for row in found
    ]


def explain(session: Session, message: Message) -> dict[str, Any]:
    """Everything that decided a message's links: verdict, links, manual marks, review."""
    state = session.get(MatchState, message.id)
    rows = session.scalars(
        sa.select(Link)
        .where(
            sa.or_(
                Link.message_id == message.id,
                sa.and_(
                    models.manual_links(),
                    Link.thread_id == message.thread_id,
                    Link.message_id.is_(None),
                ),
            )
        )
        .order_by(Link.target_kind, Link.id)
    ).all()

    def describe(row: Link) -> dict[str, Any]:
        return {
            "kind": row.target_kind,
            "target_id": row.target_id,
            "target": curation.target_label(session, row.target_kind, row.target_id),
            "method": row.method,
            "confidence": row.confidence,
            "explanation": row.explanation,
            "scope": "message" if row.message_id else "thread",
            "created_by": row.created_by,
            "tombstone": row.tombstone,
        }

    review = None
    if message.thread_id is not None:
        item = session.scalar(
            sa.select(models.ReviewItem).where(models.ReviewItem.thread_id == message.thread_id)
        )
        if item is not None:
            review = {
                "id": item.id,
                "status": item.status,
                "explanation": item.explanation,
                "candidates": [
                    curation.target_label(session, item.kind, int(c))
                    for c in item.candidates.split()
                ],
            }
    return {
        "id": message.id,
        "message_id": message.message_id,
        "thread_id": message.thread_id,
        "sent_at": _iso(message.sent_at),
        "direction": message.direction,
        "from": message.from_email,
        "subject": message.subject,
        "reason": state.reason if state else None,
        "detail": state.detail if state else "not matched yet",
        "matched_at": _iso(state.matched_at) if state else None,
        "links": [describe(r) for r in rows if not r.tombstone and r.message_id],
        "thread_links": [describe(r) for r in rows if not r.tombstone and not r.message_id],
        "unlinked": [describe(r) for r in rows if r.tombstone],
        "review": review,
    }


def export_links(session: Session) -> Iterator[dict[str, Any]]:
    """Per linked message (by Message-ID): contact addresses, company names, opportunity
    references, each with the method that linked it. Streams, in message id order."""
    emails: dict[int, list[str]] = {}
    for cid, email in session.execute(
        sa.select(models.ContactEmail.contact_id, models.ContactEmail.email).order_by(
            models.ContactEmail.id
        )
    ):
        emails.setdefault(cid, []).append(email)
    names = {i: n for i, n in session.execute(sa.select(models.Company.id, models.Company.name))}
    refs = {
        i: r
        for i, r in session.execute(sa.select(models.Opportunity.id, models.Opportunity.reference))
    }
    query = (
        sa.select(Message.id, Message.message_id, Link.target_kind, Link.target_id, Link.method)
        .join(Link, Link.message_id == Message.id)
        .where(~Link.tombstone)
        .order_by(Message.id, Link.target_kind, Link.target_id)
        .execution_options(yield_per=5000)
    )
    current: dict[str, Any] | None = None
    current_id = None
    for mid, msgid, kind, target, method in session.execute(query):
        if mid != current_id:
            if current is not None:
                yield current
            current_id = mid
            current = {"message_id": msgid, "contacts": [], "companies": [], "opportunities": []}
        assert current is not None
        if kind == "contact":
            current["contacts"].append({"emails": emails.get(target, []), "method": method})
        elif kind == "company":
            current["companies"].append({"name": names.get(target), "method": method})
        elif kind == "opportunity":
            current["opportunities"].append(
                {"reference": refs.get(target) or f"#{target}", "method": method}
            )
    if current is not None:
        yield current
