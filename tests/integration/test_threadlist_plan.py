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
        t = models.Thread
        folders = access.content_folders(s, viewer)
        query = sa.select(t.id).where(threadlist._visible(cfg, viewer, folders))
        sql = str(
            query.order_by(t.id.desc())
            .limit(51)
            .compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True})
        )
        if bind.dialect.name == "postgresql":
            plan = "\n".join(str(r[0]) for r in s.execute(sa.text(f"EXPLAIN {sql}")))
            assert "hashed" not in plan, plan
            assert "ix_messages_thread_id" in plan, plan
        else:
            # EXISTS … LIMIT 1 OFFSET 0: SQLite's explain wants its literal LIMIT
            sql = sql.replace("LIMIT ? OFFSET", "LIMIT 1 OFFSET")
            plan = "\n".join(str(r[-1]) for r in s.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "ix_message_locations_message_id (message_id=?)" in plan, plan
            assert "folder_id=?" not in plan, plan
        s.rollback()
