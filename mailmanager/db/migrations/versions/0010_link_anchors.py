"""links get `anchor`: only anchors (one row per thread and target, and every manual row)
are indexed by target; match_states lose their index on reason (no query reads by it)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailmanager.db import linktriggers

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    anchored = sa.text("anchor")
    # The trigger names `links`: SQLite refuses to rebuild the table under it.
    for statement in linktriggers.drop(dialect):
        op.execute(statement)
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("anchor", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.drop_index("ix_links_target")
    # Every row starts anchored; the matcher's rows keep one anchor per thread and target.
    op.execute(
        "UPDATE links SET anchor = false WHERE created_by = 'matcher' AND NOT tombstone "
        "AND id NOT IN (SELECT min(id) FROM links WHERE created_by = 'matcher' "
        "AND NOT tombstone GROUP BY thread_id, target_kind, target_id)"
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_links_target",
            ["target_kind", "target_id"],
            sqlite_where=anchored,
            postgresql_where=anchored,
        )
    for statement in linktriggers.create(dialect):
        op.execute(statement)
    op.drop_index("ix_match_states_reason", table_name="match_states")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_index("ix_match_states_reason", "match_states", ["reason"])
    for statement in linktriggers.drop(dialect):
        op.execute(statement)
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_target")
        batch_op.drop_column("anchor")
        batch_op.create_index("ix_links_target", ["target_kind", "target_id"])
    for statement in linktriggers.create(dialect, anchors=False):
        op.execute(statement)
