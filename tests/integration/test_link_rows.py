"""Links and verdicts carry no foreign key (migration 0009) and only anchors are indexed
by record (0010): what the keys did is still done, and nothing gets lost.

A deleted message takes its links and verdict with it (a trigger), a thread merge moves
the matcher's links and the manual ones, rows another worker wrote first do not fail a
batch, the partial indexes serve their queries, and an upgrade from 0008 keeps every row
and anchors each thread's links.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from mailmanager.db.models import Link, MatchState, Message, Thread
from mailmanager.matching import reads as linkindex
from mailmanager.matching import run as linking
from mailmanager.matching import writes as linkwrite
from mailmanager.sync import threadstore
from tests.conftest import new_pg_database


def _thread_with_messages(s: Session, n: int, tag: str) -> tuple[int, list[int]]:
    thread = Thread(subject=tag)
    s.add(thread)
    s.flush()
    mids = []
    for i in range(n):
        key = f"{tag}{i}@test"
        m = Message(key=key, message_id=key, sha256=f"{tag}{i}".ljust(64, "0"), thread_id=thread.id)
        s.add(m)
        s.flush()
        mids.append(m.id)
    return thread.id, mids


def _old_thread_with_messages(engine: sa.Engine, n: int, tag: str) -> tuple[int, list[int]]:
    """`_thread_with_messages` on an older schema: only the columns that schema has, with
    the defaults the models give them (the models may have gained columns since)."""
    meta = sa.MetaData()
    threads_t = sa.Table("threads", meta, autoload_with=engine)
    messages_t = sa.Table("messages", meta, autoload_with=engine)

    def row(model: type[models.Base], **values: object) -> dict[str, object]:
        table = threads_t if model is Thread else messages_t
        full: dict[str, object] = {}
        for c in model.__table__.columns:
            default: Any = c.default
            if default is not None and (default.is_scalar or default.is_callable):
                full[c.name] = default.arg(None) if default.is_callable else default.arg
        full.update(values)
        return {k: v for k, v in full.items() if k in table.c}

    with engine.begin() as conn:
        inserted = conn.execute(threads_t.insert().values(row(Thread, subject=tag)))
        tid = int(inserted.inserted_primary_key[0])
        mids = []
        for i in range(n):
            key = f"{tag}{i}@test"
            values = row(Message, key=key, message_id=key, sha256=f"{tag}{i}".ljust(64, "0"),
                         thread_id=tid)  # fmt: skip
            inserted = conn.execute(messages_t.insert().values(values))
            mids.append(int(inserted.inserted_primary_key[0]))
    return tid, mids


def _links(s: Session, thread: int, mids: list[int]) -> None:
    for mid in mids:
        s.add(Link(message_id=mid, thread_id=thread, target_kind="contact", target_id=1,
                   method="address", explanation="x", created_by="matcher"))  # fmt: skip
        s.add(MatchState(message_id=mid, reason="linked"))
    # A manual link on the whole thread and a tombstone on its first message.
    s.add(Link(message_id=None, thread_id=thread, target_kind="company", target_id=2,
               method="manual", created_by="user:alice"))  # fmt: skip
    s.add(Link(message_id=mids[0], thread_id=thread, target_kind="opportunity", target_id=3,
               method="manual", tombstone=True, created_by="user:alice"))  # fmt: skip


def _rows(s: Session) -> tuple[set[tuple[int | None, int | None, str]], set[int]]:
    links = {(r.message_id, r.thread_id, r.target_kind) for r in s.scalars(sa.select(Link))}
    return links, set(s.scalars(sa.select(MatchState.message_id)))


def test_a_deleted_message_takes_its_links_and_verdict(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        tid, mids = _thread_with_messages(s, 4, "a")
        _links(s, tid, mids)
    with factory.begin() as s:  # one message, then two in one statement (plain SQL)
        s.execute(sa.text("DELETE FROM messages WHERE id = :m"), {"m": mids[0]})
        s.execute(sa.delete(Message).where(Message.id.in_(mids[1:3])))
    with factory() as s:
        links, states = _rows(s)
    assert states == {mids[3]}
    # The survivor's link and the thread's manual link stay; the tombstone went with its message.
    assert links == {(mids[3], tid, "contact"), (None, tid, "company")}


def test_a_thread_merge_moves_matcher_and_manual_links(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        keep, _ = _thread_with_messages(s, 1, "k")
        gone, gone_mids = _thread_with_messages(s, 2, "g")
        _links(s, gone, gone_mids)
        other, other_mids = _thread_with_messages(s, 1, "o")
        _links(s, other, other_mids)
    with factory.begin() as s:
        threadstore.merge(s, keep, [gone], [linking.threads_merged])
    with factory() as s:
        links, _ = _rows(s)
        assert s.get(Thread, gone) is None
    assert {t for _, t, _ in links} == {keep, other}
    assert {(m, t) for m, t, _ in links if t == keep} == {
        (gone_mids[0], keep), (gone_mids[1], keep), (None, keep)
    }  # fmt: skip


def test_rows_another_worker_wrote_first_are_skipped(factory: sessionmaker[Session]) -> None:
    """New mail's rows go straight in (PostgreSQL: COPY); when another worker wrote some of
    them meanwhile, the rest still goes in and the batch does not fail."""
    with factory.begin() as s:
        tid, mids = _thread_with_messages(s, 3, "w")
        s.add(MatchState(message_id=mids[1], reason="linked", detail="the other worker"))
    columns = (("message_id", "int"), ("reason", "text"), ("detail", "text"), ("matched_at", ""))
    with factory.begin() as s:
        now = linkwrite.driver_time(s, models.utcnow())  # wall clock: a stamp, any date
        rows = [(m, "linked", "this worker", now) for m in mids]
        linkwrite.bulk_insert(
            s, "match_states", columns, rows, "ON CONFLICT DO NOTHING", fresh=True
        )
        linkwrite.bulk_insert(s, "match_states", columns, [], "", fresh=True)  # nothing to do
        s.add(Link(message_id=mids[0], thread_id=tid, target_kind="contact", target_id=1,
                   method="address", created_by="matcher"))  # fmt: skip
    with factory() as s:
        got = {m: d for m, d in s.execute(sa.select(MatchState.message_id, MatchState.detail))}
        assert s.scalar(sa.select(sa.func.count()).select_from(Link)) == 1
    assert got == {mids[0]: "this worker", mids[1]: "the other worker", mids[2]: "this worker"}


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            sa.select(Link.id).where(models.manual_links(), Link.thread_id.in_([1, 2])),
            "ix_links_manual",
        ),
        (sa.select(Link.id).where(models.linking("company", [1, 2])), "ix_links_target"),
        (models.anchored_threads("contact", [3]), "ix_links_target"),
    ],
    ids=["manual-by-thread", "rows-by-target", "threads-by-target"],
)
def test_partial_indexes_serve_their_queries(
    db_url: str, query: sa.Select[Any], index: str
) -> None:
    engine = store.make_engine(db_url)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if not sqlite:
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: force the choice
        plan = " ".join(
            str(row[-1] if sqlite else row[0])
            for row in conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql)
        )
    engine.dispose()
    assert index in plan, plan
    if sqlite:
        assert "SCAN links" not in plan and "SCAN linking" not in plan, plan


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with new_pg_database("mm_0009") as url:
        yield url


_OLD_ROWS = [  # links and verdicts in the schema of revision 0008, in plain SQL
    *(
        "INSERT INTO links (message_id, thread_id, target_kind, target_id, method, confidence, "
        f"explanation, tombstone, created_by, created_at) VALUES ({m}, 1, '{kind}', {t}, 'x', 1, "
        "'', false, 'matcher', '2026-11-01 00:00:00')"
        for m in (1, 2, 3)
        for kind, t in (("contact", 7), ("company", 8))
    ),
    "INSERT INTO links (message_id, thread_id, target_kind, target_id, method, confidence, "
    "explanation, tombstone, created_by, created_at) VALUES (NULL, 1, 'opportunity', 9, "
    "'manual', 1, '', false, 'user:alice', '2026-11-01 00:00:00')",
    *(
        f"INSERT INTO match_states (message_id, reason, detail, matched_at) VALUES ({i}, "
        "'linked', '', '2026-11-01 00:00:00')"
        for i in (1, 2, 3)
    ),
]


def test_upgrading_from_0008_keeps_links_and_verdicts(fresh_url: str) -> None:
    engine = store.make_engine(fresh_url)
    try:
        command.upgrade(store._alembic_config(engine), "0008")
        factory = store.session_factory(engine)
        # threads and messages as they were then
        assert _old_thread_with_messages(engine, 3, "u") == (1, [1, 2, 3])
        with engine.begin() as conn:
            for statement in _OLD_ROWS:
                conn.exec_driver_sql(statement)
        assert store.upgrade(engine) == ("0008", store.HEAD)
        with factory() as s:
            links, states = _rows(s)
            anchors = {
                (r.message_id, r.target_kind) for r in s.scalars(sa.select(Link)) if r.anchor
            }
        assert len(links) == 7 and states == {1, 2, 3}
        # One anchor per thread and target for the matcher's rows; manual rows all anchored.
        assert anchors == {(1, "contact"), (1, "company"), (None, "opportunity")}
        for kind, target, n in (("contact", 7, 3), ("company", 8, 3), ("opportunity", 9, 1)):
            with factory() as s:
                found = s.scalars(sa.select(Link.id).where(models.linking(kind, [target]))).all()
            assert len(found) == n, kind
        with factory.begin() as s:  # the anchors' message goes: the others take over
            s.execute(sa.delete(Message).where(Message.id == 1))
        with factory() as s:
            links, states = _rows(s)
            rows = s.scalars(sa.select(Link.message_id).where(models.linking("contact", [7]))).all()
        assert states == {2, 3} and all(m != 1 for m, _, _ in links)
        assert sorted(rows) == [2, 3]
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("links")}
        assert indexes >= {"ix_links_manual", "ix_links_target"}
        assert not sa.inspect(engine).get_foreign_keys("links")
    finally:
        engine.dispose()


def test_batch_reads_are_planned_for_their_values_on_postgresql(pg_database: str) -> None:
    """The matcher's batch reads and deletes by a list of ids or addresses are never
    server-side prepared: a generic plan made while a table was empty kept scanning it
    whole, comparing each row with the whole list, once the table had grown (measured:
    the suggestions clean-up took 39 ms a batch instead of 1)."""
    engine = store.make_engine(pg_database)
    try:
        with Session(engine) as s:
            cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
            for _ in range(8):  # psycopg prepares a query from its fifth run on
                linkindex.raw_rows(s, "SELECT id FROM review_items WHERE thread_id {}", [1, 2])
                linkindex.raw_execute(
                    s, "DELETE FROM suggestions WHERE status = 'pending' AND email {}", ["a@b.c"]
                )
                cursor.execute("SELECT id FROM suggestions WHERE email = %s", ("x@y.z",))
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in cursor.fetchall()]
            s.rollback()
    finally:
        engine.dispose()
    # The plain query shows that the threshold was reached; the batch ones were not kept.
    assert any("FROM suggestions WHERE email" in p for p in prepared), prepared
    batch = ("review_items", "DELETE FROM suggestions")
    assert not any(b in p for b in batch for p in prepared), prepared


def test_reads_by_id_use_the_index_whatever_the_statistics_on_postgresql(
    pg_database: str,
) -> None:
    """Statistics taken while `links` was empty (a new install, or autovacuum off) made
    PostgreSQL 15 scan the whole table for `message_id = ANY(ids)` with a couple of hundred
    ids (checked by hand on this very table); `rows_by` probes the index once per id
    whatever the statistics say."""
    engine = store.make_engine(pg_database)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("TRUNCATE links")
            conn.exec_driver_sql("VACUUM ANALYZE links")  # statistics of an empty table
            conn.exec_driver_sql(
                "INSERT INTO links (message_id, thread_id, target_kind, target_id, method, "
                "confidence, explanation, tombstone, anchor, created_by, created_at) "
                "SELECT g, g / 3, 'contact', g %% 5000, 'address', 0.9, 'x', false, true, "
                "'matcher', now() FROM generate_series(1, 100000) AS g"
            )
            sql = linkindex.rows_by_sql(
                "postgresql", "id, message_id", "links", "message_id",
                "created_by = 'matcher' AND NOT tombstone", "",
            )  # fmt: skip
            ids = "{" + ",".join(str(i) for i in range(1, 100000, 500)) + "}"  # 200 ids
            plan = " ".join(
                row[0]
                for row in conn.exec_driver_sql(
                    "EXPLAIN " + sql.format("%(ids)s::bigint[]"), {"ids": ids}
                )
            )
            found = conn.exec_driver_sql(sql.format("%(ids)s::bigint[]"), {"ids": ids}).all()
            conn.exec_driver_sql("TRUNCATE links")
    finally:
        engine.dispose()
    assert "Seq Scan on links" not in plan and "uq_links_message_id" in plan, plan
    assert sorted(mid for _, mid in found) == list(range(1, 100000, 500))


def test_postgresql_connections_run_without_jit(pg_database: str) -> None:
    """JIT compilation (about 100 ms) is off on every pooled connection, also once a
    transaction has been rolled back."""
    engine = store.make_engine(pg_database)
    try:
        for _ in range(2):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
                assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
    finally:
        engine.dispose()
