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
from mailmanager.db import models, store


def ensure_config_rows(session: Session, cfg: config_mod.Config) -> None:
    """Create or update the users and mailboxes of the config file in the database.

    Missing rows are inserted first with "on conflict do nothing", then read back: two
    workers (or a worker's sync and watcher jobs) starting at once both end up with the
    row that one of them created, instead of one failing on the unique email or name."""
    known = set(session.scalars(sa.select(models.User.email)))
    store.insert_ignore(
        session,
        store.table(models.User),
        [{"email": u.email} for u in cfg.users if u.email not in known],
    )
    users = {u.email: u for u in session.scalars(sa.select(models.User))}
    for u in cfg.users:
        row = users[u.email]
        row.name, row.locale, row.timezone = u.name, u.locale, u.timezone
        row.holiday_country, row.holiday_subdivision = u.holiday_country, u.holiday_subdivision
    session.flush()
    for u in cfg.users:
        if u.manager:
            users[u.email].manager_id = users[u.manager].id
    names = set(session.scalars(sa.select(models.Mailbox.name)))
    store.insert_ignore(
        session,
        store.table(models.Mailbox),
        [
            {"name": mb.name, "connector": mb.connector}
            for mb in cfg.mailboxes
            if mb.name not in names
        ],
    )
    boxes = {m.name: m for m in session.scalars(sa.select(models.Mailbox))}
    for mb in cfg.mailboxes:
        box = boxes[mb.name]
        box.connector, box.enabled = mb.connector, mb.enabled
        box.owner_id = users[mb.owner].id
