"""Acceptance: the whole shared corpus through the maildir connector and the real CLI."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mailmanager.db import models, store
from mailmanager.testing.corpus import corpus_messages
from tests.cli.helpers import cli_json
from tests.conftest import ConfigWriter


def test_whole_corpus_syncs_counts_add_up_and_resync_adds_nothing(
    corpus_dir: Path, db_url: str, write_config: ConfigWriter
) -> None:
    cfg = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "corpus"
        connector = "maildir"
        path = "{corpus_dir}"
        owner = "alice@example.com"
        """,
    )
    first = cli_json("sync", config=cfg)
    [report] = first["mailboxes"]
    assert report["status"] == "ok", report["error"]
    expected = len(corpus_messages(corpus_dir))
    assert report["fetched"] == expected
    totals = first["totals"]
    # Every fetched item is a location of a stored message, or quarantined with a reason.
    assert totals["locations"] + totals["quarantined"] == expected
    assert totals["messages"] == report["new_messages"]
    assert 0 < totals["quarantined"] <= 5
    assert totals["messages"] < totals["locations"]  # duplicates (sisimai dos/bsd...) merged
    status = cli_json("status", config=cfg)
    assert status["totals"] == totals
    [mb] = status["mailboxes"]
    assert mb["messages"] == totals["locations"] and mb["quarantined"] == totals["quarantined"]
    assert mb["last_error"] is None
    engine = store.make_engine(db_url)
    with engine.connect() as conn:
        reasons = conn.scalars(sa.select(models.Quarantine.reason)).all()
        assert all(r.strip() for r in reasons)
        bounces = conn.scalar(sa.select(sa.func.count()).where(models.Message.is_bounce))
        assert bounces and bounces > 300
    engine.dispose()
    second = cli_json("sync", config=cfg)
    [again] = second["mailboxes"]
    assert again["fetched"] == 0 and again["new_messages"] == 0
    assert second["totals"] == totals
