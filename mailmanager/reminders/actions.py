"""What a user does with reminders (CLI now, web later): list, snooze, dismiss, done, and the
per-thread "expects a reply" override. Each action is audited and takes effect in the
caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import audit, models, webhookevents
from mailmanager.db.models import Reminder
from mailmanager.errors import MailmanagerError
from mailmanager.reminders import about as reminder_about
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import evaluation as reminders
from mailmanager.reminders import facts as reminder_facts
from mailmanager.reminders import passes as reminder_pass
from mailmanager.reminders import plan as reminder_plan

STATUSES = reminder_plan.STATUSES
EXPECT = ("always", "never", "auto")
_DURATION = re.compile(r"\s*(\d+)\s*(bd|d|h)\s*\Z", re.I)


class ReminderActionError(MailmanagerError):
    """Raised when a reminder or thread does not exist, or an action does not apply to it
    (e.g. snoozing a cancelled reminder); the message says which."""


@dataclass(frozen=True)
class ReminderLine:
    """One reminder as `reminders list` shows it. `subject`, the contact, company and
    opportunity are read now from the thread's current links and records
    (`about.describe`): the thread's subject, or the opportunity or client a reminder about
    a record concerns."""

    id: int
    kind: str
    status: str
    user: str
    thread_id: int | None
    target: str | None
    subject: str
    contact_email: str
    due_at: datetime
    waiting_since: datetime | None
    sent_count: int
    snoozed_until: datetime | None
    escalated_from: str | None
    reason: str
    contact: str = ""  # "Jean Dupont <jean@acme.fr>"
    company: str = ""
    opportunity: str = ""  # "OPP-12 — Title"


def list_reminders(
    session: Session, user_email: str | None = None, status: str | None = None, limit: int = 200
) -> list[ReminderLine]:
    """Reminders, soonest due first, optionally of one user and one status."""
    U = models.User
    esc = sa.orm.aliased(U)
    stmt = (
        sa.select(Reminder, U.email, esc.email)
        .join(U, U.id == Reminder.user_id)
        .outerjoin(esc, esc.id == Reminder.escalated_from_id)
        .order_by(Reminder.due_at, Reminder.id)
        .limit(limit)
    )
    if user_email:
        stmt = stmt.where(U.email == user_email.strip().lower())
    if status:
        stmt = stmt.where(Reminder.status == status)
    rows = session.execute(stmt).all()
    about = reminder_about.describe(session, [r for r, _, _ in rows])
    return [
        ReminderLine(
            r.id,
            r.kind,
            r.status,
            email,
            r.thread_id,
            r.target,
            about[r.id].title,
            about[r.id].contact_email,
            r.due_at,
            r.waiting_since,
            r.sent_count,
            r.snoozed_until,
            esc_email,
            r.reason,
            contact=about[r.id].contact,
            company=about[r.id].company_name,
            opportunity=about[r.id].opportunity,
        )
        for r, email, esc_email in rows
    ]


def parse_duration(text: str, now: datetime, cal: bt.Calendar) -> datetime:
    """The end of a snooze: "3h" (hours), "2d" (days), "3bd" (business days of `cal`).

    Raises ReminderActionError for anything else.
    """
    m = _DURATION.match(text)
    if m is None or int(m[1]) == 0:
        raise ReminderActionError(f"{text!r} is not a duration: write e.g. 3h, 2d or 3bd")
    n, unit = int(m[1]), m[2].lower()
    if unit == "bd":
        return bt.add_business_days(now, n, cal)
    return now + (timedelta(hours=n) if unit == "h" else timedelta(days=n))


def _get(session: Session, reminder_id: int) -> Reminder:
    r = session.get(Reminder, reminder_id)
    if r is None:
        raise ReminderActionError(f"no reminder #{reminder_id}")
    return r


def snooze(
    session: Session,
    cfg: config_mod.Config,
    reminder_id: int,
    duration: str,
    now: datetime,
    actor: str = "cli",
) -> datetime:
    """Snooze a pending or sent reminder; it is due again when the snooze ends. Returns that
    time. Raises ReminderActionError when the reminder is missing, closed, or the duration
    is not understood."""
    r = _get(session, reminder_id)
    if r.status not in ("pending", "sent", "snoozed"):
        raise ReminderActionError(
            f"reminder #{r.id} is {r.status}: only pending or sent ones snooze"
        )
    user = reminder_facts.setting(session, cfg).by_id.get(r.user_id)
    until = parse_duration(duration, now, user.calendar if user else bt.Calendar())
    r.status, r.snoozed_until, r.due_at, r.updated_at = "snoozed", until, until, models.utcnow()
    session.flush()
    reminder_pass.schedule(session, [(r.thread_id, r.target)], until)
    audit.record(session, actor, "reminder_snooze", f"reminder:{r.id}", {"until": until})
    return until


def close(session: Session, reminder_id: int, status: str, actor: str = "cli") -> None:
    """Mark a reminder dismissed or done: it never comes back for this cycle (a new message
    in the thread starts a new one). Raises ReminderActionError when it is missing."""
    if status not in ("dismissed", "done"):
        raise ValueError(status)
    r = _get(session, reminder_id)
    r.status, r.updated_at = status, models.utcnow()
    audit.record(session, actor, f"reminder_{status}", f"reminder:{r.id}", {"kind": r.kind})
    webhookevents.reminders_closed(session, [r.id], r.updated_at)  # its query autoflushes


def set_expect(
    session: Session,
    cfg: config_mod.Config,
    thread_id: int,
    value: str,
    now: datetime,
    actor: str = "cli",
) -> reminders.EvaluationReport:
    """Override the "expects a reply" heuristic on a thread (`always`, `never`, or `auto` to
    remove the override), then re-evaluate it at `now`. Raises ReminderActionError when the
    thread does not exist or the value is not one of `EXPECT`."""
    if value not in EXPECT:
        raise ReminderActionError(f"{value!r}: use one of {', '.join(EXPECT)}")
    thread = session.get(models.Thread, thread_id)
    if thread is None:
        raise ReminderActionError(f"no thread #{thread_id}")
    thread.expect_reply = None if value == "auto" else value
    session.flush()
    audit.record(session, actor, "reminder_expect", f"thread:{thread_id}", {"expect": value})
    return reminders.evaluate(session, cfg, now, thread_ids=[thread_id])


def ids_of(lines: Sequence[ReminderLine]) -> list[int]:
    return [line.id for line in lines]
