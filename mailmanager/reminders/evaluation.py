"""Follow-up reminders (relances): evaluation passes, the sync hook, and what the notifier reads.

Lifecycle of a reminder row: pending → sent → (snoozed | answered | dismissed | done |
cancelled); the states are described once, in the README ("Reminders: kinds and states").
- *Created* pending, with its due time, as soon as a thread's state calls for it (our
  message awaits a reply, a contact's message awaits ours, a bounce) — or, for a dormant
  opportunity or a client at risk, once it is due. Unique per (thread or target, kind,
  cycle) and written with `store.insert_ignore`, so it is never created twice.
- *Cancelled* the moment a reply is synced: `sync_hook` re-evaluates the threads of every
  stored batch inside the batch's transaction. A reminder already sent is *answered*
  instead (it leaves the open ones, and the counts say the client did reply). *Re-armed*
  when the salesperson writes again (a new cycle). *Moved* when an out-of-office notice
  arrives.
- *Re-checked at send time* (`due_items` → `recheck`): still unanswered, and every mailbox
  concerned synced past the due time (`Mailbox.synced_until >= due_at`), else it waits.
- *Sent* by the notifier (`mark_sent`), in the transaction that writes the outbox row. A
  sent reminder still unanswered `repeat_days` business days later is pending again (up to
  `max_repeats` times); after `escalate_after` sendings the user's manager gets an
  escalation row (kind "escalation:<kind>"). Snoozed, it comes back when the snooze ends.

Cost: an evaluation pass reads only the `ReminderCheck` rows whose time has come, the
threads changed since the previous pass (`Thread.updated_at`), and open opportunities or
clients never evaluated; each thread is evaluated in set queries per chunk of 500
(`reminders.facts`). Rules are pure functions (`reminders.rules`, `reminders.plan`).

Interface for the notifier: `DigestItem`, `due_items`, `mark_sent`. A reminder may fall
due more than once (after a snooze or as a repeat): `(reminder_id, repeat)` names one firing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager import events
from mailmanager.config import reminder_kinds
from mailmanager.db import models, store, webhookevents
from mailmanager.db.models import Reminder
from mailmanager.reminders import about as reminder_about
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import facts as reminder_facts
from mailmanager.reminders import passes as reminder_pass
from mailmanager.reminders import rules
from mailmanager.reminders import targets as reminder_targets

log = logging.getLogger(__name__)

KINDS = reminder_kinds.ALL  # what `DigestItem.kind` may be


@dataclass(frozen=True)
class DigestItem:
    """One due reminder as the notifier shows it.

    `kind` is one of `KINDS` (for an escalation, the kind of the reminder escalated, with
    `escalated_from` set to the email of the user it is about). Strings are "" when unknown.
    `subject` and the contact, company and opportunity are read when the item is made, from
    the thread's current links and records (`about.describe`): the thread's subject, or for
    a reminder about a record, the opportunity ("OPP-12 — Title") or the client.
    `reason` is one short English sentence, a fallback: the notifier words items by `kind`
    and the other fields. `business_days_waiting` counts the user's business days since
    `waiting_since`. `cycle` identifies the episode (a new follow-up starts a new one);
    `repeat` is how many times this reminder was sent before (0 the first time).
    """

    reminder_id: int
    kind: str
    thread_id: int | None
    subject: str
    contact_name: str
    contact_email: str
    company_name: str
    opportunity_ref: str
    opportunity_title: str
    waiting_since: datetime | None
    business_days_waiting: int
    last_from: str
    last_snippet: str
    reason: str
    mailbox: str
    cycle: int
    escalated_from: str | None
    repeat: int = 0


@dataclass(frozen=True)
class EvaluationReport:
    now: datetime
    threads: int
    targets: int
    counts: dict[str, int]
    invalidated: int
    elapsed: float
    actions: tuple[reminder_pass.Action, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


EVALUATION_LOCK = 0x6D6D_0002  # PostgreSQL advisory lock key: reminder evaluation (mm 2)


def evaluate(
    session: Session,
    cfg: config_mod.Config,
    now: datetime,
    thread_ids: Iterable[int] | None = None,
) -> EvaluationReport:
    """Create, move, repeat, escalate and cancel reminders as of `now`; the caller commits.

    With `thread_ids`, only those threads (and the opportunities and clients they concern)
    are evaluated: that is what the sync hook and `recheck` do. Without, a pass evaluates
    what is due (`ReminderCheck.check_at <= now`), the threads changed since the previous
    pass, and open opportunities and clients never evaluated. Does nothing when
    `[reminders] enabled = false`.
    """
    started, wall = time.perf_counter(), models.utcnow()
    # Passes of several workers (and the sync hooks) upsert and delete the same
    # `reminder_checks` rows in different orders: one at a time, or they deadlock.
    store.advisory_xact_lock(session, EVALUATION_LOCK)
    p = reminder_pass.Pass(now=now, st=reminder_facts.setting(session, cfg))
    if cfg.reminders.enabled:
        if thread_ids is not None:
            reminder_pass.run_targets(
                session, p, reminder_pass.run_threads(session, cfg, p, set(thread_ids))
            )
        else:
            reminder_pass.full_pass(session, cfg, p, wall)
    report = EvaluationReport(
        now,
        p.threads,
        p.targets,
        p.counts,
        p.invalidated,
        round(time.perf_counter() - started, 4),
        tuple(p.actions),
    )
    if thread_ids is None or p.counts:
        log.info(
            "reminders evaluated",
            extra={
                "action": "reminders_evaluated",
                "threads": p.threads,
                "targets": p.targets,
                "counts": dict(p.counts),
                "elapsed": report.elapsed,
            },
        )
    return report


def threads_merged(session: Session, survivor: int, losers: Sequence[int]) -> None:
    """A `MergeHook`: the losers' reminders move to the survivor (see `mailmanager.events`).

    They keep their kind, cycle and state; the next evaluation of the survivor reconciles
    them with what the rules want, as after any other change to the thread.
    """
    session.execute(
        sa.update(Reminder).where(Reminder.thread_id.in_(losers)).values(thread_id=survivor)
    )


def sync_hook(session: Session, cfg: config_mod.Config, result: events.BatchResult) -> None:
    """Per-batch stage (see `sync.default_hooks`): re-evaluate the threads the batch touched,
    so a synced reply cancels its pending reminder in the batch's own transaction.

    Runs in a savepoint: if the database rejects the evaluation, the batch is still stored
    (and its threads, changed, are evaluated again by the next pass).
    """
    if not (result.threads and cfg.reminders.enabled):
        return
    now = models.utcnow()
    threads = _worth_evaluating(session, cfg, result.threads, now)
    if not threads:
        return
    try:
        with session.begin_nested():
            evaluate(session, cfg, now, thread_ids=threads)
    except sa.exc.OperationalError:
        raise  # the database is unreachable or locked: the whole batch is retried
    except sa.exc.DBAPIError as exc:
        log.warning(
            "reminder evaluation of a batch failed; the next pass retries it",
            extra={"action": "reminders_hook_failed", "error": str(exc.orig)[:200]},
        )


# --- send time: what the notifier reads --------------------------------------------------------


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(Reminder.status == "pending", Reminder.due_at <= now),
        sa.and_(Reminder.status == "snoozed", Reminder.snoozed_until <= now),
    )


def _still_due(
    session: Session, cfg: config_mod.Config, ids: Sequence[int], now: datetime
) -> list[Reminder]:
    """Re-evaluate the reminders' threads and targets now; return those still due whose
    mailboxes are synced past their due time."""
    rows = list(session.scalars(sa.select(Reminder).where(Reminder.id.in_(ids))))
    threads = {r.thread_id for r in rows if r.thread_id is not None}
    targets = {t for r in rows if r.target for t in [reminder_targets.parse_key(r.target)] if t}
    if cfg.reminders.enabled:
        p = reminder_pass.Pass(now=now, st=reminder_facts.setting(session, cfg))
        reminder_pass.run_targets(
            session, p, reminder_pass.run_threads(session, cfg, p, threads) | targets
        )
    for r in rows:
        session.refresh(r)
    due = [r for r in rows if r.status == "pending" and r.due_at <= now]
    return [r for r in due if _synced(session, r)]


def _synced(session: Session, r: Reminder) -> bool:
    """Every enabled mailbox of the user concerned, and every one holding the message the
    reminder is about, has been synced past the due time: a reminder must not nag about a
    thread whose reply has arrived but is not synced yet."""
    M, L, F = models.Mailbox, models.MessageLocation, models.Folder
    user = r.escalated_from_id or r.user_id
    where = [M.owner_id == user]
    if r.message_id is not None:
        where.append(
            M.id.in_(
                sa.select(F.mailbox_id)
                .join(L, L.folder_id == F.id)
                .where(L.message_id == r.message_id)
            )
        )
    marks = session.scalars(sa.select(M.synced_until).where(M.enabled, sa.or_(*where))).all()
    return all(m is not None and m >= r.due_at for m in marks)


def recheck(session: Session, cfg: config_mod.Config, reminder: Reminder, now: datetime) -> bool:
    """True when `reminder` should be sent now: still pending (or its snooze is over) and
    due, its condition still true when re-evaluated now (else it is cancelled, in the
    caller's transaction), and its mailboxes synced past its due time (else it waits)."""
    return bool(_still_due(session, cfg, [reminder.id], now))


def due_items(
    session: Session, cfg: config_mod.Config, user_id: int, now: datetime
) -> list[DigestItem]:
    """The user's reminders to send now, oldest first.

    Pending (or snoozed until no later than `now`) with `due_at <= now`, re-checked now with
    `recheck`: a reminder whose thread got a reply meanwhile is cancelled (in the caller's
    transaction) and left out; one whose mailbox has not been synced past its due time is
    left out and stays pending (it comes back once the sync catches up).
    """
    ids = session.scalars(
        sa.select(Reminder.id).where(Reminder.user_id == user_id, _due(now))
    ).all()
    if not ids:
        return []
    rows = _still_due(session, cfg, ids, now)
    st = reminder_facts.setting(session, cfg)
    rows.sort(key=lambda r: (r.waiting_since or r.due_at, r.id))
    about = reminder_about.describe(session, rows)
    return [_item(session, st, r, about[r.id], now) for r in rows]


def _item(
    session: Session,
    st: reminder_facts.Setting,
    r: Reminder,
    about: reminder_about.About,
    now: datetime,
) -> DigestItem:
    msg = session.get(models.Message, r.message_id) if r.message_id else None
    base = r.escalated_from_id or r.user_id
    user = st.by_id.get(base)
    cal = user.calendar if user else bt.Calendar()
    return DigestItem(
        reminder_id=r.id,
        kind=r.kind.removeprefix(rules.ESCALATION),
        thread_id=r.thread_id,
        subject=about.title,
        contact_name=about.contact_name,
        contact_email=about.contact_email,
        company_name=about.company_name,
        opportunity_ref=about.opportunity_ref,
        opportunity_title=about.opportunity_title,
        waiting_since=r.waiting_since,
        business_days_waiting=(
            bt.business_days_between(r.waiting_since, now, cal) if r.waiting_since else 0
        ),
        last_from=(msg.from_name or msg.from_email) if msg else "",
        last_snippet=msg.snippet if msg else "",
        reason=r.reason,
        mailbox=_mailbox_name(session, r.message_id, base),
        cycle=r.cycle,
        escalated_from=st.emails.get(r.escalated_from_id) if r.escalated_from_id else None,
        repeat=r.sent_count,
    )


def _mailbox_name(session: Session, message_id: int | None, user_id: int) -> str:
    """The user's mailbox holding the message, else any holding it, else the user's."""
    M, L, F = models.Mailbox, models.MessageLocation, models.Folder
    found: list[tuple[str, int | None]] = []
    if message_id is not None:
        found = [
            (n, o)
            for n, o in session.execute(
                sa.select(M.name, M.owner_id)
                .join(F, F.mailbox_id == M.id)
                .join(L, L.folder_id == F.id)
                .where(L.message_id == message_id)
                .order_by(M.name)
            )
        ]
    own = [n for n, o in found if o == user_id]
    if own or found:
        return (own or [n for n, _ in found])[0]
    return session.scalar(sa.select(M.name).where(M.owner_id == user_id).order_by(M.name)) or ""


def mark_sent(session: Session, reminder_ids: Sequence[int], now: datetime) -> None:
    """Mark these reminders sent at `now`, in the caller's transaction (the one that writes
    the outbox row). Reminders no longer pending or snoozed (cancelled meanwhile) are left
    unchanged. Their thread or target is re-evaluated at the next pass (repeats)."""
    if not reminder_ids:
        return
    t = store.table(Reminder)
    ids = list(reminder_ids)
    for chunk in store.chunks(ids):
        session.execute(
            sa.update(t)
            .where(t.c.id.in_(chunk), t.c.status.in_(reminder_pass.ACTIVE))
            .values(
                status="sent",
                sent_at=now,
                sent_count=t.c.sent_count + 1,
                snoozed_until=None,
                updated_at=models.utcnow(),
            )
        )
    reminder_pass.schedule(
        session,
        session.execute(
            sa.select(Reminder.thread_id, Reminder.target).where(Reminder.id.in_(ids))
        ).all(),
        now,
    )
    webhookevents.reminders_due(session, ids, now)  # a no-op unless a webhook wants it


def _worth_evaluating(
    session: Session, cfg: config_mod.Config, thread_ids: Iterable[int], now: datetime
) -> set[int]:
    """The touched threads that can still change a reminder: active within `max_age_days`
    (older ones never start one), or holding a reminder that a reply may cancel. An initial
    sync of years of archive thus costs two set queries, not a rule pass per thread."""
    since = now - timedelta(days=cfg.reminders.max_age_days + 1)
    T, R = models.Thread, models.Reminder
    keep: set[int] = set()
    for chunk in store.chunks(sorted(thread_ids)):
        keep.update(session.scalars(sa.select(T.id).where(T.id.in_(chunk), T.last_at >= since)))
        keep.update(
            tid
            for tid in session.scalars(
                sa.select(R.thread_id).where(
                    R.thread_id.in_(chunk), R.status.in_(reminder_pass.OPEN)
                )
            )
            if tid is not None
        )
    return keep
