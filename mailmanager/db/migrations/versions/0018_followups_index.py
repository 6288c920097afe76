"""an index on reminders (user_id, status, due_at): My follow-ups reads one user's open
reminders soonest due first without walking every pending reminder of the organization

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_reminders_user_status_due", "reminders", ["user_id", "status", "due_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_reminders_user_status_due", table_name="reminders")
