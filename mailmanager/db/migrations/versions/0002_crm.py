"""crm: company name key, contact address display form, opportunity close time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name_key", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.create_index(batch_op.f("ix_companies_name_key"), ["name_key"], unique=False)
    # Computed in Python: SQLite's lower() folds ASCII letters only.
    companies = sa.table("companies", sa.column("id"), sa.column("name"), sa.column("name_key"))
    conn = op.get_bind()
    for company_id, name in conn.execute(sa.select(companies.c.id, companies.c.name)).all():
        key = mailmanager.db.models.name_key(name)
        conn.execute(companies.update().where(companies.c.id == company_id).values(name_key=key))
    with op.batch_alter_table("contact_emails", schema=None) as batch_op:
        # Existing rows get "" (the column is NOT NULL); the ORM always writes a value.
        batch_op.add_column(
            sa.Column("display", sa.String(length=320), nullable=False, server_default="")
        )
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("closed_at", mailmanager.db.models.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_companies_name_key"))
        batch_op.drop_column("name_key")
    with op.batch_alter_table("opportunities", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("contact_emails", schema=None) as batch_op:
        batch_op.drop_column("display")
