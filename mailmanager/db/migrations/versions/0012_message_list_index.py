"""messages get an index on their List-Id (`ix_messages_list_id`, only the rows that have
one): the reminder rules look up whether an address we wrote to is a mailing list (a
message whose List-Id names it, `reminders.rules.is_list_address`) on every evaluation.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 00:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_list_id",
        "messages",
        ["list_id"],
        sqlite_where=sa.text("list_id IS NOT NULL"),
        postgresql_where=sa.text("list_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_list_id", table_name="messages")
