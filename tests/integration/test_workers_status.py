"""`mailmanager status` shows the procrastinate workers (issue #15): two `mailmanager run`
processes on PostgreSQL are listed with their host, pid and start; one killed with -9 is
shown stale once its heartbeats stop for `[workers] stalled_after`; one stopped with SIGTERM
leaves the list; a worker starting later prunes the dead one (procrastinate) and its host
row with it. Short heartbeats (1 s, dead after 3 s) keep the test short."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailmanager import config
from mailmanager.config import workers as workers_config
from mailmanager.db import models, store
from mailmanager.services import cluster
from mailmanager.testing import processes
from mailmanager.workers import hosts
from tests.conftest import REPO, ConfigWriter, new_pg_database

STALLED_AFTER = 3


@pytest.fixture
def pg_url() -> Iterator[str]:
    with new_pg_database("mm_workers_status") as url:
        yield url


def _wait(predicate: Callable[[], Any], what: str, timeout: float) -> float:
    started = time.monotonic()  # wall clock: bounds and measures the waits on the workers
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting until {what}"
        time.sleep(0.2)
    return time.monotonic() - started  # wall clock: see above


def test_a_worker_is_dead_after_three_heartbeats_at_least(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    url = f"sqlite:///{tmp_path / 'mm.db'}"
    cfg = config.load(write_config(url, "", "[workers]\nheartbeat = 10\nstalled_after = 5\n"))
    assert (cfg.workers.heartbeat, cfg.workers.stalled_seconds) == (10, 30)
    defaults = workers_config.WorkersConfig()
    assert (defaults.heartbeat, defaults.stalled_seconds) == (5, 20)


def test_a_host_row_that_cannot_be_written_never_stops_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No procrastinate tables here (SQLite): the write fails, is logged, and returns.
    with store.open_database(f"sqlite:///{tmp_path / 'mm.db'}", create=True) as factory:
        started = datetime(2026, 12, 8, 8, 30, tzinfo=UTC)  # any instant: the write fails
        hosts.record(factory, 1, "h:1", ["sync"], started)
        hosts.forget(factory, [1])
    assert "could not record the worker's host" in caplog.text


@pytest.mark.postgres
def test_status_lists_the_workers_with_host_and_pid_and_shows_a_killed_one_stale(
    pg_url: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    (tmp_path / "box" / "new").mkdir(parents=True)
    mailbox_toml = f"""
        [[mailboxes]]
        name = "box"
        connector = "maildir"
        path = "{tmp_path / "box"}"
        owner = "alice@example.com"
        """
    extra = f"[workers]\nheartbeat = 1\nstalled_after = {STALLED_AFTER}\n"
    path = write_config(pg_url, mailbox_toml, extra)
    argv = [sys.executable, "-m", "mailmanager", "-c", str(path), "run"]
    logs = [(tmp_path / f"worker{i}.log").open("w") for i in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    engine = sa.create_engine(pg_url)
    factory = store.session_factory(engine)

    def workers() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("procrastinate_workers"):
                return []
        with store.session_scope(factory) as s:
            now = models.utcnow()  # wall clock: compared with the live workers' heartbeats
            data = cluster.cluster_status(s, now, STALLED_AFTER)
        return list(data["workers"] or [])

    def by_pid() -> dict[int | None, dict[str, Any]]:
        return {w["pid"]: w for w in workers()}

    def status(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mailmanager", "-c", str(path), "status", *args],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout

    try:
        procs += [subprocess.Popen(argv, cwd=REPO, stderr=log) for log in logs[:2]]
        pids = {p.pid for p in procs}
        _wait(lambda: set(by_pid()) == pids, "both workers are listed", 60)
        listed = json.loads(status("--json"))["cluster"]["workers"]
        assert {w["pid"] for w in listed} == pids
        for w in listed:
            assert w["host"] == socket.gethostname()
            assert w["state"] == "alive" and w["alive"]
            assert w["name"] == f"{socket.gethostname()}:{w['pid']}"
            assert w["queues"] == ["sync", "default"]
            assert w["started_at"] and w["last_heartbeat"]
        text = status()
        for pid in pids:
            assert f"host {socket.gethostname()}, pid {pid}, started " in text, text

        victim, survivor = procs
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        took = _wait(
            lambda: by_pid()[victim.pid]["state"] == "stale",
            "the killed worker is shown stale",
            STALLED_AFTER + 10,
        )
        print(f"shown stale {took:.1f} s after kill -9")
        assert by_pid()[survivor.pid]["state"] == "alive"
        assert f"pid {victim.pid}, started " in status() and ": stale, last heartbeat " in status()

        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(15) == 0
        assert set(by_pid()) == {victim.pid}, "a clean stop leaves the list"

        procs.append(subprocess.Popen(argv, cwd=REPO, stderr=logs[2]))
        # Its start prunes the dead worker (procrastinate) and then its host row (ours).
        _wait(lambda: set(by_pid()) == {procs[2].pid}, "the dead worker is pruned", 60)
    finally:
        processes.terminate(procs)
        for log in logs:
            log.close()
        engine.dispose()
    assert procs[2].returncode == 0
    with store.session_scope(factory) as s:
        assert s.scalar(sa.select(sa.func.count(models.WorkerHost.id))) == 0
