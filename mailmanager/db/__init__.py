"""The database: the data model, engines and sessions, raw-SQL helpers, triggers, migrations.

- `models`: the SQLAlchemy 2 typed ORM; `store`: engines, sessions, schema creation and
  migrations (`migrations/`, Alembic), dialect-neutral upserts, and the config's users and
  mailboxes copied into their rows;
- `crmtriggers`, `linktriggers`: plain-SQL triggers per dialect, shared by `store` and the
  migrations; `tokens`: connectors' OAuth tokens, encrypted at rest.

Nothing here knows about mail, matching or reminders: the areas above use it.
"""
