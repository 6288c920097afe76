"""The `[reminders]` section and the per-user reminder keys of `[[users]]`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmanager import config

REPO = Path(__file__).resolve().parents[2]
USERS = """
[[users]]
email = "alice@example.com"
name = "Alice"
"""


def errors_of(text: str) -> dict[str, config.schema.spi.ConfigError]:
    with pytest.raises(config.ConfigFileError) as info:
        config.loads(text)
    return {e.key: e for e in info.value.errors}


def test_defaults_and_the_example_file() -> None:
    r = config.loads(USERS).reminders
    assert (r.awaiting_reply_days, r.needs_response_hours, r.dormant_opportunity_days) == (3, 4, 30)
    assert (r.require, r.max_repeats, r.escalate_after, r.at_risk_factor) == ("none", 2, 2, 3.0)
    assert r.work_days == ("mon", "tue", "wed", "thu", "fri") and r.work_start == "09:00"
    example = config.loads((REPO / "config.example.toml").read_text())
    assert example.reminders == r
    text = (REPO / "config.example.toml").read_text()
    for key in r.__dataclass_fields__:
        assert f"# {key} = " in text, f"{key} is not documented in config.example.toml"


def test_overrides_and_normalisation() -> None:
    text = USERS + 'work_days = ["Monday", "TUE", "wed"]\nwork_start = "8:30"\nmax_repeats = 0\n'
    text += '[reminders]\nrequire = "contact"\nrules = ["awaiting_reply"]\nat_risk_factor = 2\n'
    cfg = config.loads(text)
    (alice,) = cfg.users
    assert alice.work_days == ("mon", "tue", "wed") and alice.work_start == "08:30"
    assert alice.max_repeats == 0 and alice.awaiting_reply_days is None
    assert cfg.reminders.require == "contact" and cfg.reminders.rules == ("awaiting_reply",)
    assert cfg.reminders.at_risk_factor == 2.0


def test_mistakes_are_named_with_their_fix() -> None:
    text = USERS + 'work_days = ["funday"]\nwork_end = "08:00"\n'
    text += '[reminders]\nrequire = "opportunity"\nwork_start = "25:00"\nmax_repeats = -1\n'
    text += 'rules = ["awaiting"]\nat_risk_factor = 1\n'
    errors = errors_of(text)
    assert set(errors) == {
        "users[0].work_days",
        "reminders.require",
        "reminders.work_start",
        "reminders.max_repeats",
        "reminders.rules",
        "reminders.at_risk_factor",
    }
    assert "open_opportunity" in errors["reminders.require"].fix
    assert "HH:MM" in errors["reminders.work_start"].fix
    errors = errors_of(USERS + 'work_end = "08:00"\n')
    assert "before it starts" in errors["users[0].work_end"].problem
    errors = errors_of(USERS + '[reminders]\nwork_start = "18:00"\nwork_end = "09:00"\n')
    assert set(errors) == {"reminders.work_end", "users[0].work_end"}
