"""The jobs of a procrastinate worker (see the package docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from datetime import UTC, datetime
from typing import Any

import procrastinate
import psycopg
from procrastinate import builtin_tasks as pq_builtin_tasks
from procrastinate import exceptions as pq_exceptions
from procrastinate import job_context as pq_job_context
from procrastinate import jobs as pq_jobs
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager import daemon
from mailmanager.sync import engine as sync
from mailmanager.sync import watch

log = logging.getLogger(__name__)

SYNC_TICK = "mailmanager.sync_tick"
WATCH_QUEUE = "watch"  # the watchers' jobs (long-running): worked by their own slots
RETRIED_PRIORITY = 100  # a dead worker's job goes before the queued ones (default 0)
FAILED_KEEP_HOURS = 7 * 24  # a failed job stays a week at least: `status` counts them


def conninfo(engine: Engine) -> str:
    """The libpq connection string of the SQLAlchemy engine's database (password kept)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def cron_every(seconds: int) -> str:
    """A cron line firing at least every `seconds` (procrastinate's 6th field is seconds):
    the interval is rounded down to one that divides the minute, hour or day."""

    def step(value: int, whole: int) -> int:
        return max(d for d in range(1, whole + 1) if whole % d == 0 and d <= max(1, value))

    if seconds < 60:
        return f"* * * * * */{step(seconds, 60)}"
    if seconds < 3600:
        return f"*/{step(seconds // 60, 60)} * * * *"
    if seconds < 86400:
        return f"0 */{step(seconds // 3600, 24)} * * *"
    return "0 0 * * *"


def _autocommit(conn: Any) -> Any:
    """Each procrastinate query is one statement (a function call): in autocommit it is one
    round trip instead of three (BEGIN, it, COMMIT), a third of a worker's idle statements.

    The pool's `configure` callback, for both of procrastinate's pools: the async one awaits
    what it returns; the sync one (`App.open`, as `runner.ensure_schema` uses) does not."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn.set_autocommit(True)
    conn.autocommit = True
    return None


def build_app(
    cfg: config_mod.Config, factory: sessionmaker[Session], stop: threading.Event
) -> procrastinate.App:
    """A procrastinate App on the configured PostgreSQL database with every job declared."""
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    connector = procrastinate.PsycopgConnector(conninfo=conninfo(bind), configure=_autocommit)
    app = procrastinate.App(connector=connector)
    syncer = sync.Syncer(cfg, factory, stop=stop)

    @app.task(name="mailmanager.sync_mailbox", queue="sync")
    def sync_mailbox(mailbox: str) -> None:
        # procrastinate's lock guarantees no other job of this mailbox is running.
        daemon.sync_job(syncer, mailbox, takeover=True)

    def sync_soon(name: str) -> Any:
        # At most one sync of a mailbox runs (lock) and one more waits (queueing lock).
        return sync_mailbox.configure(lock=f"mailbox:{name}", queueing_lock=f"sync:{name}")

    @app.task(name="mailmanager.watch_mailbox", queue=WATCH_QUEUE)
    def watch_mailbox(mailbox: str) -> None:
        # Runs until the worker stops: IDLE on the mailbox, a sync queued on each change.
        connector = watch.watchable(cfg, cfg.mailbox(mailbox), factory)
        if connector is None:
            return

        def wake(name: str) -> None:
            with contextlib.suppress(pq_exceptions.AlreadyEnqueued):
                sync_soon(name).defer(mailbox=name)

        watch.Watcher(mailbox, connector, wake, stop).run()

    @app.periodic(cron=cron_every(cfg.sync.interval), periodic_id="sync")
    @app.task(name=SYNC_TICK, queueing_lock=SYNC_TICK)
    async def sync_tick(timestamp: int) -> None:
        for mb in cfg.mailboxes:
            if not mb.enabled:
                continue
            with contextlib.suppress(pq_exceptions.AlreadyEnqueued):
                await sync_soon(mb.name).defer_async(mailbox=mb.name)
            if watch.may_watch(mb):  # a watcher per mailbox, restarted where it stopped
                with contextlib.suppress(pq_exceptions.AlreadyEnqueued):
                    await watch_mailbox.configure(
                        lock=f"watch:{mb.name}", queueing_lock=f"watch:{mb.name}"
                    ).defer_async(mailbox=mb.name)

    n = cfg.notifications
    timers: list[tuple[str, Any, int]] = []
    if n.enabled:
        timers.append(("outbox", lambda: daemon.flush_job(cfg, factory, stop), n.flush_interval))
        timers.append(("digests", lambda: daemon.notify_job(cfg, factory, stop), n.interval))
        if any(u.weekly_report for u in cfg.users):
            timers.append(("weekly", lambda: daemon.weekly_job(cfg, factory), 3600))
    if cfg.reminders.enabled:
        timers.append(("reminders", lambda: daemon.evaluate_job(cfg, factory), n.evaluate_interval))
    if any(v is not None for v in dataclasses.astuple(cfg.retention)):
        timers.append(("retention", lambda: daemon.retention_job(cfg, factory), 86400))
    hooks = cfg.webhooks.interval
    timers.append(("webhooks", lambda: daemon.webhooks_job(cfg, factory, stop), hooks))
    for name, job, seconds in timers:
        _periodic(app, name, job, seconds)

    # A dead worker's jobs wait at most `stalled_seconds` and half of it again.
    stalled_after = cfg.workers.stalled_seconds

    @app.periodic(cron=cron_every(max(1, stalled_after // 2)), periodic_id="retry_stalled")
    @app.task(name="mailmanager.retry_stalled_jobs", queueing_lock="mailmanager.retry_stalled")
    async def retry_stalled_jobs(timestamp: int) -> None:
        stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after)
        for job in stalled:
            assert job.id is not None
            log.warning(
                "retrying the job of a dead worker",
                extra={"action": "job_stalled", "job": job.id, "task": job.task_name},
            )
            try:
                await app.job_manager.retry_job_by_id_async(
                    job.id, retry_at=datetime.now(UTC), priority=RETRIED_PRIORITY
                )
            except pq_exceptions.UniqueViolation:
                # The same work is queued already (its queueing lock): that job does it.
                await app.job_manager.finish_job_by_id_async(
                    job.id, status=pq_jobs.Status.FAILED, delete_job=False
                )

    # Every job leaves its row (and its events) when it ends: a webhooks tick every 10 s
    # alone is 8,640 a day. procrastinate's builtin deletes those finished for `keep` hours.
    keep = cfg.workers.keep_jobs_hours

    @app.periodic(cron=cron_every(3600), periodic_id="remove_old_jobs")
    @app.task(
        name="mailmanager.remove_old_jobs",
        queueing_lock="mailmanager.remove_old_jobs",
        pass_context=True,
    )
    async def remove_old_jobs(context: pq_job_context.JobContext, timestamp: int) -> None:
        remove = pq_builtin_tasks.remove_old_jobs
        await remove(context, max_hours=keep, remove_cancelled=True, remove_aborted=True)
        await remove(context, max_hours=max(keep, FAILED_KEEP_HOURS), remove_failed=True)

    return app


def _periodic(app: procrastinate.App, name: str, job: Any, seconds: int) -> None:
    """Declare `job` (no arguments) as a task run once per tick across the cluster."""

    def run(timestamp: int) -> None:
        job()

    task = app.task(name=f"mailmanager.{name}", queueing_lock=f"mailmanager.{name}")(run)
    app.periodic(cron=cron_every(seconds), periodic_id=name)(task)
