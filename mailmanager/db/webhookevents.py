"""Recording webhook events: one row per event, one delivery row per subscriber (issue #18).

The stages that make events (matching, sync, reminders) call the functions here in their
own transaction, so an event exists exactly when the change it reports is committed: a crash
loses neither, and a rolled-back batch leaves no event behind. `notify.webhooks` delivers
the rows later (at least once, with backoff; see there).

Cost when nobody listens: `wanted` reads the subscriptions once per transaction (one small
SELECT, kept in `session.info` for that transaction) and every emitter returns at once when
no subscription wants its type, before building any payload. The sync and matcher
benchmarks thus pay one tiny query per batch.

An event's body is the Standard Webhooks shape `{"type", "timestamp", "data"}`, stored as
the exact bytes sent and signed, so every attempt and every receiver gets the same body
under the same `webhook-id` (`WebhookEvent.event_id`). A `dedup_key` makes recording the
same fact twice (a replayed batch, a second pass) a no-op.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from mailmanager.db import models, store

EVENT_TYPES = (
    "message.linked",
    "thread.replied",
    "reminder.due",
    "reminder.closed",
    "link.changed",
    "mailbox.failed",
)
TEST_EVENT = "webhook.test"  # sent by "send test event" to one subscription only
_CACHE = "mm_webhook_subscribers"


@dataclass(frozen=True)
class NewEvent:
    """An event to record: its type, its `data` (JSON-able) and an optional dedup key."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None


def new_event_id() -> str:
    """A fresh `webhook-id` ("msg_" + 32 hex digits, as the specification's examples)."""
    return f"msg_{uuid.uuid4().hex}"


def body(event_type: str, data: dict[str, Any], at: datetime) -> str:
    """The JSON body sent for an event (compact, UTF-8, the order kept)."""
    doc = {"type": event_type, "timestamp": at.isoformat(), "data": data}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str)


def subscribers(session: Session) -> dict[str, list[int]]:
    """Subscription ids by event type, read once per transaction of `session`."""
    transaction = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is not None and cached[0] is transaction and transaction is not None:
        return dict(cached[1])
    out: dict[str, list[int]] = defaultdict(list)
    s = models.WebhookSubscription
    for sid, types in session.execute(sa.select(s.id, s.event_types).order_by(s.id)):
        for t in types.split():
            out[t].append(sid)
    session.info[_CACHE] = (transaction, dict(out))
    return dict(out)


def forget(session: Session) -> None:
    """Drop the cached subscribers (after a subscription changed in this transaction)."""
    session.info.pop(_CACHE, None)


def wanted(session: Session, *types: str) -> bool:
    """Whether any subscription wants one of `types` (cheap: see the module docstring)."""
    subs = subscribers(session)
    return any(subs.get(t) for t in types)


def record(
    session: Session,
    events: Sequence[NewEvent],
    now: datetime | None = None,
    only: Sequence[int] | None = None,
) -> list[str]:
    """Record `events` and their deliveries in the caller's transaction; return the
    `webhook-id`s of those recorded (an event no subscription wants, or already recorded
    under its dedup key, is skipped). `only`: deliver to these subscriptions alone
    (whatever their types: the test event)."""
    now = now or models.utcnow()
    subs = subscribers(session)
    keep = [e for e in events if only is not None or subs.get(e.type)]
    if not keep:
        return []
    rows = [
        {"event_id": new_event_id(), "type": e.type, "dedup_key": e.dedup_key,
         "payload": body(e.type, e.data, now), "created_at": now}
        for e in keep
    ]  # fmt: skip
    store.insert_ignore(session, store.table(models.WebhookEvent), rows)
    kind = {r["event_id"]: str(r["type"]) for r in rows}
    w = models.WebhookEvent
    recorded: list[tuple[int, str]] = []
    for chunk in store.chunks(list(kind)):
        recorded += [(i, e) for i, e in session.execute(sa.select(w.id, w.event_id).where(
            w.event_id.in_(chunk)))]  # fmt: skip
    deliveries = [
        {"subscription_id": sid, "event_id": rid, "status": "pending", "attempts": 0,
         "possible_duplicate": False, "created_at": now}
        for rid, eid in recorded
        for sid in (only if only is not None else subs.get(kind[eid], []))
    ]  # fmt: skip
    store.insert_ignore(session, store.table(models.WebhookDelivery), deliveries)
    return [eid for _, eid in recorded]


# --- the events of each stage -------------------------------------------------------------


def _names(session: Session, targets: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Display names of link targets: contacts, companies, opportunities."""
    by_kind: dict[str, set[int]] = defaultdict(set)
    for kind, ident in targets:
        by_kind[kind].add(ident)
    out: dict[tuple[str, int], str] = {}
    c, co, o = models.Contact, models.Company, models.Opportunity
    queries = {
        "contact": (c.id, sa.func.trim(c.first_name + " " + c.last_name)),
        "company": (co.id, co.name),
        "opportunity": (o.id, o.title),
    }
    for kind, ids in by_kind.items():
        if kind not in queries:
            continue
        col_id, col_name = queries[kind]
        for chunk in store.chunks(sorted(ids)):
            for ident, name in session.execute(sa.select(col_id, col_name).where(
                    col_id.in_(chunk))):  # fmt: skip
                out[(kind, ident)] = str(name or "")
    return out


def messages_linked(session: Session, links: Sequence[tuple[Any, ...]]) -> None:
    """`message.linked` for new messages the matcher linked: `links` are its fresh rows
    (message id, thread id, kind, target id, method, confidence, explanation, ...)."""
    if not links or not wanted(session, "message.linked"):
        return
    by_message: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in links:
        by_message[int(row[0])].append(row)
    names = _names(session, ((str(r[2]), int(r[3])) for r in links))
    m = models.Message
    info: dict[int, Any] = {}
    for chunk in store.chunks(sorted(by_message)):
        for row in session.execute(
            sa.select(m.id, m.message_id, m.subject, m.sent_at, m.direction, m.from_email).where(
                m.id.in_(chunk)
            )
        ):
            info[row.id] = row
    events = []
    for mid, rows in sorted(by_message.items()):
        msg = info.get(mid)
        if msg is None:
            continue
        data = {
            "message": {"id": mid, "thread_id": rows[0][1], "message_id": msg.message_id,
                        "subject": msg.subject, "from": msg.from_email,
                        "direction": msg.direction,
                        "sent_at": msg.sent_at.isoformat() if msg.sent_at else None},
            "links": [{"kind": r[2], "id": r[3], "name": names.get((str(r[2]), int(r[3])), ""),
                       "method": r[4], "confidence": float(r[5])} for r in rows],
        }  # fmt: skip
        events.append(NewEvent("message.linked", data, f"message.linked:{mid}"))
    record(session, events)


def links_changed(
    session: Session, changes: Sequence[tuple[str, int | None, str, int, str]], actor: str
) -> None:
    """`link.changed`, one per changed link: (action add/remove, message id (None: the
    whole thread, by hand), kind, target id, method); `actor`: "matcher" or who decided."""
    if not changes or not wanted(session, "link.changed"):
        return
    names = _names(session, ((k, t) for _, _, k, t, _ in changes))
    record(session, [
        NewEvent("link.changed", {"action": a, "message_id": mid, "kind": k, "id": t,
                                  "name": names.get((k, t), ""), "method": meth, "by": actor})
        for a, mid, k, t, meth in changes
    ])  # fmt: skip


def thread_replies(session: Session, message_ids: Sequence[int]) -> None:
    """`thread.replied` for new real messages (not auto-replies, bulk or bounces) that answer
    the other side: the thread's previous real message went the other way."""
    if not message_ids or not wanted(session, "thread.replied"):
        return
    m, p = models.Message, aliased(models.Message)
    real = sa.and_(~m.is_auto_reply, ~m.is_bulk, ~m.is_bounce)
    prev_dir = (
        sa.select(p.direction)
        .where(p.thread_id == m.thread_id, p.id != m.id, p.sent_at < m.sent_at,
               ~p.is_auto_reply, ~p.is_bulk, ~p.is_bounce)
        .order_by(p.sent_at.desc())
        .limit(1)
        .scalar_subquery()
    )  # fmt: skip
    events = []
    for chunk in store.chunks(sorted(set(message_ids))):
        for row in session.execute(
            sa.select(m.id, m.thread_id, m.direction, m.subject, m.from_email, m.sent_at,
                      prev_dir.label("prev"))
            .where(m.id.in_(chunk), real, m.direction.in_(("inbound", "outbound")))
        ):  # fmt: skip
            if row.prev is None or row.prev == row.direction or row.prev == "internal":
                continue
            data = {"thread_id": row.thread_id, "message_id": row.id, "direction": row.direction,
                    "from": row.from_email, "subject": row.subject,
                    "sent_at": row.sent_at.isoformat() if row.sent_at else None}  # fmt: skip
            events.append(NewEvent("thread.replied", data, f"thread.replied:{row.id}"))
    record(session, events)


def _reminder_data(r: models.Reminder) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "status": r.status, "thread_id": r.thread_id,
            "user_id": r.user_id, "contact_email": r.contact_email, "target": r.target,
            "due_at": r.due_at.isoformat(), "reason": r.reason}  # fmt: skip


def reminders_due(session: Session, reminder_ids: Sequence[int], now: datetime) -> None:
    """`reminder.due` for the reminders just marked sent at `now` (their notification goes
    out in the same transaction): once per reminder and send."""
    if not reminder_ids or not wanted(session, "reminder.due"):
        return
    r = models.Reminder
    rows = session.scalars(
        sa.select(r).where(r.id.in_(list(reminder_ids)), r.status == "sent", r.sent_at == now)
    ).all()
    record(session, [
        NewEvent("reminder.due", _reminder_data(x), f"reminder.due:{x.id}:{x.sent_count}")
        for x in rows
    ])  # fmt: skip


def reminders_closed(session: Session, reminder_ids: Sequence[int], at: datetime) -> None:
    """`reminder.closed` for these reminders if they are now closed (answered by a reply,
    done, dismissed, cancelled) and were changed at `at` (by the caller's update)."""
    if not reminder_ids or not wanted(session, "reminder.closed"):
        return
    r = models.Reminder
    closed = ("answered", "cancelled", "dismissed", "done")
    rows = session.scalars(
        sa.select(r).where(r.id.in_(list(reminder_ids)), r.status.in_(closed), r.updated_at == at)
    ).all()
    record(session, [
        NewEvent("reminder.closed", _reminder_data(x),
                 f"reminder.closed:{x.id}:{x.status}:{x.sent_count}:{at.isoformat()}")
        for x in rows
    ])  # fmt: skip


def mailbox_failed(session: Session, mailbox: str, error: str, at: datetime) -> None:
    """`mailbox.failed`: a mailbox's sync failed where it had succeeded before."""
    if not wanted(session, "mailbox.failed"):
        return
    data = {"mailbox": mailbox, "error": error[:500], "failed_at": at.isoformat()}
    record(session, [NewEvent("mailbox.failed", data)])
