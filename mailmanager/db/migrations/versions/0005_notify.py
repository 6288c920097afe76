"""notify: notification slots, outbox leases and duplicate-risk flag

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("reminder_ids", sa.Text(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", mailmanager.db.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name=op.f("fk_notifications_outbox_id_outbox")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "slot", name=op.f("uq_notifications_user_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        # Existing rows get "" / false (the columns are NOT NULL); the ORM always writes them.
        batch_op.add_column(
            sa.Column("recipient_name", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("last_attempt_at", mailmanager.db.models.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("possible_duplicate", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("possible_duplicate")
        batch_op.drop_column("last_attempt_at")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("recipient_name")
    op.drop_table("notifications")
