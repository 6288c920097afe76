"""REST API bearer tokens (`api_tokens`): the token's SHA-256, its user, name and scopes,
creation, optional expiry, last use and revocation.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 06:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = mailmanager.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", _UTC(), nullable=False),
        sa.Column("expires_at", _UTC(), nullable=True),
        sa.Column("last_used_at", _UTC(), nullable=True),
        sa.Column("revoked_at", _UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_email"), "api_tokens", ["user_email"])


def downgrade() -> None:
    op.drop_index(op.f("ix_api_tokens_user_email"), table_name="api_tokens")
    op.drop_table("api_tokens")
