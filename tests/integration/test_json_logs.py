"""`[logging] format = "json"`: every line `mailmanager run` writes to stderr is one JSON
object — the start-up banner, errors before the configuration or the database is usable,
and the sync lines, which carry the mailbox and the sync run id. `run --once` prints its
human summary on stdout (the command's result, not a log); stderr stays JSON only."""

from __future__ import annotations

import json
import mailbox
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.conftest import REPO, ConfigWriter, new_pg_database
from tests.mailgen import day, make

ALICE = "alice@example.com"
JSON_LOGS = '[logging]\nformat = "json"\nlevel = "INFO"\n'


def _mailbox(root: Path, count: int = 3) -> str:
    box = mailbox.Maildir(str(root), create=True)
    for i in range(count):
        box.add(make("jean@acme.fr", ALICE, f"Devis {i}", msgid=f"json{i}@acme.fr", at=day(i)))
    return f"""
        [[mailboxes]]
        name = "box"
        connector = "maildir"
        path = "{root}"
        owner = "{ALICE}"
        """


def _records(stderr: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object (fails on the first line that is not one)."""
    records = []
    for line in stderr.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line on stderr: {line!r}\n{stderr[-3000:]}")
    return records


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mailmanager", "-c", str(config), *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_run_once_logs_json_lines_with_mailbox_and_run(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'mm.db'}", _mailbox(tmp_path / "box"), JSON_LOGS)
    done = _run(path, "-v", "run", "--once")
    assert done.returncode == 0, done.stderr
    records = _records(done.stderr)
    synced = [r for r in records if r.get("action") == "sync_done"]
    assert synced and synced[0]["mailbox"] == "box" and isinstance(synced[0]["run"], int)
    # The connector's lines inside the sync carry them too, without passing them along.
    inside = [r for r in records if r["logger"].startswith("mailmanager.sync") and "run" in r]
    assert all(r["mailbox"] == "box" for r in inside)
    assert "database: 3 messages" in done.stdout  # the human summary, on stdout


def test_start_up_errors_are_json_lines(tmp_path: Path, write_config: ConfigWriter) -> None:
    broken = write_config(
        f"sqlite:///{tmp_path / 'mm.db'}", "", JSON_LOGS + "[sync]\nintervall = 10\n", "bad.toml"
    )
    done = _run(broken, "run")
    assert done.returncode == 2
    (record,) = _records(done.stderr)
    assert record["level"] == "error" and "intervall" in record["message"]
    assert record["exit_code"] == 2

    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    path = write_config(unreachable, "", JSON_LOGS, "nodb.toml")
    done = _run(path, "run")
    assert done.returncode == 3, done.stderr
    records = _records(done.stderr)
    assert records[-1]["level"] == "error" and records[-1]["exit_code"] == 3


@pytest.fixture
def pg_url() -> Iterator[str]:
    with new_pg_database("mm_jsonlogs") as url:
        yield url


def test_a_procrastinate_worker_logs_json_lines(
    pg_url: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    path = write_config(pg_url, _mailbox(tmp_path / "box"), JSON_LOGS)
    argv = [sys.executable, "-m", "mailmanager", "-c", str(path), "run"]
    log = (tmp_path / "worker.log").open("w+")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log)
    engine = sa.create_engine(pg_url)

    def synced() -> bool:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("sync_runs"):
                return False
            return bool(
                conn.execute(
                    sa.select(sa.func.count(models.SyncRun.id)).where(models.SyncRun.status == "ok")
                ).scalar()
            )

    try:
        deadline = time.monotonic() + 60  # wall clock: bounds the wait on the worker
        while not synced():
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]  # wall clock
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        engine.dispose()
    log.seek(0)
    records = _records(log.read())
    assert records[0]["action"] == "start" and records[0]["engine"] == "procrastinate"
    done = [r for r in records if r.get("action") == "sync_done"]
    assert done and done[0]["mailbox"] == "box" and isinstance(done[0]["run"], int)
    assert any(r.get("action") == "worker_stop" for r in records)
    assert proc.returncode == 0
