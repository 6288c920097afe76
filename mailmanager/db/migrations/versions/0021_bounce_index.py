"""a partial index on the bounces, which the suggestions' writer reads on every batch

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 05:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_bounces",
        "messages",
        ["id"],
        sqlite_where=sa.text("is_bounce = 1"),
        postgresql_where=sa.text("is_bounce"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_bounces", table_name="messages")
