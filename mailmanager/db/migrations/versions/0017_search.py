"""full-text search over messages: `db.searchindex` (SQLite FTS5 table and triggers;
PostgreSQL mm_fold, GIN tsvector index, pg_trgm index on participants when available),
and a partial index on the private threads

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 03:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailmanager.db import searchindex

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    searchindex.create(op.get_bind())
    where = sa.text("private_owner IS NOT NULL")
    op.create_index(
        "ix_threads_private_owner",
        "threads",
        ["private_owner"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("ix_threads_private_owner", table_name="threads")
    searchindex.drop(op.get_bind())
