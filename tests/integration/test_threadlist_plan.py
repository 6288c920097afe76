"""The API's thread list (`services.threadlist.page`) asks "may the viewer see this thread?"
of the threads a page reads, one by one through the messages' index by thread. Written as
plain EXISTS, PostgreSQL hashed each into the set of every thread the viewer's mailboxes
hold, built per request: 200 ms at 200,000 messages (`benchmarks/web.py`'s world) against
2 ms now. On SQLite the check read the viewer's whole folder per thread (by the locations'
unique index on folder): 1.8 s a page at 200,000 messages in one mailbox, against 4 ms
through the messages' index by thread. Checked in the plans and the answer on both backends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models
from mailmanager.services import access, threadlist

ALICE = "alice@example.com"


def _world(s: Session) -> list[int]:
    user = models.User(email=ALICE, name="Alice")
    s.add(user)
    s.flush()
    box = models.Mailbox(name="alice", connector="maildir", owner_id=user.id)
    s.add(box)
    s.flush()
    folder = models.Folder(mailbox_id=box.id, name="INBOX", remote_id="INBOX", role="inbox")
    s.add(folder)
    s.flush()
    threads = [models.Thread(subject=f"t{i}") for i in range(4)]
    s.add_all(threads)
    s.flush()
    for i, t in enumerate(threads[:3]):  # the last thread is in no mailbox of hers
        m = models.Message(key=f"k{i}", message_id=f"<{i}@x>", sha256=f"{i:064x}", thread_id=t.id)
        s.add(m)
        s.flush()
        s.add(models.MessageLocation(folder_id=folder.id, provider_id=str(i), message_id=m.id))
    s.flush()
    return [t.id for t in threads]


def test_a_pages_threads_are_checked_one_by_one(factory: sessionmaker[Session]) -> None:
    cfg: Any = SimpleNamespace(web=SimpleNamespace(visibility="metadata"))
    viewer = access.Viewer(ALICE, "Alice", "salesperson", "en", "UTC", frozenset({ALICE}))
    with factory() as s:
        ids = _world(s)
        found, after = threadlist.page(s, cfg, viewer, threadlist.Filters(), None, 2)
        assert [t.id for t in found] == ids[2:0:-1] and after == ids[1]
        rest, last = threadlist.page(s, cfg, viewer, threadlist.Filters(), after, 2)
        assert [t.id for t in rest] == [ids[0]] and last is None
        bind = s.get_bind()
        seen: list[tuple[str, Any]] = []

        def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
            seen.append((statement, params))

        sa.event.listen(bind, "before_cursor_execute", grab)
        try:
            threadlist.page(s, cfg, viewer, threadlist.Filters(), None, 50)
        finally:
            sa.event.remove(bind, "before_cursor_execute", grab)
        [(sql, params)] = [(q, p) for q, p in seen if "ORDER BY threads.id DESC" in q]
        conn = s.connection()
        if bind.dialect.name == "postgresql":
            plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
            assert "hashed" not in plan, plan
            assert "ix_messages_thread_id" in plan, plan
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = "\n".join(str(r[-1]) for r in rows)
            assert "ix_message_locations_message_id (message_id=?)" in plan, plan
            assert "folder_id=?" not in plan, plan
        s.rollback()


def test_a_pages_links_are_probed_by_message_on_postgresql(
    factory: sessionmaker[Session],
) -> None:
    """The levels of a page's messages (`access.thread_levels_of`) and the records of its
    threads (`threadlist._records`) probe the links' index per message: with 250 messages
    on the page and 20,000 links in the database, PostgreSQL's estimates preferred to hash
    every link, per request (2.8 ms each in the benchmark's world, against 0.6 so)."""
    cfg: Any = SimpleNamespace(web=SimpleNamespace(visibility="metadata"))
    viewer = access.Viewer(ALICE, "Alice", "salesperson", "en", "UTC", frozenset({ALICE}))
    with factory() as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("the plans are PostgreSQL's; SQLite probes by message already")
        _world(s)
        folder = s.scalar(sa.select(models.Folder.id))
        threads = [models.Thread(subject=f"p{i}") for i in range(50)]
        s.add_all(threads)
        s.flush()
        rows = [
            {
                "key": f"p{t.id}-{n}",
                "message_id": f"<p{t.id}.{n}@x>",
                "sha256": "0" * 64,
                "thread_id": t.id,
            }
            for t in threads
            for n in range(5)
        ]
        s.execute(sa.insert(models.Message), rows)
        ids = list(s.scalars(sa.select(models.Message.id).where(models.Message.key.like("p%"))))
        s.execute(
            sa.insert(models.MessageLocation),
            [{"folder_id": folder, "provider_id": f"p{m}", "message_id": m} for m in ids],
        )
        link = {"target_kind": "company", "method": "domain", "thread_id": None}
        s.execute(
            sa.insert(models.Link),
            [{**link, "message_id": m, "target_id": 1} for m in ids]
            + [{**link, "message_id": 10_000_000 + n, "target_id": n} for n in range(20_000)],
        )
        s.commit()
        s.execute(sa.text("ANALYZE links"))
        s.execute(sa.text("ANALYZE messages"))
        seen: list[tuple[str, Any]] = []
        engine = s.get_bind()

        def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
            seen.append((statement, params))

        sa.event.listen(engine, "before_cursor_execute", grab)
        try:
            found, _ = threadlist.page(s, cfg, viewer, threadlist.Filters(), None, 50)
        finally:
            sa.event.remove(engine, "before_cursor_execute", grab)
        assert len(found) == 50 and all(t.records for t in found)
        reads = [(q, p) for q, p in seen if "FROM links" in q or "JOIN links" in q]
        assert len(reads) >= 2, seen
        conn = s.connection()
        for statement, params in reads:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", params))
            assert "Seq Scan on links" not in plan, plan
        s.rollback()
