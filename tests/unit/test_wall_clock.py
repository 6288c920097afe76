"""No test reads the wall clock without saying why: CI runs on whatever day a session ends.

Four tests once failed on a Saturday because they dated their mail from `datetime.now()`.
A test whose outcome depends on the date computes from a fixed instant or pins the clock
with time-machine. This guard reads every test source file (and the shared test helpers in
`mailmanager.testing`, when present) and fails on any read of the clock that does not carry
a `# wall clock: <why>` comment on its line: the clock is pinned just above, or the value's
date cannot change the outcome (a certificate's validity, a unique stamp), or the behaviour
under test is defined against the real clock (an HTTP `Retry-After` date). The loopback
provider servers are left out: they keep the real clock, as the providers do.

`.ci/run` also runs the date-sensitive modules under several frozen instants (a Saturday
night, a daylight-saving change, 14 July, 31 December) with libfaketime.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLOCK = re.compile(
    r"\b(?:datetime\.(?:now|utcnow|today)|date\.today|time\.time|utcnow)\("
)
MARK = "# wall clock:"


def clock_reads(text: str) -> list[tuple[int, str]]:
    """The lines of `text` that read the clock without a `# wall clock:` reason."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if CLOCK.search(line.split("#", 1)[0]) and MARK not in line
    ]


def sources() -> list[Path]:
    """Test modules and helpers; not the loopback provider servers (`*_server.py`), which keep
    the real clock as the providers they stand for do (token expiry, `Date` headers)."""
    roots = [REPO / "tests", REPO / "mailmanager" / "testing"]
    found = (p for root in roots if root.exists() for p in root.rglob("*.py"))
    return sorted(p for p in found if not p.name.endswith("_server.py"))


def test_the_guard_sees_each_way_of_reading_the_clock() -> None:
    for call in ("datetime.now(UTC)", "datetime.utcnow()", "date.today()", "time.time()",
                 "models.utcnow()", "datetime.today()"):  # fmt: skip
        assert clock_reads(f"x = {call}\n") == [(1, f"x = {call}")]
        assert clock_reads(f"x = {call}  {MARK} pinned above\n") == []
    assert clock_reads("# datetime.now() in a comment\nx = time.monotonic()\n") == []


def test_no_test_reads_the_wall_clock_without_a_reason() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line}"
        for path in sources()
        if path.name != Path(__file__).name
        for number, line in clock_reads(path.read_text(encoding="utf-8"))
    ]
    assert not found, (
        "these lines read the wall clock: compute from a fixed instant or pin the clock with "
        f"time_machine.travel, or say why the date cannot matter with '{MARK} <why>':\n"
        + "\n".join(found)
    )
