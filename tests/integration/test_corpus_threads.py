"""Acceptance: on the notmuch and ponymail corpora, threads equal the connected components
of the Message-ID / In-Reply-To / References graph, whatever the ingestion order."""

from __future__ import annotations

import random
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.memory import MemoryConnector
from mailmanager import config, spi
from mailmanager.db.models import Message, Thread
from mailmanager.sync import engine as sync
from mailmanager.sync import threadstore
from mailmanager.testing.corpus import corpus_messages
from tests.conftest import ConfigWriter

ID = re.compile(r"<([^<>\s]+)>")


def expected_components(raws: list[bytes]) -> set[frozenset[str]]:
    """Connected components computed independently: stdlib parse + a union-find."""
    import email
    import email.policy

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    own: set[str] = set()
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        ids = ID.findall(str(msg.get("Message-ID", "")))
        if not ids:
            continue
        me = ids[0]
        own.add(me)
        find(me)
        for header in ("In-Reply-To", "References"):
            for ref in ID.findall(" ".join(str(v) for v in msg.get_all(header, []))):
                parent[find(ref)] = find(me)
    groups: dict[str, set[str]] = {}
    for mid in own:
        groups.setdefault(find(mid), set()).add(mid)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("part", ["notmuch", "ponymail"])
def test_threads_are_the_reference_components_in_any_order(
    part: str,
    corpus_dir: Path,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
) -> None:
    raws = corpus_messages(corpus_dir / part)
    assert len(raws) > 300
    expected = expected_components(raws)
    rng = random.Random(f"{part}-{db_url[:6]}")
    rng.shuffle(raws)
    store_name = f"thr-{uuid.uuid4().hex[:8]}"
    acct = MemoryConnector.account(store_name)
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    try:
        cfg_path = write_config(
            db_url,
            f"""
            [[mailboxes]]
            name = "corpus"
            connector = "memory"
            store = "{store_name}"
            owner = "alice@example.com"
            [sync]
            batch_size = 37
            parse_workers = 0
            """,
        )
        cfg = config.load(cfg_path)
        # Ingest in three shuffled slices, with syncs in between, so merges cross batches
        # and runs.
        third = len(raws) // 3
        for piece in (raws[:third], raws[third : 2 * third], raws[2 * third :]):
            for raw in piece:
                acct.append("INBOX", raw)
            report = sync.Syncer(cfg, factory).sync("corpus")
            assert report.status == "ok", report.error
    finally:
        acct.clear()
    with factory() as s:
        rows = s.execute(
            sa.select(Message.message_id, Message.thread_id).where(~Message.message_id_synthetic)
        ).all()
    got: dict[int, set[str]] = {}
    for mid, tid in rows:
        got.setdefault(tid, set()).add(mid)
    actual = {frozenset(g) for g in got.values()}
    # The subject fallback is on (the default): it must not have merged anything here.
    assert actual == expected
    assert sum(1 for g in expected if len(g) > 1) > 20
    # Summaries written from memory (new threads) equal those read back from the messages.
    columns = [c for c in Thread.__table__.c if c.name != "updated_at"]
    with factory() as s:
        before = sorted(s.execute(sa.select(*columns)).all())
        threadstore.refresh_summaries(s, [row[0] for row in before])
        s.flush()
        assert sorted(s.execute(sa.select(*columns)).all()) == before
        s.rollback()
