"""An item the database refuses is quarantined with the database's reason; the rest of its
batch is stored and the sync goes on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, registry, spi
from mailmanager.db import models
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.mailgen import make


class NulIdConnector:
    """Hands out one message whose provider id PostgreSQL cannot store (a NUL character)."""

    name: ClassVar[str] = "nulid"
    options: ClassVar[tuple[spi.Option, ...]] = ()

    def __init__(self, config: spi.ConnectorConfig) -> None:
        self.config = config

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        return [spi.RemoteFolder("INBOX", "INBOX", spi.FolderRole.INBOX)]

    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        if cursor == "done":
            return spi.ChangeBatch(messages=[], cursor="done")
        msgs = [
            spi.RawMessage("ok-1", make("a@acme.fr", "alice@example.com", "Un", msgid="ok1@x")),
            spi.RawMessage(
                "bad\x00id", make("a@acme.fr", "alice@example.com", "Deux", msgid="k@x")
            ),
            spi.RawMessage("ok-2", make("a@acme.fr", "alice@example.com", "Trois", msgid="ok2@x")),
        ]
        return spi.ChangeBatch(messages=msgs, cursor="done", reset=cursor is None)

    def check(self) -> Sequence[spi.CheckStep]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def nulid() -> Iterator[None]:
    registry.register("nulid", NulIdConnector)
    yield
    registry.unregister("nulid")


def test_rejected_item_is_quarantined_and_the_batch_survives(
    nulid: None, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = config.load(
        write_config(
            db_url,
            """
            [[mailboxes]]
            name = "x"
            connector = "nulid"
            owner = "alice@example.com"
            [sync]
            parse_workers = 0
            """,
        )
    )
    report = sync.Syncer(cfg, factory).sync("x")
    assert report.status == "ok", report.error
    with factory() as s:
        ids = set(s.scalars(sa.select(models.Message.message_id)))
        quarantined = s.scalars(sa.select(models.Quarantine)).all()
        cursor = s.scalar(sa.select(models.Folder.cursor))
    assert cursor == "done"
    if db_url.startswith("postgresql"):
        # PostgreSQL refuses NUL in text: that one item is quarantined with the reason.
        assert ids == {"ok1@x", "ok2@x"}
        [q] = quarantined
        assert "database rejected" in q.reason and q.provider_id == "bad\ufffdid"
    else:
        # SQLite stores it: nothing to reject.
        assert ids == {"ok1@x", "k@x", "ok2@x"} and quarantined == []
