"""reminders: reminder targets and firing counts, check times, per-thread reply expectation

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailmanager.db.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reminder_checks",
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("check_at", mailmanager.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("target_kind", "target_id", name=op.f("pk_reminder_checks")),
    )
    with op.batch_alter_table("reminder_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_checks_check_at"), ["check_at"], unique=False)
    op.create_table(
        "reminder_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", mailmanager.db.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reminder_state")),
    )
    with op.batch_alter_table("reminders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("message_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("contact_email", sa.String(length=320), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("contact_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("company_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("waiting_since", mailmanager.db.models.UTCDateTime(), nullable=True)
        )
        # Existing rows get 0 / the migration time (the columns are NOT NULL).
        batch_op.add_column(
            sa.Column("sent_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("escalated_from_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "updated_at",
                mailmanager.db.models.UTCDateTime(),
                nullable=False,
                server_default=sa.text("CURRENT_TIMESTAMP"),
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_reminders_target"), ["target", "kind", "cycle"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_reminders_company_id_companies"),
            "companies",
            ["company_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_reminders_contact_id_contacts"),
            "contacts",
            ["contact_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_reminders_escalated_from_id_users"),
            "users",
            ["escalated_from_id"],
            ["id"],
        )
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expect_reply", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.drop_column("expect_reply")
    with op.batch_alter_table("reminders", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_reminders_escalated_from_id_users"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("fk_reminders_contact_id_contacts"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_reminders_company_id_companies"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_reminders_target"), type_="unique")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("escalated_from_id")
        batch_op.drop_column("sent_count")
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("company_id")
        batch_op.drop_column("contact_id")
        batch_op.drop_column("contact_email")
        batch_op.drop_column("message_id")
        batch_op.drop_column("target")
    op.drop_table("reminder_state")
    with op.batch_alter_table("reminder_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_checks_check_at"))
    op.drop_table("reminder_checks")
