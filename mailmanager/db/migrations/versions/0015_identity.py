"""messages get `body_sha256`, the hash of their body (`mail.copies.body_digest`): a message
with the Message-ID, sender, date and subject of a stored one is a copy of it only with the
same body, so a forged copy that arrives first no longer hides the real one (issue #16)

Rows stored before stay NULL, no backfill (it would read every raw message inside the
migration): when a new item shares their Message-ID with other raw bytes, ingest hashes
the stored row's raw bytes then, and only when those were not kept does the old rule
(sender, date and subject alone) decide.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: an ALTER TABLE ... ADD COLUMN on both SQLite and PostgreSQL.
    op.add_column("messages", sa.Column("body_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    # Not batch mode (see 0011): SQLite >= 3.35 drops a column in place.
    op.drop_column("messages", "body_sha256")
