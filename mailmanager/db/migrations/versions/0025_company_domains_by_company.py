"""company domains by company: an index on `company_domains.company_id`. A page of
companies read every domain of the database to find its 50 companies' (26,667 rows, 1.1 ms
of PostgreSQL's time a page in the REST API benchmark's world), and deleting a company
scanned them all for its cascade.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_company_domains_company_id"), "company_domains", ["company_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_company_domains_company_id"), table_name="company_domains")
