"""The records of a thread (`services.threadview.records_query`, on every thread page) are
read through indexes. Under one OR of "links of its messages" and "manual links of the
thread", PostgreSQL read the whole links table: 103 ms of a 135 ms thread page at 400,000
links (benchmarks/web.py). The query is now a UNION of the two indexed reads."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db.models import Link, Message, Thread
from mailmanager.services import threadview


def _plan(s: Session, query: sa.CompoundSelect[str, int]) -> str:
    bind = s.get_bind()
    sql = str(query.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
    if bind.dialect.name == "sqlite":
        return "\n".join(str(row[-1]) for row in s.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
    s.execute(sa.text("SET LOCAL enable_seqscan = off"))  # an almost empty table otherwise
    return "\n".join(str(row[0]) for row in s.execute(sa.text("EXPLAIN " + sql)))


def test_a_threads_records_come_from_the_indexes(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        threads = [Thread(subject=f"t{i}") for i in range(3)]
        s.add_all(threads)
        s.flush()
        messages = [
            Message(key=f"k{i}", message_id=f"<{i}@x>", sha256=f"{i:064x}", thread_id=t.id)
            for i, t in enumerate(threads * 2)
        ]
        s.add_all(messages)
        s.flush()
        s.add_all(
            Link(
                message_id=m.id,
                thread_id=m.thread_id,
                target_kind="company",
                target_id=i % 2,
                method="domain",
            )
            for i, m in enumerate(messages)
        )
        first = threads[0].id
        s.add(
            Link(
                thread_id=first,
                target_kind="contact",
                target_id=7,
                method="manual",
                created_by="web:a",
            )
        )
        s.add(
            Link(
                thread_id=first, target_kind="contact", target_id=8, method="manual", tombstone=True
            )
        )
        s.flush()
        plan = _plan(s, threadview.records_query(first))
        links = [line.strip() for line in plan.splitlines() if "links" in line]
        if s.get_bind().dialect.name == "sqlite":
            assert links and all(line.startswith("SEARCH links") for line in links), plan
        else:  # each read of links is keyed by message or by thread, none filters them all
            assert "Index Cond: (message_id = messages.id)" in plan, plan
            assert "Index Cond: (thread_id = " in plan, plan
            assert "Seq Scan on links" not in plan, plan
        rows = {tuple(row) for row in s.execute(threadview.records_query(first))}
        assert rows == {("company", 0), ("company", 1), ("contact", 7)}
        s.rollback()
