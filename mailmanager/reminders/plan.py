"""Reminder lifecycle as pure functions: due reminders of opportunities and clients, and
the writes that make the stored reminders match what the rules want (`reconcile`).

`reconcile` creates what is missing, closes rows that are no longer wanted (cancelled, or
answered when a reply came after it was sent), moves due times (an out-of-office notice
came), re-arms sent reminders that are still unanswered (`max_repeats`, every
`repeat_days` business days), escalates to the manager once a reminder was sent
`escalate_after` times and one more interval passed, and says when time alone could change
the outcome again (the next check time).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import rules

# Reminder statuses (see `mailmanager.reminders.evaluation` for the lifecycle): open ones
# still follow their thread or record; closed ones never change again for their cycle.
OPEN = ("pending", "snoozed", "sent")
CLOSED = ("answered", "cancelled", "dismissed", "done")
STATUSES = (*OPEN, *CLOSED)

_EPISODE = timedelta(days=7)  # exchanges closer than this are one episode (at-risk rhythm)


@dataclass(frozen=True)
class Row:
    """A stored reminder, as `reconcile` needs it."""

    id: int
    kind: str
    cycle: int
    status: str
    user_id: int
    due_at: datetime
    sent_at: datetime | None = None
    sent_count: int = 0
    snoozed_until: datetime | None = None


@dataclass(frozen=True)
class Change:
    """One write: create / escalate (with `want`), or cancel / answer / revive / move /
    repeat / unsnooze a stored row (with `reminder_id`)."""

    action: str
    reminder_id: int | None = None
    want: rules.Want | None = None
    due_at: datetime | None = None
    user_id: int | None = None


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    next_check: datetime | None


# --- opportunities and clients -----------------------------------------------------------------


def opportunity_want(
    last_exchange: datetime,
    last_message_id: int,
    owner: rules.UserRules,
    title: str,
    now: datetime,
) -> tuple[rules.Want | None, datetime | None]:
    """(the dormant-opportunity reminder if due now, else when it would be due)."""
    days = owner.dormant_opportunity_days
    due = bt.next_business_time(last_exchange + timedelta(days=days), owner.calendar)
    if due > now:
        return None, due
    want = rules.Want(
        kind="dormant_opportunity",
        cycle=last_message_id,
        user_id=owner.user_id,
        due_at=due,
        waiting_since=last_exchange,
        reason=f'No exchange about the opportunity "{title}" for {days} days.',
        fresh_only=False,
    )
    return want, None


def client_want(
    exchanges: Sequence[datetime],
    last_message_id: int,
    owner: rules.UserRules,
    name: str,
    org: rules.OrgRules,
    now: datetime,
) -> tuple[rules.Want | None, datetime | None]:
    """(the at-risk-client reminder if due now, else when it would be due).

    The rhythm is the median gap between the starts of exchange episodes (exchanges less
    than a week apart are one episode) in the year before the last exchange; the client is
    at risk when silent for `at_risk_factor` times that (at least `at_risk_min_days`).
    Without `at_risk_min_exchanges` episodes there is no rhythm to judge by.
    """
    if not exchanges:
        return None, None
    ordered = sorted(exchanges)
    last = ordered[-1]
    starts: list[datetime] = []
    previous: datetime | None = None
    for t in ordered:
        if t < last - timedelta(days=365):
            continue
        if previous is None or t - previous >= _EPISODE:
            starts.append(t)
        previous = t
    if len(starts) < org.at_risk_min_exchanges:
        return None, None
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    rhythm = statistics.median(g.total_seconds() for g in gaps)
    silence = max(
        timedelta(seconds=rhythm * org.at_risk_factor), timedelta(days=org.at_risk_min_days)
    )
    due = bt.next_business_time(last + silence, owner.calendar)
    if due > now:
        return None, due
    usual = round(rhythm / 86400)
    want = rules.Want(
        kind="at_risk_client",
        cycle=last_message_id,
        user_id=owner.user_id,
        due_at=due,
        waiting_since=last,
        reason=f"{name} usually writes every {usual} days; silent since {last:%Y-%m-%d}.",
        fresh_only=False,
    )
    return want, None


# --- reconciling with the stored rows ----------------------------------------------------------


def reconcile(
    wants: Sequence[rules.Want],
    rows: Sequence[Row],
    users: Mapping[int, rules.UserRules],
    org: rules.OrgRules,
    now: datetime,
    next_check: datetime | None = None,
    answered: Collection[tuple[str, int]] = frozenset(),
) -> Plan:
    """The writes that make `rows` match `wants` at `now`; see the module docstring.

    A row no longer wanted is closed: *answered* when it was sent at least once and its
    (kind, cycle) is in `answered` (the reply came, `rules.answered`; a new exchange with
    the opportunity or client), else *cancelled* (answered before it was ever sent, or
    no longer called for: a newer follow-up, a rule turned off, a closed opportunity).
    A row the user dismissed or marked done stays so for its cycle; a row the system
    cancelled comes back if it is wanted again before it was ever sent.
    """
    changes: list[Change] = []
    checks = [next_check] if next_check else []
    wanted = {(w.kind, w.cycle): w for w in wants}
    stored = {(r.kind, r.cycle): r for r in rows}
    for r in rows:
        key = (r.kind.removeprefix(rules.ESCALATION), r.cycle)
        if key not in wanted and r.status in OPEN:
            if r.sent_count > 0 and (r.kind, r.cycle) in answered:
                changes.append(Change("answer", r.id))
            else:
                changes.append(Change("cancel", r.id))
        elif r.status == "snoozed" and r.snoozed_until is not None:
            if r.snoozed_until <= now:
                changes.append(Change("unsnooze", r.id, due_at=r.snoozed_until))
            else:
                checks.append(r.snoozed_until)
    for w in wanted.values():
        user = users.get(w.user_id)
        row = stored.get((w.kind, w.cycle))
        if row is None:
            if not (w.fresh_only and w.waiting_since and w.waiting_since < now - org.max_age):
                changes.append(Change("create", want=w, due_at=w.due_at, user_id=w.user_id))
            continue
        if user is None:
            continue
        if row.status == "cancelled" and row.sent_count == 0:
            changes.append(Change("revive", row.id, due_at=w.due_at))
        elif row.status == "pending" and row.due_at < w.due_at and row.sent_count == 0:
            # Only ever later (an absence notice came): an earlier time would undo a snooze.
            changes.append(Change("move", row.id, due_at=w.due_at))
        elif row.status == "pending" and w.not_before and row.due_at < w.not_before:
            changes.append(Change("move", row.id, due_at=w.not_before))
        elif row.status == "sent" and w.repeats and row.sent_at is not None:
            again = _next_firing(row.sent_at, w, user)
            if row.sent_count <= user.max_repeats:
                if again <= now:
                    changes.append(Change("repeat", row.id, due_at=again))
                else:
                    checks.append(again)
        checks += _escalate(w, row, stored, user, now, changes)
    return Plan(tuple(changes), min(checks) if checks else None)


def _next_firing(sent_at: datetime, w: rules.Want, user: rules.UserRules) -> datetime:
    again = bt.add_business_days(sent_at, user.repeat_days, user.calendar)
    return max(again, w.not_before) if w.not_before else again


def _escalate(
    w: rules.Want,
    row: Row,
    stored: Mapping[tuple[str, int], Row],
    user: rules.UserRules,
    now: datetime,
    changes: list[Change],
) -> list[datetime]:
    """Escalate to the manager once the reminder was sent `escalate_after` times and one
    more repeat interval passed without an answer. Returns a future check time, if any."""
    if (
        not w.repeats
        or user.manager_id is None
        or user.escalate_after == 0
        or row.sent_count < user.escalate_after
        or row.sent_at is None
        or row.status in CLOSED
        or (rules.ESCALATION + w.kind, w.cycle) in stored
    ):
        return []
    at = _next_firing(row.sent_at, w, user)
    if at > now:
        return [at]
    changes.append(Change("escalate", want=w, due_at=at, user_id=user.manager_id))
    return []
