"""links and match_states lose their foreign keys (a trigger deletes a deleted message's
rows instead); links are indexed by thread only for manual rows and tombstones

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailmanager.db import linktriggers
from mailmanager.db.models import MANUAL_LINKS

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    manual = sa.text(MANUAL_LINKS)
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_constraint("fk_links_message_id_messages", type_="foreignkey")
        batch_op.drop_constraint("fk_links_thread_id_threads", type_="foreignkey")
        batch_op.drop_index("ix_links_thread_id")
        batch_op.create_index(
            "ix_links_manual", ["thread_id"], sqlite_where=manual, postgresql_where=manual
        )
    with op.batch_alter_table("match_states", schema=None) as batch_op:
        batch_op.drop_constraint("fk_match_states_message_id_messages", type_="foreignkey")
    for statement in linktriggers.create(op.get_bind().dialect.name, anchors=False):
        op.execute(statement)


def downgrade() -> None:
    for statement in linktriggers.drop(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("match_states", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_match_states_message_id_messages",
            "messages",
            ["message_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_manual")
        batch_op.create_index("ix_links_thread_id", ["thread_id"])
        batch_op.create_foreign_key("fk_links_thread_id_threads", "threads", ["thread_id"], ["id"])
        batch_op.create_foreign_key(
            "fk_links_message_id_messages", "messages", ["message_id"], ["id"], ondelete="CASCADE"
        )
