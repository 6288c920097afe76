"""pending threads: the per-batch stages a full scan runs once at its end

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_threads",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_pending_threads_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "thread_id", name=op.f("pk_pending_threads")),
    )


def downgrade() -> None:
    op.drop_table("pending_threads")
