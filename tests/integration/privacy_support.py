"""Shared by the privacy tests (issue #16)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config
from mailmanager.db import models
from tests.conftest import ConfigWriter


def alice_maildir(
    tmp_path: Path, db_url: str, write_config: ConfigWriter, more: str = ""
) -> config.Config:
    """A configuration whose one mailbox, "alice", is the Maildir `tmp_path / "mail"`,
    parsed in-process; `more` adds TOML sections."""
    return config.load(
        write_config(
            db_url,
            f"""
            [[mailboxes]]
            name = "alice"
            connector = "maildir"
            path = "{tmp_path / "mail"}"
            owner = "alice@example.com"
            [sync]
            parse_workers = 0
            {more}""",
        )
    )


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
