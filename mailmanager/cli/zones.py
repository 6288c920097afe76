"""Times as the CLI prints them: in a user's time zone, always with the zone's name.

Whose zone: `--tz` when given; else the owner of the first mailbox that holds the mail
shown; else the first `[[users]]` entry; else UTC. JSON output keeps ISO 8601 with its
offset, whatever the zone.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

import click

from mailmanager.cli.app import EXIT_CONFIG, fail

if TYPE_CHECKING:
    from mailmanager import config as config_mod


def named(name: str) -> tzinfo:
    """The zone called `name` (IANA, or "UTC"); a wrong name ends the command (exit 2)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail(f"--tz {name!r} is no time zone: give an IANA name such as Europe/Paris", EXIT_CONFIG)


def for_mailboxes(cfg: config_mod.Config, mailboxes: Sequence[str], option: str | None) -> tzinfo:
    """The zone to print times in (see the module docstring)."""
    if option:
        return named(option)
    for name in mailboxes:
        owner = next((mb.owner for mb in cfg.mailboxes if mb.name == name), None)
        user = cfg.user(owner) if owner else None
        if user is not None:
            return zoneinfo.ZoneInfo(user.timezone)
    if cfg.users:
        return zoneinfo.ZoneInfo(cfg.users[0].timezone)
    return UTC


def show(value: str | datetime | None, tz: tzinfo) -> str:
    """`2026-11-03 14:05 CET`, or "-" for no time; a naive value is taken as UTC."""
    if value is None:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or local.strftime('%z')}"


tz_option = click.option(
    "--tz",
    "tz_name",
    metavar="ZONE",
    help="Show times in this zone (e.g. Europe/Paris); default: the mailbox owner's.",
)
