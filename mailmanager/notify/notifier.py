"""Reminder notifications: one digest per user per slot, immediate mails, into the outbox.

**Slots.** Each user gets a digest at the times of `[[users]] digest_times`, else
`[notifications] digest_times` (default 08:30 and 14:00), read on the user's local clock,
on the user's working days only (`businesstime`: work days and public holidays). A slot is
due from its time until `catch_up_minutes` later, so a daemon that was down at 08:30 still
sends it at 09:10; once a later slot is due the earlier one is forgotten. No email is
enqueued during `quiet_hours` (local time).

**Exactly once.** A slot is consumed by one `Notification` row, unique per (user, slot),
written in the same transaction as the outbox row and `reminders.mark_sent`: two workers
racing on a slot cannot both commit (the loser's IntegrityError rolls its whole
transaction back, reminders included), and a slot with nothing due is consumed as well, so
a reminder falling due at 08:31 waits for the 14:00 digest instead of mailing at once.
Reminders of the kinds listed in `[notifications] immediate` (e.g. "needs_response") get
their own email at the first tick where they are due, keyed by (reminder, repeat).

The outbox then sends each row exactly once (see `mailmanager.outbox`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import configrows, store
from mailmanager.db.models import Notification, User
from mailmanager.errors import MailmanagerError
from mailmanager.notify import actionlinks, digest, outbox
from mailmanager.reminders import businesstime
from mailmanager.reminders import evaluation as reminders

log = logging.getLogger(__name__)


class UnknownUserError(MailmanagerError):
    """Raised when a user named on the command line is not in the configuration."""


@dataclass(frozen=True)
class Slot:
    """A digest slot: `key` names it uniquely for the user ("digest:2026-11-03T08:30")."""

    key: str
    at: datetime  # when the slot opened (UTC)


@dataclass
class NotifyReport:
    """What one pass did, per user: digests and immediate mails enqueued, slots skipped."""

    digests: list[dict[str, Any]] = field(default_factory=list)
    immediate: list[dict[str, Any]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # "user slot" consumed with nothing due
    skipped: list[str] = field(default_factory=list)  # "user: why"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def calendar(cfg: config_mod.Config, user: config_mod.UserConfig) -> businesstime.Calendar:
    """The user's working calendar: their `[[users]]` keys over `[reminders]`."""
    r = cfg.reminders
    return businesstime.calendar(
        timezone=user.timezone,
        work_days=user.work_days or r.work_days,
        start=user.work_start or r.work_start,
        end=user.work_end or r.work_end,
        holiday_country=user.holiday_country,
        holiday_subdivision=user.holiday_subdivision,
    )


def in_quiet_hours(quiet: str, local: time) -> bool:
    """Whether the local time of day falls in a "HH:MM-HH:MM" range (may wrap midnight)."""
    if not quiet:
        return False
    start, end = (time.fromisoformat(p) for p in quiet.split("-"))
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def sending_allowed(cfg: config_mod.Config, user: config_mod.UserConfig, now: datetime) -> bool:
    """A working day for the user, outside quiet hours."""
    cal = calendar(cfg, user)
    local = now.astimezone(cal.tz)
    if in_quiet_hours(cfg.notifications.quiet_hours, local.time()):
        return False
    return businesstime.is_working_day(local.date(), cal)


def due_slot(cfg: config_mod.Config, user: config_mod.UserConfig, now: datetime) -> Slot | None:
    """The user's digest slot open at `now`, or None (no slot, non-working day, quiet)."""
    if not sending_allowed(cfg, user, now):
        return None
    tz = calendar(cfg, user).tz
    local = now.astimezone(tz)
    grace = timedelta(minutes=cfg.notifications.catch_up_minutes)
    best: Slot | None = None
    for hhmm in user.digest_times or cfg.notifications.digest_times:
        opened = datetime.combine(local.date(), time.fromisoformat(hhmm), tzinfo=tz)
        if opened <= local < opened + grace and (best is None or opened > best.at):
            best = Slot(key=f"digest:{local.date().isoformat()}T{hhmm}", at=opened)
    return best


def manual_slot(now: datetime) -> Slot:
    """An unscheduled slot for `mailmanager digest send --force`, one per minute."""
    return Slot(key=f"manual:{now.strftime('%Y-%m-%dT%H:%MZ')}", at=now)


def recipient(user: config_mod.UserConfig) -> digest.Recipient:
    return digest.Recipient(user.email, user.name, user.locale, user.timezone)


def _user_ids(cfg: config_mod.Config, factory: sessionmaker[Session]) -> dict[str, int]:
    with store.session_scope(factory) as s:
        ids = dict(s.execute(sa.select(User.email, User.id)).all())
        if any(u.email not in ids for u in cfg.users):
            configrows.ensure_config_rows(s, cfg)
            s.flush()
            ids = dict(s.execute(sa.select(User.email, User.id)).all())
    return ids


def _enqueue(
    s: Session,
    cfg: config_mod.Config,
    user: config_mod.UserConfig,
    user_id: int,
    slot_key: str,
    kind: str,
    items: Sequence[reminders.DigestItem],
    now: datetime,
) -> dict[str, Any]:
    """Notification + outbox row for `items` (none: the slot is only consumed)."""
    note = Notification(
        user_id=user_id,
        slot=slot_key,
        kind=kind,
        item_count=len(items),
        reminder_ids=" ".join(str(i.reminder_id) for i in items),
        created_at=now,
    )
    result: dict[str, Any] = {"user": user.email, "slot": slot_key, "items": len(items)}
    if items:
        links = actionlinks.linker(cfg, user.email, now)
        if kind == "immediate":
            rendered = digest.render_immediate(
                items[0], recipient(user), cfg.organization.name, links
            )
        else:
            rendered = digest.render(items, recipient(user), cfg.organization.name, links)
        key = f"{slot_key}:{user.email}"
        row = outbox.enqueue(
            s,
            key=key,
            message_id_header=outbox.message_id(key, outbox.default_sender(cfg)),
            recipient=user.email,
            recipient_name=user.name,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            now=now,
        )
        note.outbox_id = row.id
        result["outbox_id"] = row.id
        reminders.mark_sent(s, [i.reminder_id for i in items], now)
    s.add(note)
    s.flush()
    return result


def _digest(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    user: config_mod.UserConfig,
    user_id: int,
    slot: Slot,
    now: datetime,
    report: NotifyReport,
) -> None:
    taken = sa.select(Notification.id).where(
        Notification.user_id == user_id, Notification.slot == slot.key
    )
    with store.session_scope(factory) as s:  # the usual case, read-only: done already
        if s.scalar(taken) is not None:
            return
    try:
        with store.session_scope(factory) as s:
            store.write_first(s)
            if s.scalar(taken) is not None:
                return
            items = reminders.due_items(s, cfg, user_id, now)
            result = _enqueue(s, cfg, user, user_id, slot.key, "digest", items, now)
            outbox.test_pause("before_commit")
    except IntegrityError:  # another worker consumed this slot first: its digest stands
        log.info("digest slot taken by another worker", extra={"action": "digest_race"})
        return
    if result["items"]:
        report.digests.append(result)
        log.info("digest queued", extra={"action": "digest_queued", **result})
    else:
        report.empty.append(f"{user.email} {slot.key}")


def _immediate(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    user: config_mod.UserConfig,
    user_id: int,
    now: datetime,
    report: NotifyReport,
) -> None:
    kinds = set(cfg.notifications.immediate)
    try:
        with store.session_scope(factory) as s:
            store.write_first(s)
            results = []
            for item in reminders.due_items(s, cfg, user_id, now):
                if item.kind in kinds:
                    slot = f"immediate:{item.reminder_id}:{item.repeat}"
                    results.append(_enqueue(s, cfg, user, user_id, slot, "immediate", [item], now))
    except IntegrityError:
        log.info("immediate mail taken by another worker", extra={"action": "digest_race"})
        return
    report.immediate.extend(results)


def run(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    now: datetime,
    users: Sequence[str] = (),
    force: bool = False,
) -> NotifyReport:
    """One pass for every user (or `users`): due digest slots and immediate mails.

    With `force`, each user gets a digest now (a "manual" slot), whatever the schedule.
    Raises `UnknownUserError` when a name in `users` is not a configured user.
    """
    report = NotifyReport()
    if not cfg.notifications.enabled and not force:
        report.skipped.append("*: [notifications] enabled = false")
        return report
    chosen = list(cfg.users)
    if users:
        unknown = [u for u in users if cfg.user(u) is None]
        if unknown:
            raise UnknownUserError(f"no user {unknown[0]!r} in [[users]]")
        chosen = [u for u in cfg.users if any(cfg.user(x) == u for x in users)]
    ids = _user_ids(cfg, factory)
    for user in chosen:
        uid = ids[user.email]
        try:
            if cfg.notifications.immediate and sending_allowed(cfg, user, now):
                _immediate(cfg, factory, user, uid, now, report)
            slot = manual_slot(now) if force else due_slot(cfg, user, now)
            if slot is None:
                report.skipped.append(f"{user.email}: no digest slot open now")
                continue
            _digest(cfg, factory, user, uid, slot, now, report)
        except MailmanagerError as exc:  # e.g. a calendar with no working day: next user
            report.skipped.append(f"{user.email}: {exc}")
            log.error(
                "notification failed",
                extra={"action": "notify_error", "user": user.email, "error": str(exc)},
            )
    return report


def preview(
    cfg: config_mod.Config, factory: sessionmaker[Session], user_email: str, now: datetime
) -> digest.Rendered | None:
    """The digest `user_email` would get at `now` (None: nothing due). Writes nothing.

    Raises `UnknownUserError` when `user_email` is not a configured user.
    """
    user = cfg.user(user_email)
    if user is None:
        raise UnknownUserError(f"no user {user_email!r} in [[users]]")
    session = factory()
    try:
        row = session.scalars(sa.select(User).where(User.email == user.email)).first()
        if row is None:
            return None
        items = reminders.due_items(session, cfg, row.id, now)
        if not items:
            return None
        links = actionlinks.linker(cfg, user.email, now)
        return digest.render(items, recipient(user), cfg.organization.name, links)
    finally:
        session.rollback()  # due_items may cancel reminders it finds answered: undo that
        session.close()
