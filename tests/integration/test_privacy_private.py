"""Private threads (issue #16) stay private when a later message merges them with another
thread, and only the owner of a mailbox holding a thread may mark it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from mailmanager.services import access, privacy
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.integration import privacy_support
from tests.mailgen import make

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_merge_keeps_a_thread_private(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    inbox = tmp_path / "mail" / "INBOX"
    inbox.mkdir(parents=True)
    (inbox / "a.eml").write_bytes(
        make("jane@acme.fr", "alice@example.com", "Un", msgid="a@acme.fr", at=T0)
    )
    (inbox / "b.eml").write_bytes(
        make("paul@acme.fr", "alice@example.com", "Deux", msgid="b@acme.fr", at=T0)
    )
    cfg = privacy_support.alice_maildir(tmp_path, db_url, write_config)
    assert sync.Syncer(cfg, factory).sync("alice").status == "ok"
    with factory() as s:
        rows = s.execute(sa.select(models.Message.key, models.Message.thread_id)).all()
        threads = {key: int(tid or 0) for key, tid in rows}
    with store.session_scope(factory) as s:
        with pytest.raises(privacy.PrivacyError, match="owns no mailbox holding thread"):
            privacy.set_private(s, cfg, threads["b@acme.fr"], "bob@example.com", True, "cli:t")
        with pytest.raises(privacy.PrivacyError, match="is not a user"):
            privacy.set_private(s, cfg, threads["b@acme.fr"], "eve@evil.fr", True, "cli:t")
        privacy.set_private(s, cfg, threads["b@acme.fr"], "Alice@example.com", True, "cli:t")
    # A message answering both joins the two threads into one.
    (inbox / "c.eml").write_bytes(
        make("alice@example.com", "jane@acme.fr", "Re: Un", msgid="c@example.com",
             reply_to=["a@acme.fr", "b@acme.fr"], at=T0.replace(hour=10))
    )  # fmt: skip
    assert sync.Syncer(cfg, factory).sync("alice").status == "ok"
    with factory() as s:
        merged = set(s.scalars(sa.select(models.Message.thread_id)))
        assert len(merged) == 1
        [merged_id] = merged
        tid = int(merged_id or 0)
        assert access.thread_is_private_for(s, "bob@example.com", tid)
        assert access.thread_is_private_for(s, None, tid)
        assert not access.thread_is_private_for(s, "alice@example.com", tid)
