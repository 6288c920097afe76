"""Rows found by the references people type: a message by database id, key or Message-ID."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db.models import Message


def find_message(session: Session, ref: str) -> Message | None:
    """A message by database id, key or Message-ID (with or without <>)."""
    if ref.isdigit():
        found = session.get(Message, int(ref))
        if found is not None:
            return found
    ref = ref.strip().strip("<>")
    return session.scalars(
        sa.select(Message)
        .where(sa.or_(Message.key == ref, Message.message_id == ref))
        .order_by(Message.id)
        .limit(1)
    ).first()
