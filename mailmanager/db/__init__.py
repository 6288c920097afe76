"""The database: the data model, engines and sessions, raw-SQL helpers, triggers, migrations.

- `models`: the SQLAlchemy 2 typed ORM; `store`: engines, sessions, opening a database
  (schema checked, or created when empty), schema creation and migrations (`migrations/`,
  Alembic), dialect-neutral upserts; `configrows`: the config's users and mailboxes copied
  into their rows;
- `crmtriggers`, `linktriggers`: plain-SQL triggers per dialect, shared by `store` and the
  migrations; `tokens`: connectors' OAuth tokens, encrypted at rest;
- `audit`: the one writer of audit-log rows; `leases`: this worker's lease owner id and
  whether another lease holder is still alive.

Nothing here knows about mail, matching or reminders: the areas above use it.
"""
