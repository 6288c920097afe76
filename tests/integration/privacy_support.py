"""Shared by the privacy tests (issue #16)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models


def text_dump(s: Session) -> str:
    """Every stored text and byte value a marker could hide in (for PostgreSQL)."""
    parts: list[str] = []
    for table in models.Base.metadata.sorted_tables:
        for row in s.execute(sa.select(table)):
            for value in row:
                if isinstance(value, bytes):
                    parts.append(value.decode("utf-8", "replace"))
                elif isinstance(value, str):
                    parts.append(value)
    return "\n".join(parts)
