"""Who is looking, and what they may see: the one place the web workspace and the API ask.

A `Viewer` is a configured user (`[[users]]`) with their role. Message **content** is
visible to the owners of the mailboxes that hold it and to those owners' managers (a user's
`manager` key names them); on a client record, other users see a colleague's thread as
`[web] visibility` says (`full`, `metadata`: date, direction, participants, subject; `none`).
Admins manage settings and connectors; they read content only by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailmanager import config as config_mod

ROLES = ("salesperson", "manager", "admin")


@dataclass(frozen=True)
class Viewer:
    """A signed-in user. `sees_content_of` holds the mailbox owners whose mail content this
    viewer may read: themself, and the users they manage."""

    email: str
    name: str
    role: str
    locale: str
    timezone: str
    sees_content_of: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_manager(self) -> bool:
        return self.role == "manager" or bool(self.sees_content_of - {self.email})


def viewer_for(cfg: config_mod.Config, email: str) -> Viewer | None:
    """The viewer for `email` (or one of a user's aliases), None when no user has it."""
    user = cfg.user(email)
    if user is None:
        return None
    reports = {u.email for u in cfg.users if u.manager == user.email}
    return Viewer(
        email=user.email,
        name=user.name,
        role=user.role,
        locale=user.locale,
        timezone=user.timezone,
        sees_content_of=frozenset({user.email, *reports}),
    )
