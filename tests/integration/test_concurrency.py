"""Several workers on one database (issue #15, defects 1-4, 7 and 8): schema creation by
workers started together, a killed worker's fetch child, a stalled worker's lease, the same
message in two mailboxes synced at once, concurrent reminder passes, and which worker ran
what. Real PostgreSQL (and SQLite where the defect is not PostgreSQL's alone), real
processes, the maildir connector.
"""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, spi
from mailmanager.db import leases, models, store
from mailmanager.mail import parsing
from mailmanager.reminders import evaluation
from mailmanager.services import cluster
from mailmanager.sync import engine as sync
from mailmanager.sync import ingest
from mailmanager.sync.fetching import ParsedBatch
from tests.conftest import REPO, ConfigWriter, new_pg_database
from tests.mailgen import day, make

ALICE = "alice@example.com"
CLIENT = "Jean Dupont <jean.dupont@acme-industrie.fr>"


def write_maildir(root: Path, count: int, prefix: str = "m") -> Path:
    box = mailbox.Maildir(str(root), create=True)
    for i in range(count):
        box.add(
            make(
                CLIENT,
                ALICE,
                f"Commande {prefix}{i}",
                msgid=f"{prefix}{i}@acme.fr",
                at=day(i / 100),
            )
        )
    return root


def mailbox_toml(name: str, root: Path) -> str:
    return f"""
        [[mailboxes]]
        name = "{name}"
        connector = "maildir"
        path = "{root}"
        owner = "{ALICE}"
        """


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database."""
    with new_pg_database("mm_conc") as url:
        yield url


def pg_sessions(url: str) -> sessionmaker[Session]:
    return store.session_factory(store.make_engine(url))


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- 1: workers started at once on an empty database ------------------------------------------

_OPEN_AT = """
    import os, sys, time
    from mailmanager.db import store
    go = sys.argv[2]
    while not os.path.exists(go):
        time.sleep(0.005)
    with store.open_database(sys.argv[1], create=True):
        pass
    print("ok")
"""


def test_three_workers_started_at_once_on_an_empty_database_all_start(
    pg_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = [_python(_OPEN_AT, pg_url, str(go)) for _ in range(3)]
    time.sleep(1.5)  # wall clock: let the three interpreters reach the start line
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in results]
    engine = store.make_engine(pg_url)
    assert store.current_revision(engine) == store.HEAD
    engine.dispose()


# --- 2: kill -9 of a worker mid-sync ----------------------------------------------------------

_SLOW_SYNC = """
    import sys, time
    from sqlalchemy import event
    from mailmanager import config
    from mailmanager.db import store
    from mailmanager.sync import engine
    cfg = config.load(sys.argv[1])
    with store.open_database(cfg.database.url, create=True) as factory:
        bind = factory.kw["bind"]

        @event.listens_for(bind, "after_cursor_execute")
        def slow(conn, cursor, statement, *args):
            # The lease renewal ends each batch's transaction: linger in it.
            if statement.startswith("UPDATE mailboxes SET lease_until"):
                print("in-transaction", flush=True)
                time.sleep(0.4)

        engine.Syncer(cfg, factory).sync("box")
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _idle_in_transaction(url: str) -> int:
    name = sa.engine.make_url(url).database
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                "AND state LIKE 'idle in transaction%'"
            ),
            {"d": name},
        ).scalar()
    engine.dispose()
    return int(n or 0)


def test_a_killed_worker_leaves_no_fetch_child_and_no_open_transaction(
    pg_url: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    root = write_maildir(tmp_path / "box", 300)
    path = write_config(pg_url, mailbox_toml("box", root), "[sync]\nbatch_size = 10\n")
    proc = _python(_SLOW_SYNC, str(path))
    assert proc.stdout is not None
    child: list[int] = []
    deadline = time.monotonic() + 60  # wall clock: bounds the wait for the fork
    for line in proc.stdout:
        child = child or _children(proc.pid)
        if child and line.startswith("in-transaction"):
            break
        assert time.monotonic() < deadline, "the sync never forked a fetch worker"
    assert child, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5  # wall clock: the bound under test
    while time.monotonic() < deadline and (any(map(_alive, child)) or _idle_in_transaction(pg_url)):
        time.sleep(0.1)
    assert not any(map(_alive, child)), "the fetch child outlived its killed parent"
    assert _idle_in_transaction(pg_url) == 0


# --- 3 and 8: leases and sync runs ------------------------------------------------------------


def test_a_stalled_sync_never_clears_or_takes_back_its_successors_lease(
    db_url: str, tmp_path: Path, write_config: ConfigWriter, factory: sessionmaker[Session]
) -> None:
    root = write_maildir(tmp_path / "box", 6)
    cfg = config.load(write_config(db_url, mailbox_toml("box", root), "[sync]\nbatch_size = 2\n"))
    successor = "otherhost:4242:successor"

    def stall_then_lose_the_lease(folder: str, fetched: int) -> None:
        if fetched != 2:
            return
        with store.session_scope(factory) as s:  # the lease expired; another worker took it
            mb = s.scalars(sa.select(models.Mailbox)).one()
            mb.lease_until = day(-1)
            s.flush()
            now = models.utcnow()  # wall clock: the engine stamps leases with it
            assert leases.take_sync_lease(s, mb.id, now, successor)

    report = sync.Syncer(cfg, factory, progress=stall_then_lose_the_lease).sync("box")
    assert report.status == "error" and "took over" in (report.error or "")
    with factory() as s:
        mb = s.scalars(sa.select(models.Mailbox)).one()
        assert mb.lease_owner == successor  # neither cleared nor taken back
        run = s.scalars(sa.select(models.SyncRun)).one()
        assert (run.status, run.worker) == ("abandoned", leases.WORKER_ID)
        # Only the first batch, written under the lease, is stored.
        assert s.scalar(sa.select(sa.func.count(models.Message.id))) == 2


def test_a_dead_workers_run_is_closed_as_abandoned_when_its_lease_is_taken_over(
    db_url: str, tmp_path: Path, write_config: ConfigWriter, factory: sessionmaker[Session]
) -> None:
    root = write_maildir(tmp_path / "box", 3)
    cfg = config.load(write_config(db_url, mailbox_toml("box", root)))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = f"{leases.HOST}:{dead.pid}:gone"
    assert sync.Syncer(cfg, factory).sync("box").status == "ok"
    with store.session_scope(factory) as s:  # a worker died mid-sync, its lease still valid
        mb = s.scalars(sa.select(models.Mailbox)).one()
        mb.lease_owner, mb.lease_until = owner, day(100_000)
        s.add(models.SyncRun(mailbox_id=mb.id, started_at=day(0), worker=owner))
    assert sync.Syncer(cfg, factory).sync("box").status == "ok"
    with factory() as s:
        runs = s.scalars(sa.select(models.SyncRun).order_by(models.SyncRun.id)).all()
        assert [(r.status, r.worker) for r in runs] == [
            ("ok", leases.WORKER_ID),
            ("abandoned", owner),
            ("ok", leases.WORKER_ID),
        ]
        assert all(r.finished_at is not None for r in runs)
        assert s.scalars(sa.select(models.Mailbox.lease_owner)).one() is None


# --- 4: one message in two mailboxes synced at once -------------------------------------------


def _blocked_by(engine: sa.Engine, pid: int, blocker: int | None = None) -> bool:
    with engine.connect() as conn:
        pids = conn.execute(sa.text("SELECT pg_blocking_pids(:p)"), {"p": pid}).scalar() or []
    return bool(pids) if blocker is None else blocker in pids


def _wait(predicate: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout  # wall clock: bounds a wait on another session
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _fetched(raw: bytes, pid: str) -> ingest.Fetched:
    return ingest.Fetched(provider_id=pid, raw=raw, parsed=parsing.parse(raw))


def test_the_same_message_in_two_mailboxes_synced_at_once_gets_both_locations(
    pg_database: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_database)
    a, b = tmp_path / "a", tmp_path / "b"
    cfg = config.load(write_config(pg_database, mailbox_toml("a", a) + mailbox_toml("b", b)))
    factory = pg_sessions(pg_database)
    engine = factory.kw["bind"]
    from mailmanager.db import configrows

    with store.session_scope(factory) as s:
        configrows.ensure_config_rows(s, cfg)
        s.flush()
        ids = {mb.name: mb.id for mb in s.scalars(sa.select(models.Mailbox))}
        for name in ("a", "b"):
            s.add(
                models.Folder(mailbox_id=ids[name], remote_id="INBOX", name="INBOX", role="inbox")
            )
    with factory() as s:
        folder = {
            name: s.scalars(sa.select(models.Folder.id).where(models.Folder.mailbox_id == i)).one()
            for name, i in ids.items()
        }
    k = make(CLIENT, ALICE, "Devis K", msgid="k@acme.fr")
    x = make(CLIENT, ALICE, "Devis X", msgid="x@acme.fr")
    ctx = {name: sync._context(cfg, cfg.mailbox(name), ids[name]) for name in ids}
    # Mailbox a's worker: K in one transaction, X in the next, neither committed yet.
    s1, s2 = factory(), factory()
    ingest.store_batch(s1, ctx["a"], folder["a"], [_fetched(k, "1")])
    pid2 = s2.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    # Mailbox b's worker stores [K, X]: it waits for K.
    syncer = sync.Syncer(cfg, factory, hooks=[])
    batch = spi.ChangeBatch(
        messages=[spi.RawMessage("1", k), spi.RawMessage("2", x)], cursor="2", more=False
    )
    parsed = ParsedBatch(batch, [parsing.parse(k), parsing.parse(x)])
    with store.session_scope(factory) as s:
        now = models.utcnow()  # wall clock: the engine stamps leases with it
        assert leases.take_sync_lease(s, ids["b"], now, "b-owner")
    report = sync.FolderReport("INBOX", "inbox")
    done = threading.Thread(
        target=syncer._store,
        args=(folder["b"], ctx["b"], parsed.batch, parsed.results, report, "b-owner"),
    )
    done.start()
    with engine.connect() as conn:

        def pid_b() -> int | None:
            found: int | None = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar()
            return found

        _wait(lambda: pid_b() is not None, "b waits for K")
        waiting = int(pid_b() or 0)
    ingest.store_batch(s2, ctx["a"], folder["a"], [_fetched(x, "2")])
    s1.commit()  # b's batch fails on K; item by item, K is found and X waits for s2
    _wait(lambda: _blocked_by(engine, waiting, int(pid2 or 0)), "b waits for X")
    s2.commit()  # b loses the race for X
    done.join(30)
    assert not done.is_alive()
    assert report.quarantined == 0
    with factory() as s:
        assert s.scalar(sa.select(sa.func.count(models.Quarantine.id))) == 0
        located = s.execute(
            sa.select(models.Message.message_id, models.MessageLocation.folder_id)
            .join(models.MessageLocation)
            .order_by(models.Message.message_id, models.MessageLocation.folder_id)
        ).all()
    assert located == [
        ("k@acme.fr", folder["a"]),
        ("k@acme.fr", folder["b"]),
        ("x@acme.fr", folder["a"]),
        ("x@acme.fr", folder["b"]),
    ]
    s1.close()
    s2.close()
    engine.dispose()


# --- 7: concurrent reminder passes ------------------------------------------------------------


def test_reminder_passes_of_two_workers_run_one_after_the_other(
    pg_database: str, write_config: ConfigWriter
) -> None:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_database)
    cfg = config.load(write_config(pg_database, ""))
    factory = pg_sessions(pg_database)
    engine = factory.kw["bind"]
    first = factory()
    evaluation.evaluate(first, cfg, day(0))
    second_pid: list[int] = []

    def second_pass() -> None:
        with store.session_scope(factory) as s:
            second_pid.append(int(s.execute(sa.text("SELECT pg_backend_pid()")).scalar() or 0))
            evaluation.evaluate(s, cfg, day(0))

    t = threading.Thread(target=second_pass)
    t.start()
    _wait(lambda: bool(second_pid), "the second pass starts")
    with engine.connect() as conn:
        # It waits for the first pass before touching any row: no deadlock is possible.
        _wait(
            lambda: (
                conn.execute(
                    sa.text("SELECT wait_event FROM pg_stat_activity WHERE pid = :p"),
                    {"p": second_pid[0]},
                ).scalar()
                == "advisory"
            ),
            "the second pass waits on the evaluation lock",
        )
    first.commit()
    first.close()
    t.join(30)
    assert not t.is_alive()
    engine.dispose()


# --- 8: the operator's view -------------------------------------------------------------------


def test_status_lists_the_syncs_under_way_and_the_lease_holders(
    db_url: str, tmp_path: Path, write_config: ConfigWriter, factory: sessionmaker[Session]
) -> None:
    root = write_maildir(tmp_path / "box", 1)
    cfg = config.load(write_config(db_url, mailbox_toml("box", root)))
    assert sync.Syncer(cfg, factory).sync("box").status == "ok"
    with store.session_scope(factory) as s:
        mb = s.scalars(sa.select(models.Mailbox)).one()
        mb.lease_owner, mb.lease_until = "h:1:x", day(2)
        s.add(models.SyncRun(mailbox_id=mb.id, started_at=day(1), worker="h:1"))
    with factory() as s:
        seen = cluster.cluster_status(s, day(1), 20.0)
    assert seen["holders"] == [{"mailbox": "box", "owner": "h:1:x", "until": day(2).isoformat()}]
    assert [(r["mailbox"], r["worker"]) for r in seen["running"]] == [("box", "h:1")]
    if db_url.startswith("sqlite"):
        assert seen["workers"] is None and seen["jobs"] is None


def test_two_jobs_creating_the_config_rows_at_once_both_succeed(
    pg_database: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    # A worker's sync job and its IDLE watcher (or two workers) start together on a new
    # database: the second used to fail on uq_users_email once the first committed.
    from mailmanager.db import configrows
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_database)
    cfg = config.load(write_config(pg_database, mailbox_toml("a", tmp_path / "a")))
    factory = pg_sessions(pg_database)
    first = factory()
    configrows.ensure_config_rows(first, cfg)
    first.flush()  # its rows are written, not committed: the second insert must wait
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with store.session_scope(factory) as s:
                configrows.ensure_config_rows(s, cfg)
        except BaseException as exc:
            failures.append(exc)

    other = threading.Thread(target=second)
    other.start()
    other.join(1.0)
    assert other.is_alive()  # waiting on the first transaction's rows
    first.commit()
    first.close()
    other.join(30)
    assert not other.is_alive() and failures == []
    with factory() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.Mailbox)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(models.User)) == len(cfg.users)
    factory.kw["bind"].dispose()
