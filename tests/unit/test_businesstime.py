"""Business time: working days and hours in the user's zone, public holidays, DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import hypothesis
import pytest
import time_machine
from hypothesis import strategies as st

from mailmanager.reminders import businesstime as bt
from tests.conftest import examples

PARIS = bt.calendar("Europe/Paris", holiday_country="FR")
MOSELLE = bt.calendar("Europe/Paris", holiday_country="FR", holiday_subdivision="57")
NEW_YORK = bt.calendar("America/New_York", holiday_country="US")
SIX_DAYS = bt.calendar("Europe/Paris", ("mon", "tue", "wed", "thu", "fri", "sat"), "08:00", "12:00")


def paris(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("Europe/Paris"))


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("America/New_York"))


@pytest.mark.parametrize(
    ("cal", "start", "n", "expected"),
    [
        # Friday 17:00 + 3 → Wednesday 17:00 (the weekend does not count)...
        (PARIS, paris(2026, 11, 13, 17), 3, paris(2026, 11, 18, 17)),
        # ... unless a holiday is in between: 11 November (Armistice) is a Wednesday.
        (PARIS, paris(2026, 11, 6, 17), 3, paris(2026, 11, 12, 17)),
        (PARIS, paris(2026, 11, 9, 10), 2, paris(2026, 11, 12, 10)),
        # After hours counts from the next morning; on a Saturday from Monday 09:00.
        (PARIS, paris(2026, 11, 6, 20), 3, paris(2026, 11, 13, 9)),
        (PARIS, paris(2026, 11, 7, 10), 1, paris(2026, 11, 10, 9)),
        # 14 July 2026 is a Tuesday: Monday 13 + 1 → Wednesday 15.
        (PARIS, paris(2026, 7, 13, 11), 1, paris(2026, 7, 15, 11)),
        # Easter Monday (6 April 2026): Friday 3 + 1 → Tuesday 7; Moselle adds Good Friday.
        (PARIS, paris(2026, 4, 3, 10), 1, paris(2026, 4, 7, 10)),
        (MOSELLE, paris(2026, 4, 2, 10), 1, paris(2026, 4, 7, 10)),
        (PARIS, paris(2026, 4, 2, 10), 1, paris(2026, 4, 3, 10)),
        # Ascension (Thursday 14 May 2026): Wednesday + 1 → Friday.
        (PARIS, paris(2026, 5, 13, 15), 1, paris(2026, 5, 15, 15)),
        # DST, last Sunday of March (29 March 2026): Friday 10:00 CET + 1 → Monday 10:00 CEST,
        # which is one hour earlier in UTC.
        (PARIS, paris(2026, 3, 27, 10), 1, paris(2026, 3, 30, 10)),
        # DST ends on the last Sunday of October (25 October 2026).
        (PARIS, paris(2026, 10, 23, 16), 1, paris(2026, 10, 26, 16)),
        # A US user: DST starts 8 March 2026, Thanksgiving is Thursday 26 November 2026.
        (NEW_YORK, ny(2026, 3, 6, 9, 30), 1, ny(2026, 3, 9, 9, 30)),
        (NEW_YORK, ny(2026, 11, 25, 14), 1, ny(2026, 11, 27, 14)),
        # Zero days: the next business time itself.
        (PARIS, paris(2026, 11, 7, 10), 0, paris(2026, 11, 9, 9)),
        # Saturday is a working day of this calendar (08:00–12:00).
        (SIX_DAYS, paris(2026, 11, 6, 11), 1, paris(2026, 11, 7, 11)),
    ],
)
def test_add_business_days(cal: bt.Calendar, start: datetime, n: int, expected: datetime) -> None:
    got = bt.add_business_days(start, n, cal)
    assert got == expected
    assert got.tzinfo is UTC
    assert bt.business_days_between(start, got, cal) == n
    if n:
        assert bt.business_days_between(start, got - timedelta(seconds=1), cal) == n - 1


@pytest.mark.parametrize(
    ("cal", "start", "hours", "expected"),
    [
        (PARIS, paris(2026, 11, 9, 10), 4, paris(2026, 11, 9, 14)),
        # 16:00 + 4 h: 2 h on Monday, 2 h from Tuesday 09:00.
        (PARIS, paris(2026, 11, 9, 16), 4, paris(2026, 11, 10, 11)),
        # Friday 17:00 + 4 h → Monday 12:00; 10 November + 4h crosses 11 November.
        (PARIS, paris(2026, 11, 6, 17), 4, paris(2026, 11, 9, 12)),
        (PARIS, paris(2026, 11, 10, 16), 4, paris(2026, 11, 12, 11)),
        # The DST night does not steal an hour: Saturday 28 March → Monday 30 March 13:00.
        (PARIS, paris(2026, 3, 27, 16), 6, paris(2026, 3, 30, 13)),
        (PARIS, paris(2026, 10, 23, 16), 6, paris(2026, 10, 26, 13)),
        (NEW_YORK, ny(2026, 3, 6, 17), 2, ny(2026, 3, 9, 10)),
        # Exactly at the end of the day stays there.
        (PARIS, paris(2026, 11, 9, 9), 9, paris(2026, 11, 9, 18)),
        (PARIS, paris(2026, 11, 9, 9), 9.5, paris(2026, 11, 10, 9, 30)),
    ],
)
def test_add_business_hours(
    cal: bt.Calendar, start: datetime, hours: float, expected: datetime
) -> None:
    assert bt.add_business_hours(start, hours, cal) == expected


@pytest.mark.parametrize(
    ("cal", "t", "business", "following"),
    [
        (PARIS, paris(2026, 11, 9, 9), True, paris(2026, 11, 9, 9)),
        (PARIS, paris(2026, 11, 9, 8, 59), False, paris(2026, 11, 9, 9)),
        (PARIS, paris(2026, 11, 9, 18), False, paris(2026, 11, 10, 9)),
        (PARIS, paris(2026, 11, 11, 10), False, paris(2026, 11, 12, 9)),  # Armistice
        (PARIS, paris(2026, 7, 14, 10), False, paris(2026, 7, 15, 9)),
        (PARIS, paris(2026, 12, 24, 17), True, paris(2026, 12, 24, 17)),
        (PARIS, paris(2026, 12, 24, 18, 30), False, paris(2026, 12, 28, 9)),  # 25th, weekend
        # 08:30 UTC is 09:30 in Paris in winter but 10:30 in summer: both business time.
        (PARIS, datetime(2026, 1, 12, 7, 30, tzinfo=UTC), False, paris(2026, 1, 12, 9)),
        (PARIS, datetime(2026, 7, 13, 7, 30, tzinfo=UTC), True, paris(2026, 7, 13, 9, 30)),
        (NEW_YORK, ny(2026, 11, 26, 10), False, ny(2026, 11, 27, 9)),  # Thanksgiving
        (NEW_YORK, ny(2026, 7, 3, 10), False, ny(2026, 7, 6, 9)),  # 4 July observed on Friday
    ],
)
def test_business_time_and_next(
    cal: bt.Calendar, t: datetime, business: bool, following: datetime
) -> None:
    assert bt.is_business_time(t, cal) is business
    assert bt.next_business_time(t, cal) == following


def test_days_between_counts_whole_business_days() -> None:
    start = paris(2026, 11, 6, 17)  # Friday
    assert bt.business_days_between(start, start, PARIS) == 0
    assert bt.business_days_between(start, paris(2026, 11, 9, 16, 59), PARIS) == 0
    assert bt.business_days_between(start, paris(2026, 11, 9, 17), PARIS) == 1
    assert bt.business_days_between(start, paris(2026, 11, 13, 17), PARIS) == 4  # not the 11th
    assert bt.business_days_between(paris(2026, 11, 9), start, PARIS) == 0


def test_waiting_time_relative_to_now_with_time_travel() -> None:
    sent = paris(2026, 3, 26, 15)  # Thursday before the spring DST change
    with time_machine.travel(paris(2026, 3, 31, 15) + timedelta(seconds=1), tick=False):
        now = datetime.now(UTC)  # wall clock: pinned above
        assert bt.business_days_between(sent, now, PARIS) == 3
        assert bt.add_business_days(sent, 3, PARIS) <= now
    with time_machine.travel(paris(2026, 3, 31, 14, 59), tick=False):
        now = datetime.now(UTC)  # wall clock: pinned above
        assert bt.business_days_between(sent, now, PARIS) == 2


def test_invalid_calendars_and_inputs_are_refused() -> None:
    with pytest.raises(bt.CalendarError):
        bt.calendar("Europe/Paris", (), "09:00", "18:00")
    with pytest.raises(bt.CalendarError):
        bt.calendar("Europe/Paris", ("mon",), "18:00", "09:00")
    with pytest.raises(bt.CalendarError):
        bt.calendar("Mars/Olympus")
    with pytest.raises(bt.CalendarError):
        bt.calendar("UTC", ("funday",))
    with pytest.raises(ValueError, match="naive"):
        bt.is_business_time(datetime(2026, 1, 1, 10), PARIS)
    with pytest.raises(ValueError):
        bt.add_business_days(paris(2026, 1, 5, 10), -1, PARIS)
    assert bt.Calendar().start == time(9) and bt.Calendar().timezone == "UTC"


def _days_one_by_one(a: datetime, b: datetime, cal: bt.Calendar) -> int:
    """The day-by-day count `business_days_between` used to make (the reference)."""
    if b <= a:
        return 0
    begin = bt.next_business_time(a, cal).astimezone(cal.tz)
    day, clock, count = begin.date(), begin.time(), 0
    limit = b.astimezone(cal.tz).date()
    while day < limit:
        day += timedelta(days=1)
        while not bt.is_working_day(day, cal):
            day += timedelta(days=1)
        if datetime.combine(day, clock, tzinfo=cal.tz) > b:
            break
        count += 1
    return count


CALENDARS = (
    PARIS,
    bt.calendar("Europe/Paris", ["mon", "tue", "wed", "thu"], "08:30", "17:00", "FR", "57"),
    bt.calendar("America/New_York", holiday_country="US"),
    bt.calendar("Asia/Dubai", ["sun", "mon", "tue", "wed", "thu"]),
)


@hypothesis.settings(max_examples=examples(300), deadline=None)
@hypothesis.given(
    cal=st.sampled_from(CALENDARS),
    start=st.datetimes(datetime(2025, 1, 1), datetime(2028, 12, 31), timezones=st.just(UTC)),
    span=st.timedeltas(timedelta(0), timedelta(days=900)),
)
def test_counting_by_weeks_equals_counting_day_by_day(
    cal: bt.Calendar, start: datetime, span: timedelta
) -> None:
    # Long waits used to be counted one day at a time (0.86 s of a follow-ups page).
    end = start + span
    assert bt.business_days_between(start, end, cal) == _days_one_by_one(start, end, cal)
