"""Production mode (issue #15): three procrastinate workers (`workers.runner.run_worker`, as
`mailmanager run` starts them on PostgreSQL) started at once on an empty database, four
maildir mailboxes, mail arriving during the run, one worker killed with -9 in the middle of
a sync, the others stopped with SIGTERM. Checked at the end: no two sync runs of one
mailbox overlap, every message is stored once with the locations of the mailboxes it was
delivered to, nothing is quarantined, every run is finished, the killed worker's mailbox is
synced by another worker within 60 s, and SIGTERM stops a worker within 10 s.

The workers' database is slowed down a little (each batch lingers 0.2 s in its
transaction) so that a sync lasts long enough to be killed in its middle.
"""

from __future__ import annotations

import itertools
import json
import mailbox
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailmanager import config
from mailmanager.config import workers as workers_config
from mailmanager.db import leases, models, store
from mailmanager.testing import processes
from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from mailmanager.workers import runner, tasks
from tests.conftest import REPO, ConfigWriter, new_pg_database
from tests.integration.test_daemon_idle import mailbox_toml as idle_mailbox_toml
from tests.mailgen import day, make

ALICE = "alice@example.com"
CLIENT = "Jean Dupont <jean.dupont@acme-industrie.fr>"
BOXES = ("box0", "box1", "box2", "box3")

_WORKER = """
    import sys, time
    from sqlalchemy import event
    from mailmanager import config, logs
    from mailmanager.db import store
    from mailmanager.workers import runner
    cfg = config.load(sys.argv[1])
    with store.open_database(cfg.database.url, create=True) as factory:
        @event.listens_for(factory.kw["bind"], "after_cursor_execute")
        def slow(conn, cursor, statement, *args):
            if statement.startswith("UPDATE mailboxes SET lease_until"):
                time.sleep(0.2)

        runner.run_worker(cfg, factory)
"""


def _add(root: Path, start: int, count: int, prefix: str) -> None:
    """Deliver `count` messages to the Maildir at `root`, all at once: written first to a
    Maildir beside it, then renamed into its `new/` in one go (a few ms), so a sync that
    starts meanwhile cannot catch a few of them and end at once (it did, once matching got
    faster, and the test then found no sync of box0 running to kill)."""
    mailbox.Maildir(str(root), create=True)
    beside = root.with_name(root.name + ".staging")
    staging = mailbox.Maildir(str(beside), create=True)
    for i in range(start, start + count):
        subject, msgid = f"Commande {prefix}{i}", f"{prefix}{i}@acme.fr"
        staging.add(make(CLIENT, ALICE, subject, msgid=msgid, at=day(i / 100)))
    for path in sorted((beside / "new").iterdir()):
        path.rename(root / "new" / path.name)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with new_pg_database("mm_workers") as url:
        yield url


def _runs(engine: sa.Engine) -> list[tuple[str, str, datetime, datetime | None, str | None]]:
    """Every sync run (mailbox, status, start, end, worker); none before the schema exists."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("sync_runs"):
            return []
        return [
            (name, status, started, finished, worker)
            for name, status, started, finished, worker in conn.execute(
                sa.select(
                    models.Mailbox.name,
                    models.SyncRun.status,
                    models.SyncRun.started_at,
                    models.SyncRun.finished_at,
                    models.SyncRun.worker,
                )
                .join(models.Mailbox, models.Mailbox.id == models.SyncRun.mailbox_id)
                .order_by(models.SyncRun.id)
            )
        ]


def _wait(predicate: object, what: str, timeout: float) -> float:
    started = time.monotonic()  # wall clock: bounds and measures the waits on the workers
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, f"timed out waiting until {what}"
        time.sleep(0.1)
    return time.monotonic() - started  # wall clock: see above


def test_cron_lines_fire_at_least_as_often_as_asked() -> None:
    assert tasks.cron_every(10) == "* * * * * */10"
    assert tasks.cron_every(45) == "* * * * * */30"
    assert tasks.cron_every(300) == "*/5 * * * *"
    assert tasks.cron_every(7200) == "0 */2 * * *"
    assert tasks.cron_every(86400) == "0 0 * * *"


def test_auto_picks_procrastinate_on_postgresql_and_embedded_on_sqlite() -> None:
    auto = workers_config.WorkersConfig()
    assert workers_config.engine_for(auto, "postgresql+psycopg://h/db") == "procrastinate"
    assert workers_config.engine_for(auto, "sqlite:///x.db") == "embedded"
    embedded = workers_config.WorkersConfig(engine="embedded")
    assert workers_config.engine_for(embedded, "postgresql+psycopg://h/db") == "embedded"


def test_config_check_says_which_mode_run_starts(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    def check(url: str, extra: str = "") -> str:
        path = write_config(url, "", extra)
        argv = [sys.executable, "-m", "mailmanager", "-c", str(path), "config", "check"]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True)
        return next(line for line in done.stdout.splitlines() if line.startswith("run: "))

    assert check(f"sqlite:///{tmp_path / 'mm.db'}").startswith("run: embedded daemon")
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/nowhere"
    assert check(pg).startswith("run: procrastinate worker")
    assert check(pg, '[workers]\nengine = "embedded"\n').startswith("run: embedded daemon")


def test_mailmanager_run_on_postgresql_is_a_procrastinate_worker(
    pg_url: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    root = tmp_path / "box"
    _add(root, 0, 5, "run")
    mailbox_toml = f"""
        [[mailboxes]]
        name = "box"
        connector = "maildir"
        path = "{root}"
        owner = "{ALICE}"
        """
    path = write_config(pg_url, mailbox_toml)
    argv = [sys.executable, "-m", "mailmanager", "-c", str(path), "run"]
    proc = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True)
    engine = sa.create_engine(pg_url)
    try:
        assert proc.stderr is not None
        assert "mailmanager worker (procrastinate): 1 mailboxes" in proc.stderr.readline()
        _wait(lambda: any(r[1] == "ok" for r in _runs(engine)), "the first sync", 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()  # wall clock: SIGTERM must stop the worker within 10 s
        proc.communicate(timeout=30)
        elapsed = time.monotonic() - started  # wall clock: see above
        engine.dispose()
    assert proc.returncode == 0
    assert elapsed < 10


def test_three_workers_share_the_mailboxes_and_take_over_a_killed_ones(
    pg_url: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    roots = {name: tmp_path / name for name in BOXES}
    for name, root in roots.items():
        _add(root, 0, 60, name)
    for name in ("box0", "box1"):  # one message delivered to two mailboxes
        _add(roots[name], 0, 1, "shared")
    mailboxes = "".join(
        f"""
        [[mailboxes]]
        name = "{name}"
        connector = "maildir"
        path = "{root}"
        owner = "{ALICE}"
        """
        for name, root in roots.items()
    )
    extra = "[sync]\ninterval = 10\nbatch_size = 10\n[workers]\nconcurrency = 2\n"
    path = write_config(pg_url, mailboxes, extra)
    cfg = config.load(path)
    assert workers_config.engine_for(cfg.workers, cfg.database.url) == "procrastinate"
    argv = [sys.executable, "-c", textwrap.dedent(_WORKER), str(path)]
    logs = [(tmp_path / f"worker{i}.log").open("w") for i in range(3)]
    workers = [subprocess.Popen(argv, cwd=REPO, stderr=log) for log in logs]
    engine = sa.create_engine(pg_url)
    try:

        def all_synced() -> bool:
            ok = {name for name, status, *_ in _runs(engine) if status == "ok"}
            return ok >= set(BOXES)

        _wait(all_synced, "every mailbox is synced once", 90)
        _add(roots["box0"], 60, 150, "box0")  # mail arrives: a long sync for box0
        for name in BOXES[1:]:
            _add(roots[name], 60, 5, name)
        known = len(_runs(engine))

        def box0_running() -> tuple[str, str, datetime, datetime | None, str | None] | None:
            for run in _runs(engine)[known:]:
                if run[0] == "box0" and run[1] == "running":
                    return run
            return None

        _wait(lambda: box0_running() is not None, "box0's next sync starts", 30)
        time.sleep(0.5)  # wall clock: well inside the sync (15 batches of 0.2 s and more)
        victim = box0_running()
        assert victim is not None and victim[4] is not None
        pid = int(victim[4].rpartition(":")[2])
        killed = next(w for w in workers if w.pid == pid)
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)

        def taken_over() -> bool:
            return any(
                name == "box0" and status == "ok" and started > victim[2] and worker != victim[4]
                for name, status, started, _, worker in _runs(engine)
            )

        takeover = _wait(taken_over, "another worker syncs box0", 60)
        print(f"takeover after kill -9: {takeover:.1f} s")
        _wait(
            lambda: _count(engine, models.Message.id) == 4 * 60 + 150 + 3 * 5 + 1,
            "all the mail is stored",
            60,
        )
        status = subprocess.run(
            [sys.executable, "-m", "mailmanager", "-c", str(path), "status", "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        cluster = json.loads(status.stdout)["cluster"]
        assert sum(w["alive"] for w in cluster["workers"]) == 2, cluster
        assert cluster["jobs"]["stalled"] == 0, cluster
    finally:
        stop_time = processes.terminate(workers)
    assert stop_time < 10, f"the workers took {stop_time:.1f} s to stop"
    for log in logs:
        log.close()
    tails = [Path(log.name).read_text()[-1500:] for log in logs]
    assert all(w.returncode == 0 for w in workers if w is not killed), tails
    runs = _runs(engine)
    assert all(finished is not None for _, _, _, finished, _ in runs)
    assert len({worker for *_, worker in runs}) >= 2
    assert all(worker and worker.startswith(leases.HOST) for *_, worker in runs)
    for name in BOXES:
        spans = sorted((s, f) for n, _, s, f, _ in runs if n == name)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and end <= start, f"two syncs of {name} overlapped"
    assert _count(engine, models.Quarantine.id) == 0
    with engine.connect() as conn:
        per_message = dict(
            conn.execute(
                sa.select(models.Message.message_id, sa.func.count(models.MessageLocation.id))
                .join(models.MessageLocation)
                .group_by(models.Message.message_id)
            ).all()
        )
    assert per_message.pop("shared0@acme.fr") == 2
    assert set(per_message.values()) == {1}
    engine.dispose()


def _count(engine: sa.Engine, column: sa.orm.InstrumentedAttribute[int]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count(column))).scalar() or 0)


def test_a_worker_watches_imap_mailboxes_with_idle(
    pg_url: str,
    write_config: ConfigWriter,
    dovecot: DovecotServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", PASSWORD)
    user = DovecotServer.new_user()
    dovecot.append(user, "INBOX", [make(CLIENT, ALICE, "Devis 1", msgid="idle1@acme.fr")])
    cfg = config.load(write_config(pg_url, idle_mailbox_toml(dovecot, user, idle=True)))
    with store.open_database(cfg.database.url, create=True) as factory:
        stop = threading.Event()
        worker = threading.Thread(target=runner.run_worker, args=(cfg, factory, stop))
        worker.start()
        engine = factory.kw["bind"]
        try:
            _wait(lambda: _count(engine, models.Message.id) == 1, "the first sync", 60)
            time.sleep(2)  # wall clock: let the watcher enter IDLE
            dovecot.append(user, "INBOX", [make(CLIENT, ALICE, "Devis 2", msgid="idle2@acme.fr")])
            # The sync interval is an hour: only the watcher can bring it in.
            _wait(lambda: _count(engine, models.Message.id) == 2, "the pushed message", 20)
        finally:
            stop.set()
            worker.join(15)
        assert not worker.is_alive(), "the worker did not stop"
