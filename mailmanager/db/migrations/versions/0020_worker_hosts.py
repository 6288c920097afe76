"""host, pid and start time of each procrastinate worker (`worker_hosts`, keyed by
`procrastinate_workers.id`), for `mailmanager status`

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = mailmanager.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "worker_hosts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.String(length=200), nullable=False),
        sa.Column("started_at", _UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_hosts")),
    )


def downgrade() -> None:
    op.drop_table("worker_hosts")
