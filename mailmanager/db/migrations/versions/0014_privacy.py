"""privacy: tombstones, storage levels, private threads

`messages.stored_as` says what was kept of a message (full, headers, metadata, scrubbed);
`threads.private_owner` names the user who marked a thread private; `privacy_tombstones`
holds the keyed hashes of erased addresses, `privacy_salt` the per-installation key.
See `mailmanager.sync.privacy` and `mailmanager.services.privacy`.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailmanager.db.models import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both SQLite and PostgreSQL: no table rebuild.
    op.add_column(
        "messages",
        sa.Column("stored_as", sa.String(16), server_default="full", nullable=False),
    )
    op.add_column("threads", sa.Column("private_owner", sa.String(320), nullable=True))
    op.create_table(
        "privacy_tombstones",
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_privacy_tombstones")),
    )
    op.create_table(
        "privacy_salt",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_salt")),
    )


def downgrade() -> None:
    op.drop_table("privacy_salt")
    op.drop_table("privacy_tombstones")
    op.drop_column("threads", "private_owner")
    op.drop_column("messages", "stored_as")
