"""Finished procrastinate jobs do not pile up (issue #15): the hourly `remove_old_jobs` task
of `mailmanager run` deletes, with their events, the jobs that ended `[workers]
keep_jobs_hours` ago (the failed ones a week at least: `status` counts them), and keeps the
recent ones and those still to do or running, however old. Each job's age is set back from
the database's own now(), never from the test's clock."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from procrastinate import exceptions as pq_exceptions

from mailmanager import config
from mailmanager.config import workers as workers_config
from mailmanager.db import store
from mailmanager.testing import processes
from mailmanager.workers import runner, tasks
from tests.conftest import REPO, ConfigWriter, new_pg_database
from tests.integration.test_workers_status import _wait

CLEANUP = "mailmanager.remove_old_jobs"
KEEP = 6  # the test's keep_jobs_hours: a job ended 7 hours ago goes (it stays by default)
WEEK = tasks.FAILED_KEEP_HOURS
# status, hours since its last event (its end; its start or defer while running or queued),
# kept by the cleanup
JOBS = [
    ("succeeded", 2, True),
    ("succeeded", KEEP - 1, True),
    ("succeeded", KEEP + 1, False),
    ("succeeded", 500, False),
    ("cancelled", KEEP + 1, False),
    ("aborted", KEEP + 1, False),
    ("failed", KEEP + 1, True),
    ("failed", WEEK - 1, True),
    ("failed", WEEK + 1, False),
    ("todo", 500, True),
    ("doing", 500, True),
]
_LAST_EVENT = {"doing": "started", "todo": "deferred"}  # else the status's own event


@pytest.fixture
def pg_url() -> Iterator[str]:
    with new_pg_database("mm_workers_cleanup") as url:
        yield url


def _insert_job(conn: sa.Connection, status: str, hours: int, worker: int) -> int:
    """A job of `status` on a queue no worker takes, deferred 1,000 hours before its last
    event, which is `hours` old; a running one runs on `worker`."""
    job_id: int = conn.execute(
        sa.text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id) "
            "VALUES ('elsewhere', 'mailmanager.example', "
            "CAST(:status AS procrastinate_job_status), :worker) RETURNING id"
        ),
        {"status": status, "worker": worker if status == "doing" else None},
    ).scalar_one()
    # A queued job's insert logs a "deferred" event dated now: replaced by the aged ones.
    conn.execute(sa.text("DELETE FROM procrastinate_events WHERE job_id = :id"), {"id": job_id})
    conn.execute(
        sa.text(
            "INSERT INTO procrastinate_events (job_id, type, at) VALUES "
            "(:id, 'deferred', now() - make_interval(hours => :hours + 1000)), "
            "(:id, CAST(:last AS procrastinate_job_event_type), "
            "now() - make_interval(hours => :hours))"
        ),
        {"id": job_id, "hours": hours, "last": _LAST_EVENT.get(status, status)},
    )
    return job_id


def test_keep_jobs_hours_defaults_to_72_and_is_at_least_1(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    assert workers_config.WorkersConfig().keep_jobs_hours == 72
    example = (REPO / "config.example.toml").read_text(encoding="utf-8")
    assert "\n# keep_jobs_hours = 72 " in example
    url = f"sqlite:///{tmp_path / 'mm.db'}"
    cfg = config.load(write_config(url, "", "[workers]\nkeep_jobs_hours = 1\n"))
    assert cfg.workers.keep_jobs_hours == 1
    for value, problem, fix in [
        ("0", "0 is too small", "use an integer >= 1"),
        ('"72"', "expected an integer", ""),
    ]:
        with pytest.raises(config.ConfigFileError) as info:
            config.load(write_config(url, "", f"[workers]\nkeep_jobs_hours = {value}\n"))
        (error,) = info.value.errors
        assert error.key == "workers.keep_jobs_hours"
        assert problem in error.problem and fix in error.fix, str(error)


@pytest.mark.postgres
def test_a_worker_removes_the_jobs_finished_keep_jobs_hours_ago(
    pg_url: str, tmp_path: Path, write_config: ConfigWriter
) -> None:
    path = write_config(pg_url, "", f"[workers]\nkeep_jobs_hours = {KEEP}\n")
    cfg = config.load(path)
    with store.open_database(pg_url, create=True) as factory:
        app = tasks.build_app(cfg, factory, threading.Event())
        engine = factory.kw["bind"]
        runner.ensure_schema(app, engine)
        # Hourly, at most one queued across the cluster.
        periodic = app.periodic_registry.periodic_tasks.values()
        assert [p.cron for p in periodic if p.task.name == CLEANUP] == [tasks.cron_every(3600)]
        assert app.tasks[CLEANUP].queueing_lock == CLEANUP

        def scalar(sql: str) -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(sql)).scalar() or 0)

        argv = [sys.executable, "-m", "mailmanager", "-c", str(path), "run"]
        with (tmp_path / "worker.log").open("w") as log:
            worker = subprocess.Popen(argv, cwd=REPO, stderr=log)
            try:
                _wait(lambda: scalar("SELECT max(id) FROM procrastinate_workers"), "a worker", 60)
                with engine.begin() as conn:
                    live = scalar("SELECT max(id) FROM procrastinate_workers")
                    ids = [_insert_job(conn, status, h, live) for status, h, _ in JOBS]
                # As the cron at the hour (a tick queued already does as well).
                with app.open(), contextlib.suppress(pq_exceptions.AlreadyEnqueued):
                    app.tasks[CLEANUP].defer(timestamp=0)
                done = (
                    f"SELECT count(*) FILTER (WHERE status = 'succeeded') > 0 AND count(*) "
                    f"FILTER (WHERE status IN ('todo', 'doing')) = 0 FROM procrastinate_jobs "
                    f"WHERE task_name = '{CLEANUP}'"
                )
                _wait(lambda: scalar(done), "the cleanup ran", 60)
            finally:
                processes.terminate([worker])
        assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
        with engine.connect() as conn:
            left = set(conn.execute(sa.text("SELECT id FROM procrastinate_jobs")).scalars())
    kept = {(status, h): job in left for (status, h, _), job in zip(JOBS, ids, strict=True)}
    assert kept == {(status, h): keep for status, h, keep in JOBS}
