"""The configuration's users and mailboxes, copied into their database rows.

The `[[users]]` and `[[mailboxes]]` of the config file are the source of truth; their rows
exist so that other rows can point at them (a contact's owner, a message's mailbox, a
reminder's user). Whatever writes such a row first calls `ensure_config_rows`: the sync
engine before each mailbox, the notifier, the reminder scan and the CRM commands.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models


def ensure_config_rows(session: Session, cfg: config_mod.Config) -> None:
    """Create or update the users and mailboxes of the config file in the database."""
    users = {u.email: u for u in session.scalars(sa.select(models.User))}
    for u in cfg.users:
        row = users.get(u.email) or models.User(email=u.email)
        row.name, row.locale, row.timezone = u.name, u.locale, u.timezone
        row.holiday_country, row.holiday_subdivision = u.holiday_country, u.holiday_subdivision
        session.add(row)
        users[u.email] = row
    session.flush()
    for u in cfg.users:
        if u.manager:
            users[u.email].manager_id = users[u.manager].id
    boxes = {m.name: m for m in session.scalars(sa.select(models.Mailbox))}
    for mb in cfg.mailboxes:
        box = boxes.get(mb.name) or models.Mailbox(name=mb.name, connector=mb.connector)
        box.connector, box.enabled = mb.connector, mb.enabled
        box.owner_id = users[mb.owner].id
        session.add(box)
