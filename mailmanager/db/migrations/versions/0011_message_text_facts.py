"""messages get the facts the reminder rules read in their body (`expects_reply`,
`expects_reply_reason`, `return_date`), kept at ingest so no evaluation reads a body again

Rows stored before stay NULL: the reminder facts read their raw bytes instead
(`reminders.facts`), as every evaluation did until now. No backfill: it would parse every
stored message inside the migration, with the heuristics of the day, for the few that an
evaluation ever reads (the anchors of open threads).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("expects_reply", "expects_reply_reason", "return_date")


def upgrade() -> None:
    # Nullable columns: an ALTER TABLE ... ADD COLUMN on both SQLite and PostgreSQL, no rebuild.
    op.add_column("messages", sa.Column("expects_reply", sa.Boolean(), nullable=True))
    op.add_column("messages", sa.Column("expects_reply_reason", sa.String(40), nullable=True))
    op.add_column("messages", sa.Column("return_date", sa.Date(), nullable=True))


def downgrade() -> None:
    # Not batch mode: rebuilding `messages` on SQLite would drop its trigger and, with
    # foreign keys on, delete the rows that reference it. SQLite >= 3.35 drops columns in place.
    for name in reversed(_COLUMNS):
        op.drop_column("messages", name)
