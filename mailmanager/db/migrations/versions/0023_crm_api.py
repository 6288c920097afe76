"""external ids and change times for the API's records: `source` + `external_id` on
companies, contacts and opportunities, unique per (source, external_id) (a CRM's ids are
unique in that CRM only); `updated_at` on the three (backfilled with `created_at`), with a
(updated_at, id) index for the API's keyset pages.

On SQLite the tables are rebuilt (a unique constraint cannot be dropped in place), which
drops their triggers: the CRM generation triggers (`db.crmtriggers`) are made again.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 08:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models
from mailmanager.db import crmtriggers

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = mailmanager.db.models.UTCDateTime
_TABLES = ("companies", "contacts", "opportunities")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in crmtriggers.drop(dialect):
            op.execute(statement)
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            if table != "contacts":
                batch.add_column(
                    sa.Column("source", sa.String(32), server_default="manual", nullable=False)
                )
            if table == "opportunities":
                batch.add_column(sa.Column("external_id", sa.String(200), nullable=True))
            batch.add_column(sa.Column("updated_at", _UTC(), nullable=True))
        op.execute(f"UPDATE {table} SET updated_at = created_at")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("updated_at", existing_type=_UTC(), nullable=False)
            if table != "opportunities":
                batch.drop_constraint(f"uq_{table}_external_id", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_source", ["source", "external_id"])
            batch.create_index(f"ix_{table}_updated_at_id", ["updated_at", "id"])
    if dialect == "sqlite":
        for statement in crmtriggers.create(dialect)[1:]:  # the token row is still there
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in crmtriggers.drop(dialect):
            op.execute(statement)
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_updated_at_id")
            batch.drop_constraint(f"uq_{table}_source", type_="unique")
            if table != "opportunities":
                batch.create_unique_constraint(f"uq_{table}_external_id", ["external_id"])
            else:
                batch.drop_column("external_id")
            if table != "contacts":
                batch.drop_column("source")
            batch.drop_column("updated_at")
    if dialect == "sqlite":
        for statement in crmtriggers.create(dialect)[1:]:
            op.execute(statement)
