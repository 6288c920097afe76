"""Sales figures that mail can measure, for the dashboard and the weekly report (issue #14).

Scope: a salesperson (and an admin) sees their own figures; a manager sees their team's
(themself and the users whose `manager` they are, `access.Viewer.sees_content_of`) with a
line per person. A person's mail is the mail held in the mailboxes they own.

The period is the last `weeks` ISO weeks on the viewer's clock (the current week so far
included; `full_weeks=True`: the `weeks` weeks before the current one, as the weekly
report wants). Figures:

- **median time to answer a client**: from a client's message to our next message in the
  thread (`engagement.summarize`'s "ours" reply time), over the period's real messages
  linked to a CRM record;
- **unanswered client threads**: open `needs_response` reminders now (the reminder rules
  decide what awaits our answer);
- **follow-ups done** (reminders closed as done, or answered, during the period) and
  **overdue** (open reminders past due at the end of the period);
- **clients with no exchange** for `[web] churn_days` days, and the distribution of the
  engagement segments (`engagement.rate`, the rule of `services.engagement`) of the
  companies linked to the person's mail;
- **activity**: real messages received and sent per week (a message counts once however
  many of the scope's mailboxes or folders hold it).

All are SQL aggregates (driven by the `sent_at` index for the period's mail, by the
reminders' `user_id` index), except the median: it reads three columns of the period's
client messages. The company figures are the largest part: which companies the scope's
mail is linked to (a pass over the company links of the scope's mailboxes), then their
figures (`company_stats`).
"""

from __future__ import annotations

import heapq
import itertools
import zoneinfo
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.config import reminder_kinds
from mailmanager.db import models, store
from mailmanager.db.models import Folder, Link, Mailbox, Message, MessageLocation, Reminder
from mailmanager.reminders import plan as reminder_plan
from mailmanager.services import access, engagement

SEGMENTS = ("vip", "active", "at_risk", "dormant")
DONE = ("done", "answered")
_REAL = ~(Message.is_bulk | Message.is_auto_reply | Message.is_out_of_office | Message.is_bounce)


@dataclass(frozen=True)
class Week:
    """One ISO week: its label ("2026-W47"), first day, messages received and sent."""

    label: str
    monday: date
    inbound: int
    outbound: int


@dataclass(frozen=True)
class Quiet:
    """A client with no exchange for `[web] churn_days` days."""

    company_id: int
    name: str
    last: datetime | None


@dataclass(frozen=True)
class Figures:
    """The figures of one person, or of a whole scope."""

    email: str
    name: str
    median_answer: timedelta | None
    unanswered: int
    followups_done: int
    followups_overdue: int
    churn: int
    quiet: tuple[Quiet, ...]  # the longest silent first, at most 10
    segments: tuple[tuple[str, int], ...]  # (segment, companies) in `SEGMENTS` order
    weeks: tuple[Week, ...]

    @property
    def median_hours(self) -> float | None:
        if self.median_answer is None:
            return None
        return round(self.median_answer.total_seconds() / 3600, 1)


@dataclass(frozen=True)
class Dashboard:
    """`total` over the viewer's scope; `people` one line per person (managers only)."""

    viewer: str
    start: datetime
    end: datetime
    churn_days: int
    total: Figures
    people: tuple[Figures, ...]


def week_starts(now: datetime, tz_name: str, weeks: int, full_weeks: bool) -> list[datetime]:
    """The UTC instants at which the period's weeks start on `tz_name`'s clock (Monday 00:00),
    oldest first, plus the end of the period (`now`, or the current week's start)."""
    tz = zoneinfo.ZoneInfo(tz_name)
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    first = monday - timedelta(weeks=weeks if full_weeks else weeks - 1)
    bounds = [
        datetime.combine(first + timedelta(weeks=i), time(0), tzinfo=tz).astimezone(UTC)
        for i in range(weeks + (1 if full_weeks else 0))
    ]
    if not full_weeks:
        bounds.append(now)
    return bounds


Key = int | None  # a user's id, or None: the whole scope


Q = TypeVar("Q")


def _held(query: Q, user_ids: Collection[int]) -> Q:
    """`query` (over messages) joined to the mailboxes of these users that hold them."""
    select: Any = query
    held: Q = (
        select.join(MessageLocation, MessageLocation.message_id == Message.id)
        .join(Folder, Folder.id == MessageLocation.folder_id)
        .join(Mailbox, Mailbox.id == Folder.mailbox_id)
        .where(Mailbox.owner_id.in_(list(user_ids)))
    )
    return held


def _activity(
    session: Session, user_ids: Collection[int], bounds: list[datetime]
) -> dict[Key, list[Week]]:
    """Real messages received and sent per week, per user and for the scope (a message in
    several mailboxes or folders counts once)."""
    held = (
        _held(sa.select(Mailbox.owner_id, Message.id, Message.direction, Message.sent_at), user_ids)
        .where(
            Message.sent_at >= bounds[0],
            Message.sent_at < bounds[-1],
            Message.direction.in_(("inbound", "outbound")),
            _REAL,
        )
        .distinct()
        .subquery()
    )
    columns = [
        sa.func.sum(sa.case((sa.and_(held.c.sent_at >= lo, held.c.sent_at < hi), 1), else_=0))
        for lo, hi in itertools.pairwise(bounds)
    ]
    counts: dict[tuple[Key, str], tuple[int, ...]] = {}
    for owner, direction, *sums in session.execute(
        sa.select(held.c.owner_id, held.c.direction, *columns).group_by(
            held.c.owner_id, held.c.direction
        )
    ):
        counts[(owner, direction)] = tuple(int(v or 0) for v in sums)
    if len(user_ids) == 1:  # the scope is the user
        counts.update({(None, d): v for (_, d), v in list(counts.items())})
    else:  # a message held by several users counts once
        once = sa.select(held.c.id, held.c.direction, held.c.sent_at).distinct().subquery()
        columns = [
            sa.func.sum(sa.case((sa.and_(once.c.sent_at >= lo, once.c.sent_at < hi), 1), else_=0))
            for lo, hi in itertools.pairwise(bounds)
        ]
        for direction, *sums in session.execute(
            sa.select(once.c.direction, *columns).group_by(once.c.direction)
        ):
            counts[(None, direction)] = tuple(int(v or 0) for v in sums)
    none = (0,) * (len(bounds) - 1)
    out: dict[Key, list[Week]] = {}
    for key in [None, *user_ids]:
        weeks = []
        for i, start in enumerate(bounds[:-1]):
            iso = (start + timedelta(hours=12)).isocalendar()  # the local Monday, any tz
            weeks.append(
                Week(
                    label=f"{iso.year}-W{iso.week:02d}",
                    monday=date.fromisocalendar(iso.year, iso.week, 1),
                    inbound=counts.get((key, "inbound"), none)[i],
                    outbound=counts.get((key, "outbound"), none)[i],
                )
            )
        out[key] = weeks
    return out


def _median_answer(
    session: Session, user_ids: Collection[int], start: datetime, end: datetime
) -> dict[Key, timedelta | None]:
    """Median time from a client's message to our next one (`engagement.summarize`), over
    the real messages of the period linked to a CRM record."""
    on_record = sa.exists().where(
        Link.message_id == Message.id, ~Link.tombstone, Link.target_kind != "any"
    )
    query = _held(
        sa.select(
            Mailbox.owner_id, Message.id, Message.thread_id, Message.sent_at, Message.direction
        ),
        user_ids,
    ).where(
        Message.sent_at >= start,
        Message.sent_at < end,
        Message.thread_id.is_not(None),
        Message.direction.in_(("inbound", "outbound")),
        _REAL,
        on_record,
    )
    rows: dict[Key, dict[int, tuple[int, datetime, str]]] = {k: {} for k in [None, *user_ids]}
    for owner, mid, tid, sent, direction in session.execute(query):
        if sent is not None:
            rows[owner][mid] = rows[None][mid] = (tid or 0, sent, direction)
    return {
        key: engagement.summarize(list(found.values()), end).median_reply_ours
        for key, found in rows.items()
    }


def _reminders(
    session: Session, user_ids: Collection[int], start: datetime, end: datetime
) -> tuple[int, int, int]:
    """(unanswered client threads, follow-ups done in the period, overdue at its end)."""
    mine = Reminder.user_id.in_(list(user_ids))
    is_open = Reminder.status.in_(reminder_plan.OPEN)
    unanswered = session.scalar(
        sa.select(sa.func.count(sa.distinct(Reminder.thread_id))).where(
            mine, is_open, Reminder.kind == reminder_kinds.NEEDS_RESPONSE
        )
    )
    done = session.scalar(
        sa.select(sa.func.count()).where(
            mine,
            Reminder.status.in_(DONE),
            Reminder.updated_at >= start,
            Reminder.updated_at < end,
        )
    )
    overdue = session.scalar(sa.select(sa.func.count()).where(mine, is_open, Reminder.due_at < end))
    return int(unanswered or 0), int(done or 0), int(overdue or 0)


# Above this many companies in scope, one pass over every company link (grouped by
# company) costs less than finding each company's links through the anchors' index.
ONE_PASS = 1000


def company_stats(
    session: Session, ids: list[int], end: datetime
) -> dict[int, tuple[datetime | None, int, int]]:
    """Per company: its last exchange before `end`, and the threads and messages with an
    exchange in the 365 days before (what `engagement.rate` reads), as SQL aggregates.

    A few companies: their links come from the anchors' index (`models.linking`), the
    cost that of their mail. Many (a team that writes to most clients): one grouped
    pass over the company links. (`target_id IN (...)` alone reads every link per chunk:
    only anchors are indexed by target.)"""
    year = Message.sent_at >= end - timedelta(days=365)
    stmt = (
        sa.select(
            Link.target_id,
            sa.func.max(Message.sent_at),
            sa.func.count(sa.distinct(sa.case((year, Message.thread_id)))),
            sa.func.count(sa.distinct(sa.case((year, Message.id)))),
        )
        .join(Message, Message.id == Link.message_id)
        .where(
            Link.target_kind == "company",
            ~Link.tombstone,
            Message.sent_at < end,
            Message.direction.in_(("inbound", "outbound")),
            _REAL,
        )
        .group_by(Link.target_id)
    )
    out: dict[int, tuple[datetime | None, int, int]] = dict.fromkeys(ids, (None, 0, 0))
    parts = (
        [stmt]
        if len(ids) > ONE_PASS
        else [
            stmt.where(models.linking("company", part), Link.target_id.in_(part))
            for part in store.chunks(ids)
        ]
    )
    for part_stmt in parts:
        for cid, last, threads, volume in session.execute(part_stmt):
            if cid in out:
                out[cid] = (last, int(threads or 0), int(volume or 0))
    return out


Clients = tuple[int, tuple[Quiet, ...], tuple[tuple[str, int], ...]]


def _clients(
    session: Session, user_ids: Collection[int], end: datetime, churn_days: int
) -> dict[Key, Clients]:
    """(clients silent for `churn_days`, the 10 longest silent, segment counts) per user
    and for the scope, over the companies linked to mail in their mailboxes."""
    scope: dict[Key, set[int]] = {k: set() for k in [None, *user_ids]}
    pairs = (
        sa.select(Mailbox.owner_id, Link.target_id)
        .distinct()
        .join(MessageLocation, MessageLocation.message_id == Link.message_id)
        .join(Folder, Folder.id == MessageLocation.folder_id)
        .join(Mailbox, Mailbox.id == Folder.mailbox_id)
        .where(Link.target_kind == "company", ~Link.tombstone, Mailbox.owner_id.in_(list(user_ids)))
    )
    for owner, cid in session.execute(pairs):
        scope[owner].add(cid)
        scope[None].add(cid)
    stats = company_stats(session, sorted(scope[None]), end)
    segment: dict[int, str] = {}  # rated once, however many scopes hold the company
    for cid, (last, threads, volume) in stats.items():
        age = (end - last).total_seconds() / 86400 if last else float("inf")
        segment[cid] = engagement.rate(age, threads, volume)[3]
    limit = end - timedelta(days=churn_days)
    never = datetime.min.replace(tzinfo=UTC)
    found: dict[Key, tuple[int, list[tuple[int, datetime | None]], dict[str, int]]] = {}
    for key, ids in scope.items():
        counts = dict.fromkeys(SEGMENTS, 0)
        quiet: list[tuple[int, datetime | None]] = []
        for cid in ids:
            counts[segment[cid]] += 1
            last = stats[cid][0]
            if last is None or last < limit:
                quiet.append((cid, last))
        first = heapq.nsmallest(10, quiet, key=lambda q: (q[1] or never, q[0]))
        found[key] = (len(quiet), first, counts)
    listed = {cid for _, quiet, _ in found.values() for cid, _ in quiet}
    names = dict(
        session.execute(
            sa.select(models.Company.id, models.Company.name).where(
                models.Company.id.in_(sorted(listed))
            )
        ).all()
    )
    return {
        key: (
            churn,
            tuple(Quiet(cid, names.get(cid, f"#{cid}"), last) for cid, last in quiet),
            tuple(counts.items()),
        )
        for key, (churn, quiet, counts) in found.items()
    }


def _figures(
    session: Session,
    team: dict[int, tuple[str, str]],
    who: tuple[str, str],
    bounds: list[datetime],
    churn_days: int,
) -> tuple[Figures, tuple[Figures, ...]]:
    """The scope's figures (named `who`: email, name) and each user's, `team` being
    user id → (email, name)."""
    start, end = bounds[0], bounds[-1]
    ids = list(team)
    activity = _activity(session, ids, bounds)
    medians = _median_answer(session, ids, start, end)
    clients = _clients(session, ids, end, churn_days)

    def one(key: Key, user_ids: list[int], email: str, name: str) -> Figures:
        unanswered, done, overdue = _reminders(session, user_ids, start, end)
        churn, quiet, segments = clients[key]
        return Figures(
            email=email,
            name=name,
            median_answer=medians[key],
            unanswered=unanswered,
            followups_done=done,
            followups_overdue=overdue,
            churn=churn,
            quiet=quiet,
            segments=segments,
            weeks=tuple(activity[key]),
        )

    people = tuple(one(uid, [uid], *team[uid]) for uid in ids)
    return one(None, ids, *who), people


def _team(
    session: Session, cfg: config_mod.Config, emails: list[str]
) -> dict[int, tuple[str, str]]:
    rows = session.execute(
        sa.select(models.User.id, models.User.email, models.User.name)
        .where(models.User.email.in_(emails))
        .order_by(models.User.email)
    )
    return {uid: (email, name or _name(cfg, email)) for uid, email, name in rows}


def dashboard(
    session: Session,
    cfg: config_mod.Config,
    viewer: access.Viewer,
    now: datetime,
    weeks: int = 8,
    full_weeks: bool = False,
) -> Dashboard:
    """The viewer's dashboard at `now` (see the module docstring for scope and figures)."""
    emails = sorted(viewer.sees_content_of) if viewer.is_manager else [viewer.email]
    bounds = week_starts(now, viewer.timezone, weeks, full_weeks)
    days = cfg.web.churn_days
    team = _team(session, cfg, emails)
    total, people = _figures(session, team, (viewer.email, viewer.name), bounds, days)
    shown = people if viewer.is_manager else ()
    return Dashboard(viewer.email, bounds[0], bounds[-1], days, total, shown)


def _name(cfg: config_mod.Config, email: str) -> str:
    user = cfg.user(email)
    return user.name if user is not None else email


def person(
    session: Session,
    cfg: config_mod.Config,
    viewer: access.Viewer,
    email: str,
    now: datetime,
    weeks: int = 8,
) -> Figures:
    """One person's figures, for their manager or themself. Raises AccessError (not found)
    for anyone else: a salesperson never learns a colleague's figures."""
    email = email.strip().lower()
    team = _team(session, cfg, [email]) if email in viewer.sees_content_of else {}
    if not team:
        raise access.AccessError(f"no figures for {email} here", exists=False)
    bounds = week_starts(now, viewer.timezone, weeks, False)
    total, _ = _figures(session, team, next(iter(team.values())), bounds, cfg.web.churn_days)
    return total
