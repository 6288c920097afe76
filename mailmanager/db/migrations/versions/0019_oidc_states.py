"""OpenID Connect sign-ins under way (`oidc_states`): hashed state and browser key, provider,
where to go next, expiry and use, so that a state works once whichever web process (or
restarted server) its callback reaches.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = mailmanager.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "oidc_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("next", sa.Text(), nullable=False),
        sa.Column("created_at", _UTC(), nullable=False),
        sa.Column("expires_at", _UTC(), nullable=False),
        sa.Column("used_at", _UTC(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oidc_states_state_hash")),
    )
    op.create_index(op.f("ix_oidc_states_expires_at"), "oidc_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_oidc_states_expires_at"), table_name="oidc_states")
    op.drop_table("oidc_states")
