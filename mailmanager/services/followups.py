"""A salesperson's follow-ups ("Mes relances") as the web workspace shows and acts on them.

Listing reads the open reminders (pending, sent, snoozed) of the viewer, and for a manager
of the users they manage, through `reminders.actions.list_reminders` (what `reminders list`
shows), with how long each has waited in the user's business days and the last message's
excerpt. Acting goes through the CLI's own calls (`reminders.actions.snooze`, `close`,
`set_expect`), after `_allowed` checks that each reminder belongs to the viewer or to a user
they manage: any other id is refused as if it did not exist (`NotFound`), nothing changed.

`act_by_link` applies a digest link's single action (`notify.actionlinks`) once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models, store
from mailmanager.db.models import Reminder, WebActionUse
from mailmanager.errors import MailmanagerError
from mailmanager.notify import actionlinks, notifier
from mailmanager.reminders import actions
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import plan as reminder_plan
from mailmanager.reminders import rules as reminder_rules
from mailmanager.services.access import Viewer, viewer_for

log = logging.getLogger(__name__)

OPEN = reminder_plan.OPEN
SNOOZE_PRESETS = {"1bd": "1bd", "3d": "3d", "1w": "7d"}
CLOSE = ("done", "dismissed")


class NotFound(MailmanagerError):
    """Raised when a reminder does not exist or is not the viewer's to see or act on."""


class LinkRefused(MailmanagerError):
    """Raised by `act_by_link`: `reason` is "used" (the link worked once already),
    "gone" (the reminder or its user no longer exists, or it is not the user's), or
    "closed" (the reminder is no longer open)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"action link refused: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Followup:
    """One open reminder as "My follow-ups" shows it. `kind` is the rule's kind (an
    escalation's `escalated_from` names whose reminder it escalates)."""

    id: int
    kind: str
    status: str
    user: str
    thread_id: int | None
    subject: str
    contact: str
    contact_email: str
    company: str
    opportunity: str
    reason: str
    due_at: datetime
    due: bool  # due now (else upcoming)
    waiting_since: datetime | None
    business_days_waiting: int
    snoozed_until: datetime | None
    escalated_from: str | None
    last_from: str
    snippet: str


def users_shown(viewer: Viewer, user: str | None) -> list[str]:
    """Whose follow-ups to list: `user` when the viewer may see them, else all they may."""
    if user and user in viewer.sees_content_of:
        return [user]
    return sorted(viewer.sees_content_of)


def list_followups(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    now: datetime,
    user: str | None = None,
    limit: int = 500,
) -> list[Followup]:
    """The open reminders of the viewer (and of the users they manage, or only `user`),
    due ones first, soonest due first."""
    lines = [
        line
        for email in users_shown(viewer, user)
        for status in OPEN
        for line in actions.list_reminders(session, email, status, limit)
    ]
    lines.sort(key=lambda x: (x.due_at, x.id))
    lines = lines[:limit]
    last = _last_messages(session, [x.id for x in lines])
    calendars: dict[str, bt.Calendar] = {}
    out = []
    for x in lines:
        cal = calendars.get(x.user)
        if cal is None:
            u = cfg.user(x.user)
            cal = calendars[x.user] = notifier.calendar(cfg, u) if u else bt.Calendar()
        days = bt.business_days_between(x.waiting_since, now, cal) if x.waiting_since else 0
        frm, snippet = last.get(x.id, ("", ""))
        out.append(
            Followup(
                id=x.id,
                kind=x.kind.removeprefix(reminder_rules.ESCALATION),
                status=x.status,
                user=x.user,
                thread_id=x.thread_id,
                subject=x.subject,
                contact=x.contact,
                contact_email=x.contact_email,
                company=x.company,
                opportunity=x.opportunity,
                reason=x.reason,
                due_at=x.due_at,
                due=x.due_at <= now,
                waiting_since=x.waiting_since,
                business_days_waiting=days,
                snoozed_until=x.snoozed_until,
                escalated_from=x.escalated_from,
                last_from=frm,
                snippet=snippet,
            )
        )
    out.sort(key=lambda f: (not f.due, f.due_at, f.id))
    return out


def _last_messages(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """reminder id -> (sender, snippet) of the message it is about."""
    M = models.Message
    rows = session.execute(
        sa.select(Reminder.id, M.from_name, M.from_email, M.snippet)
        .join(M, M.id == Reminder.message_id)
        .where(Reminder.id.in_(ids))
    )
    return {rid: (name or email or "", snippet or "") for rid, name, email, snippet in rows}


def _allowed(
    session: Session, viewer: Viewer, ids: Sequence[int], write: bool = True
) -> list[Reminder]:
    """The reminders `ids`, each the viewer's or a managed user's. With `write` (the
    caller changes them next), SQLite's write lock is taken first. Raises NotFound."""
    if not ids:
        return []
    if write:
        store.write_first(session)
    rows = session.execute(
        sa.select(Reminder, models.User.email)
        .join(models.User, models.User.id == Reminder.user_id)
        .where(Reminder.id.in_(set(ids)))
    ).all()
    found = {r.id: r for r, email in rows if email in viewer.sees_content_of}
    missing = [i for i in ids if i not in found]
    if missing:
        log.warning(
            "follow-up refused",
            extra={"action": "web_followup_refused", "user": viewer.email, "ids": missing[:10]},
        )
        raise NotFound(f"no follow-up #{missing[0]}")
    return [found[i] for i in dict.fromkeys(ids)]


def _duration_to(day: date, now: datetime, cal: bt.Calendar) -> str:
    """A `parse_duration` text ending at the start of the working day on `day`."""
    target = datetime.combine(day, cal.start, tzinfo=cal.tz)
    hours = math.ceil((target - now) / timedelta(hours=1))
    if hours < 1:
        raise actions.ReminderActionError(f"{day.isoformat()} is not in the future")
    return f"{hours}h"


def snooze(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    ids: Sequence[int],
    how: str,
    now: datetime,
) -> list[datetime]:
    """Snooze the reminders `ids` by a preset of `SNOOZE_PRESETS` or until a day
    ("YYYY-MM-DD", at the start of its owner's working day). Raises NotFound, or
    ReminderActionError (e.g. a date in the past)."""
    rows = _allowed(session, viewer, ids)
    out = []
    for r in rows:
        if how in SNOOZE_PRESETS:
            duration = SNOOZE_PRESETS[how]
        else:
            try:
                day = date.fromisoformat(how)
            except ValueError:
                raise actions.ReminderActionError(
                    f"{how!r} is not a snooze: pick a preset or a date"
                ) from None
            email = session.scalar(sa.select(models.User.email).where(models.User.id == r.user_id))
            u = cfg.user(email or "")
            duration = _duration_to(day, now, notifier.calendar(cfg, u) if u else bt.Calendar())
        out.append(actions.snooze(session, cfg, r.id, duration, now, actor=f"web:{viewer.email}"))
    return out


def close(session: Session, viewer: Viewer, ids: Sequence[int], status: str) -> None:
    """Mark the reminders `ids` done or dismissed. Raises NotFound."""
    if status not in CLOSE:
        raise ValueError(status)
    for r in _allowed(session, viewer, ids):
        actions.close(session, r.id, status, actor=f"web:{viewer.email}")


def expect_no_reply(
    session: Session, cfg: config_mod.Config, viewer: Viewer, reminder_id: int, now: datetime
) -> None:
    """Mark the reminder's thread as expecting no reply (`reminders expect ID never`), which
    re-evaluates it: its awaiting-reply reminder is cancelled. Raises NotFound, or
    ReminderActionError for a reminder without a thread."""
    (r,) = _allowed(session, viewer, [reminder_id])
    if r.thread_id is None:
        raise actions.ReminderActionError(f"follow-up #{r.id} is not about a conversation")
    actions.set_expect(session, cfg, r.thread_id, "never", now, actor=f"web:{viewer.email}")


def link_target(
    session: Session, cfg: config_mod.Config, claim: actionlinks.Claim, now: datetime
) -> tuple[Viewer, Followup | None]:
    """Who a link's claim is for and the reminder it names (None when no longer open).
    Raises LinkRefused("gone") when the user left the configuration or the reminder is
    not theirs."""
    viewer = viewer_for(cfg, claim.user)
    if viewer is None:
        raise LinkRefused("gone")
    try:
        (r,) = _allowed(session, viewer, [claim.reminder_id], write=False)
    except NotFound:
        raise LinkRefused("gone") from None
    if r.status not in OPEN:
        return viewer, None
    shown = list_followups(session, cfg, viewer, now)
    return viewer, next((f for f in shown if f.id == r.id), None)


def used(session: Session, token_hash: str) -> bool:
    """Whether a digest link was used already."""
    stmt = sa.select(WebActionUse.id).where(WebActionUse.token_hash == token_hash)
    return session.scalar(stmt) is not None


def act_by_link(
    session: Session,
    cfg: config_mod.Config,
    claim: actionlinks.Claim,
    token_hash: str,
    now: datetime,
) -> None:
    """Apply a digest link's action once (snooze 3 days, done, dismiss). Raises LinkRefused
    ("used", "gone", "closed"); `open` links change nothing and are not recorded."""
    if claim.action == "open":
        return
    store.write_first(session)
    if used(session, token_hash):
        raise LinkRefused("used")
    viewer = viewer_for(cfg, claim.user)
    if viewer is None:
        raise LinkRefused("gone")
    try:
        (r,) = _allowed(session, viewer, [claim.reminder_id])
    except NotFound:
        raise LinkRefused("gone") from None
    if r.status not in OPEN:
        raise LinkRefused("closed")
    try:
        with session.begin_nested():
            session.add(
                WebActionUse(
                    token_hash=token_hash,
                    user_email=viewer.email,
                    reminder_id=r.id,
                    action=claim.action,
                    used_at=now,
                )
            )
    except IntegrityError:  # the same link, used at the same moment elsewhere
        raise LinkRefused("used") from None
    actor = f"web-link:{viewer.email}"
    if claim.action == "snooze":
        actions.snooze(session, cfg, r.id, actionlinks.SNOOZE, now, actor=actor)
    else:
        actions.close(session, r.id, "done" if claim.action == "done" else "dismissed", actor)
