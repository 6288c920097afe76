"""A salesperson's follow-ups ("Mes relances") as the web workspace shows and acts on them.

Listing reads the open reminders (pending, sent, snoozed) of the viewer, and for a manager
of the users they manage, a page at a time (soonest due first, the next page after the last
one shown), described as `reminders list` describes them (`reminders.about`), with how long
each has waited in the user's business days and the last message's excerpt. Acting goes
through the CLI's own calls (`reminders.actions.snooze`, `close`, `set_expect`), after
`_allowed` checks that each reminder belongs to the viewer or to a user they manage: any
other id is refused as if it did not exist (`NotFound`), nothing changed.

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
from mailmanager.reminders import about as reminder_about
from mailmanager.reminders import actions
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import plan as reminder_plan
from mailmanager.reminders import rules as reminder_rules
from mailmanager.services.access import Viewer, viewer_for

log = logging.getLogger(__name__)

OPEN = reminder_plan.OPEN
PAGE = 50  # follow-ups per page
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


@dataclass(frozen=True)
class After:
    """Where a page of follow-ups starts: after the reminder `id` due at `due_at` (the list
    is ordered by due time, then id). `token` is its form in a page's URL."""

    due_at: datetime
    id: int

    @property
    def token(self) -> str:
        return f"{self.due_at.isoformat()}~{self.id}"

    @classmethod
    def parse(cls, token: str) -> After | None:
        """The position a page's `after` names, None for a malformed one (the first page)."""
        when, _, rid = token.partition("~")
        try:
            due_at = datetime.fromisoformat(when)
            return cls(due_at, int(rid)) if due_at.tzinfo else None
        except ValueError:
            return None


def list_followups(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    now: datetime,
    user: str | None = None,
    limit: int = PAGE,
    after: After | None = None,
) -> list[Followup]:
    """The viewer's open reminders (and those of the users they manage, or only `user`'s),
    soonest due first (so the due ones come first), at most `limit` of them after `after`.

    One query per user and open status, each a range of the index on (user_id, status,
    due_at) read no further than `limit` rows: the cost is that of a page, however many
    reminders the users have."""
    U = models.User
    ids = session.scalars(sa.select(U.id).where(U.email.in_(users_shown(viewer, user)))).all()
    found: list[Reminder] = []
    for uid in ids:
        for status in OPEN:
            stmt = sa.select(Reminder).where(Reminder.user_id == uid, Reminder.status == status)
            if after is not None:
                stmt = stmt.where(
                    sa.or_(
                        Reminder.due_at > after.due_at,
                        sa.and_(Reminder.due_at == after.due_at, Reminder.id > after.id),
                    )
                )
            found += session.scalars(stmt.order_by(Reminder.due_at, Reminder.id).limit(limit))
    found.sort(key=lambda r: (r.due_at, r.id))
    return describe(session, cfg, found[:limit], now)


def count_followups(
    session: Session, viewer: Viewer, now: datetime, user: str | None = None
) -> tuple[int, int]:
    """(due now, upcoming): how many open reminders `list_followups` would list in all."""
    U = models.User
    stmt = (
        sa.select(sa.func.count(), sa.func.sum(sa.case((Reminder.due_at <= now, 1), else_=0)))
        .join(U, U.id == Reminder.user_id)
        .where(U.email.in_(users_shown(viewer, user)), Reminder.status.in_(OPEN))
    )
    total, due = session.execute(stmt).one()
    return int(due or 0), int(total or 0) - int(due or 0)


def describe(
    session: Session, cfg: config_mod.Config, reminders: Sequence[Reminder], now: datetime
) -> list[Followup]:
    """The reminders as follow-ups, in the same order: what each is about now
    (`reminders.about.describe`), how long it has waited in its user's business days, and
    the last message's excerpt."""
    U = models.User
    user_ids = {r.user_id for r in reminders} | {
        r.escalated_from_id for r in reminders if r.escalated_from_id is not None
    }
    emails = dict(session.execute(sa.select(U.id, U.email).where(U.id.in_(user_ids))).all())
    about = reminder_about.describe(session, reminders)
    last = _last_messages(session, [r.message_id for r in reminders if r.message_id is not None])
    calendars: dict[str, bt.Calendar] = {}
    out = []
    for r in reminders:
        email = emails.get(r.user_id, "")
        cal = calendars.get(email)
        if cal is None:
            u = cfg.user(email)
            cal = calendars[email] = notifier.calendar(cfg, u) if u else bt.Calendar()
        days = bt.business_days_between(r.waiting_since, now, cal) if r.waiting_since else 0
        frm, snippet = last.get(r.message_id or 0, ("", ""))
        what = about[r.id]
        out.append(
            Followup(
                id=r.id,
                kind=r.kind.removeprefix(reminder_rules.ESCALATION),
                status=r.status,
                user=email,
                thread_id=r.thread_id,
                subject=what.title,
                contact=what.contact,
                contact_email=what.contact_email,
                company=what.company_name,
                opportunity=what.opportunity,
                reason=r.reason,
                due_at=r.due_at,
                due=r.due_at <= now,
                waiting_since=r.waiting_since,
                business_days_waiting=days,
                snoozed_until=r.snoozed_until,
                escalated_from=emails.get(r.escalated_from_id or 0),
                last_from=frm,
                snippet=snippet,
            )
        )
    return out


def _last_messages(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """message id -> (sender, snippet) of the messages reminders are about."""
    M = models.Message
    rows = session.execute(
        sa.select(M.id, M.from_name, M.from_email, M.snippet).where(M.id.in_(set(ids)))
    )
    return {mid: (name or email or "", snippet or "") for mid, name, email, snippet in rows}


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


def snooze_for(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    reminder_id: int,
    duration: str,
    now: datetime,
    via: str = "api",
) -> datetime:
    """Snooze the reminder for a `actions.parse_duration` text ("3bd": business days of
    its owner's calendar, "36h": hours), as `via` (the audit actor's prefix); when it is
    due again. Raises NotFound, or ReminderActionError (closed, or a bad duration)."""
    (r,) = _allowed(session, viewer, [reminder_id])
    return actions.snooze(session, cfg, r.id, duration, now, actor=f"{via}:{viewer.email}")


def followup(
    session: Session, cfg: config_mod.Config, viewer: Viewer, reminder_id: int, now: datetime
) -> Followup:
    """One reminder of the viewer (or a managed user), open or not, as a follow-up.
    Raises NotFound."""
    (r,) = _allowed(session, viewer, [reminder_id], write=False)
    return describe(session, cfg, [r], now)[0]


def close(
    session: Session, viewer: Viewer, ids: Sequence[int], status: str, via: str = "web"
) -> None:
    """Mark the reminders `ids` done or dismissed (`via`: the audit actor's prefix).
    Raises NotFound."""
    if status not in CLOSE:
        raise ValueError(status)
    for r in _allowed(session, viewer, ids):
        actions.close(session, r.id, status, actor=f"{via}:{viewer.email}")


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
    return viewer, describe(session, cfg, [r], now)[0]


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
