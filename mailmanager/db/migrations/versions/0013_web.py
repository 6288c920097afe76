"""the web workspace's tables: sign-in link requests (`web_sign_in_requests`: rate limits
and hashed one-time tokens), sessions (`web_sessions`) and used digest action links
(`web_action_uses`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = mailmanager.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "web_sign_in_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UTC(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", _UTC(), nullable=True),
        sa.Column("used_at", _UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sign_in_requests")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sign_in_requests_token_hash")),
    )
    op.create_index(
        "ix_web_sign_in_requests_email_at", "web_sign_in_requests", ["email", "created_at"]
    )
    op.create_index("ix_web_sign_in_requests_ip_at", "web_sign_in_requests", ["ip", "created_at"])
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UTC(), nullable=False),
        sa.Column("last_seen_at", _UTC(), nullable=False),
        sa.Column("expires_at", _UTC(), nullable=False),
        sa.Column("revoked_at", _UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index(op.f("ix_web_sessions_user_email"), "web_sessions", ["user_email"])
    op.create_table(
        "web_action_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("reminder_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("used_at", _UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_action_uses")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_action_uses_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("web_action_uses")
    op.drop_index(op.f("ix_web_sessions_user_email"), table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_web_sign_in_requests_ip_at", table_name="web_sign_in_requests")
    op.drop_index("ix_web_sign_in_requests_email_at", table_name="web_sign_in_requests")
    op.drop_table("web_sign_in_requests")
