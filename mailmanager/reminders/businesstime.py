"""Business time: a user's working days and hours in their own time zone, minus public holidays.

Pure functions over a `Calendar`. Times go in and come out as aware datetimes (results are
in UTC); the arithmetic is done on the local wall clock, so a reminder due "3 business days
after Friday 10:00" is due on Wednesday 10:00 local time whatever the DST change in between,
and durations in hours are measured in real elapsed time (a working day spanning a DST
change still has its 9 hours). Working hours must not cross midnight.

Public holidays come from the `holidays` package (country and optional subdivision, e.g.
FR with "57" for Moselle); they are loaded once per (country, subdivision, year).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailmanager.errors import MailmanagerError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_SEARCH_DAYS = 3700  # ten years: a calendar with no working day left fails fast


class CalendarError(MailmanagerError):
    """Raised when a calendar has no working day within ten years of a date (e.g. every
    working day is a holiday), or when it is built from invalid values."""


@dataclass(frozen=True)
class Calendar:
    """A working calendar. `work_days` holds ISO weekday numbers less one (Monday is 0)."""

    timezone: str = "UTC"
    work_days: frozenset[int] = frozenset(range(5))
    start: time = time(9)
    end: time = time(18)
    holiday_country: str | None = None
    holiday_subdivision: str | None = None

    def __post_init__(self) -> None:
        if not self.work_days or not self.work_days <= frozenset(range(7)):
            raise CalendarError(f"invalid working days {sorted(self.work_days)}")
        if self.start >= self.end:
            raise CalendarError(f"working hours end ({self.end}) before they start ({self.start})")

    @property
    def tz(self) -> ZoneInfo:
        return _zone(self.timezone)


def calendar(
    timezone: str = "UTC",
    work_days: tuple[str, ...] = WEEKDAYS[:5],
    start: str = "09:00",
    end: str = "18:00",
    holiday_country: str | None = None,
    holiday_subdivision: str | None = None,
) -> Calendar:
    """A `Calendar` from config words: day names ("mon"...) and "HH:MM" times.

    Raises `CalendarError` on an unknown day name or time zone, or hours ending before
    they start.
    """
    try:
        days = frozenset(WEEKDAYS.index(d.lower()[:3]) for d in work_days)
        _zone(timezone)
    except (ValueError, KeyError) as exc:
        raise CalendarError(f"invalid calendar: {exc}") from exc
    return Calendar(
        timezone=timezone,
        work_days=days,
        start=time.fromisoformat(start),
        end=time.fromisoformat(end),
        holiday_country=holiday_country or None,
        holiday_subdivision=holiday_subdivision or None,
    )


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.lru_cache(maxsize=256)
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    import holidays

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


def is_holiday(day: date, cal: Calendar) -> bool:
    """True when `day` is a public holiday of the calendar's country (and subdivision)."""
    if cal.holiday_country is None:
        return False
    return day in _holidays(cal.holiday_country, cal.holiday_subdivision, day.year)


def is_working_day(day: date, cal: Calendar) -> bool:
    return day.weekday() in cal.work_days and not is_holiday(day, cal)


def _local(t: datetime, cal: Calendar) -> datetime:
    if t.tzinfo is None:
        raise ValueError("naive datetime given to a business-time function")
    return t.astimezone(cal.tz)


def _at(day: date, clock: time, cal: Calendar) -> datetime:
    """The instant (UTC) the local wall clock shows `clock` on `day`.

    A wall time skipped by a DST change (e.g. 02:30 on the last Sunday of March in Paris)
    maps to the instant after the gap, as `zoneinfo` does with fold=0.
    """
    return datetime.combine(day, clock, tzinfo=cal.tz).astimezone(UTC)


def _next_working_day(day: date, cal: Calendar) -> date:
    """The first working day strictly after `day`."""
    for _ in range(_MAX_SEARCH_DAYS):
        day += timedelta(days=1)
        if is_working_day(day, cal):
            return day
    raise CalendarError(f"no working day within ten years after {day}")


def is_business_time(t: datetime, cal: Calendar) -> bool:
    """True when `t` falls on a working day, within working hours (start included)."""
    local = _local(t, cal)
    return is_working_day(local.date(), cal) and cal.start <= local.time() < cal.end


def next_business_time(t: datetime, cal: Calendar) -> datetime:
    """`t` itself (in UTC) when it is business time, else the start of the next working
    period."""
    local = _local(t, cal)
    day = local.date()
    if is_working_day(day, cal):
        if local.time() < cal.start:
            return _at(day, cal.start, cal)
        if local.time() < cal.end:
            return t.astimezone(UTC)
    return _at(_next_working_day(day, cal), cal.start, cal)


def add_business_days(start: datetime, n: int, cal: Calendar) -> datetime:
    """The instant `n` whole business days after `start`.

    Counting starts at `next_business_time(start)`; the result is that wall-clock time,
    `n` working days later. So Friday 17:00 + 3 is Wednesday 17:00, and Saturday 10:00 + 1
    is Tuesday 09:00 (Monday 09:00 is when the count starts).
    """
    if n < 0:
        raise ValueError("n must not be negative")
    begin = _local(next_business_time(start, cal), cal)
    day = begin.date()
    for _ in range(n):
        day = _next_working_day(day, cal)
    return _at(day, begin.time(), cal)


def add_business_hours(start: datetime, hours: float, cal: Calendar) -> datetime:
    """The instant `hours` hours of working time after `start` (real elapsed time)."""
    if hours < 0:
        raise ValueError("hours must not be negative")
    t = next_business_time(start, cal)
    left = timedelta(hours=hours)
    for _ in range(_MAX_SEARCH_DAYS):
        day = _local(t, cal).date()
        available = _at(day, cal.end, cal) - t
        if left <= available:
            return t + left
        left -= available
        t = _at(_next_working_day(day, cal), cal.start, cal)
    raise CalendarError("business hours too far in the future")


def business_days_between(a: datetime, b: datetime, cal: Calendar) -> int:
    """How many whole business days have elapsed from `a` to `b`: the largest `n` with
    `add_business_days(a, n, cal) <= b` (0 when `b` is not after `a`)."""
    if b <= a:
        return 0
    begin = _local(next_business_time(a, cal), cal)
    day, clock = begin.date(), begin.time()
    limit = b.astimezone(cal.tz).date()
    if day >= limit:
        return 0
    # Every working day strictly between counts (its `clock` is on an earlier date than b);
    # `limit` itself counts once its `clock` has come.
    last = 1 if is_working_day(limit, cal) and _at(limit, clock, cal) <= b else 0
    return working_days_between(day, limit, cal) + last


def working_days_between(first: date, last: date, cal: Calendar) -> int:
    """How many working days lie strictly between `first` and `last`, in time proportional
    to the years spanned, not the days: whole weeks by arithmetic, then the holidays."""
    days = (last - first).days - 1
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    count = weeks * len(cal.work_days)
    count += sum((first + timedelta(days=weeks * 7 + i)).weekday() in cal.work_days
                 for i in range(1, rest + 1))  # fmt: skip
    if cal.holiday_country is not None:
        for year in range(first.year, last.year + 1):
            count -= sum(
                first < d < last and d.weekday() in cal.work_days
                for d in _holidays(cal.holiday_country, cal.holiday_subdivision, year)
            )
    return count
