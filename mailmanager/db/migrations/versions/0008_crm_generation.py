"""crm generation: a token the CRM triggers renew, so the matcher can keep the CRM in memory;
links lose their index on message_id alone (their unique constraint starts with it)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailmanager.db import crmtriggers

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_generation")),
    )
    for statement in crmtriggers.create(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_index("ix_links_message_id", table_name="links")


def downgrade() -> None:
    op.create_index("ix_links_message_id", "links", ["message_id"])
    for statement in crmtriggers.drop(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("crm_generation")
