"""How each configured mailbox is doing, for the admin page: its state, last sync, last error
(as a kind the page explains in plain words with its fix), and how much it holds.

The figures come from `queries.mailbox_status` (the numbers `mailmanager status` prints);
this module adds what a person managing the connectors needs on top: the mailboxes of the
config file that have never synced, who owns each, and whether a worker is syncing it now
(its sync lease, `sync.engine`). And the team as the config file defines it (`team`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import leases
from mailmanager.db.models import Mailbox
from mailmanager.services import queries

STATES = ("ok", "error", "never", "disabled", "syncing")

# What a stored `last_error` starts with (`sync.engine` writes "Type: message", or
# "configuration error: ..." when the mailbox's settings are wrong), and its kind.
_PREFIXES = (
    ("configuration error", "config"),
    ("ConfigError", "config"),
    ("AuthError", "auth"),
    ("TransientError", "transient"),
    ("UnsupportedError", "unsupported"),
    ("CursorExpiredError", "provider"),
    ("ConnectorError", "provider"),
)
ERROR_KINDS = ("config", "auth", "transient", "unsupported", "provider", "internal")


def error_kind(error: str | None) -> str | None:
    """The kind of a mailbox's last error (one of `ERROR_KINDS`), None when there is none.

    "internal" is anything else: a bug or a database failure, which the log tells more of.
    """
    if not error:
        return None
    for prefix, kind in _PREFIXES:
        if error.startswith(prefix):
            return kind
    return "internal"


@dataclass(frozen=True)
class MailboxHealth:
    name: str
    connector: str
    owner: str
    enabled: bool
    state: str  # one of STATES
    last_sync_at: datetime | None
    last_success_at: datetime | None
    error: str | None  # as stored by the last sync that failed
    error_kind: str | None  # one of ERROR_KINDS
    folders: int
    messages: int
    quarantined: int
    syncing_by: str | None  # the worker holding the sync lease ("host:pid"), if any


def as_instant(value: datetime | str | None) -> datetime | None:
    """A stored instant as an aware datetime (SQLite gives naive UTC; `queries` ISO text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _lease_holders(session: Session, now: datetime, *where: Any) -> dict[str, str]:
    """Mailbox name → the worker syncing it now (a lease not expired, held by a live one)."""
    rows = session.execute(
        sa.select(Mailbox.name, Mailbox.lease_owner, Mailbox.lease_until).where(
            Mailbox.lease_owner.is_not(None), *where
        )
    )
    held = {}
    for name, owner, until in rows:
        until = as_instant(until)
        if owner and until is not None and until > now and not leases.owner_is_dead(owner):
            held[name] = owner
    return held


def syncing_by(session: Session, mailbox: str, now: datetime) -> str | None:
    """The worker ("host:pid") syncing mailbox `mailbox` at `now`, None when none is."""
    return _lease_holders(session, now, Mailbox.name == mailbox).get(mailbox)


def overview(session: Session, cfg: config_mod.Config, now: datetime) -> list[MailboxHealth]:
    """Every mailbox of the config file, in its order, with its health at `now`."""
    status = {row["name"]: row for row in queries.mailbox_status(session)}
    held = _lease_holders(session, now)
    out = []
    for mb in cfg.mailboxes:
        row = status.get(mb.name, {})
        error = row.get("last_error")
        if mb.name in held:
            state = "syncing"
        elif not mb.enabled:
            state = "disabled"
        elif error:
            state = "error"
        elif not row.get("last_sync_at"):
            state = "never"
        else:
            state = "ok"
        out.append(
            MailboxHealth(
                name=mb.name,
                connector=mb.connector,
                owner=mb.owner,
                enabled=mb.enabled,
                state=state,
                last_sync_at=as_instant(row.get("last_sync_at")),
                last_success_at=as_instant(row.get("last_success_at")),
                error=error,
                error_kind=error_kind(error),
                folders=row.get("folders", 0),
                messages=row.get("messages", 0),
                quarantined=row.get("quarantined", 0),
                syncing_by=held.get(mb.name),
            )
        )
    return out


@dataclass(frozen=True)
class TeamMember:
    """A `[[users]]` entry as the admin page lists it (read-only: the config file is the
    source of roles)."""

    email: str
    name: str
    role: str
    manager: str | None
    locale: str
    timezone: str
    aliases: tuple[str, ...]
    mailboxes: tuple[str, ...]  # the mailboxes whose `owner` they are


def team(cfg: config_mod.Config) -> list[TeamMember]:
    """The configured users, in the file's order, with the mailboxes each owns (a mailbox's
    `owner` may be one of the user's aliases)."""
    owners = {mb.name: (u.email if (u := cfg.user(mb.owner)) else mb.owner) for mb in cfg.mailboxes}
    return [
        TeamMember(
            u.email,
            u.name,
            u.role,
            u.manager,
            u.locale,
            u.timezone,
            u.aliases,
            tuple(mb.name for mb in cfg.mailboxes if owners.get(mb.name) == u.email),
        )
        for u in cfg.users
    ]
