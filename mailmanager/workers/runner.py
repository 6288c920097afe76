"""Run one procrastinate worker until SIGTERM/SIGINT (see the package docstring).

procrastinate stops a worker whose database connection is lost; `run_worker` then starts
it again (back-off 1 s doubling to `MAX_RESTART_DELAY`), so a PostgreSQL restart does not
end the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import procrastinate
from procrastinate import exceptions as pq_exceptions
from procrastinate import worker as pq_worker
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import leases, models, store
from mailmanager.sync import watch
from mailmanager.workers import hosts, tasks

log = logging.getLogger(__name__)

GRACE = 8.0  # seconds the running jobs get to finish after SIGTERM (the whole stop < 10 s)
MAX_RESTART_DELAY = 15.0  # longest wait between two starts while the database is away
# Seconds between two looks for jobs without a notification. A new job is announced (LISTEN/
# NOTIFY) and fetched at once; a polling worker finds only the jobs nothing announces: a
# sync that waited for its mailbox's lock, a dead worker's job put back. 5 s (it was 2 s)
# keeps those prompt at 12 looks a minute per worker when idle.
FETCH_POLLING = 5.0
FORGET_TIMEOUT = 1.0  # seconds a stopping worker waits to delete its `worker_hosts` rows


def has_schema(engine: Engine) -> bool:
    with engine.connect() as conn:
        found = conn.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar()
    return found is not None


def ensure_schema(app: procrastinate.App, engine: Engine) -> bool:
    """Apply procrastinate's schema unless present, under the schema advisory lock (so
    workers starting together do not race); True when it was applied."""
    if has_schema(engine):
        return False
    with store.schema_lock(engine):
        if has_schema(engine):
            return False
        with app.open():
            app.schema_manager.apply_schema()
    log.info("procrastinate schema applied", extra={"action": "worker_schema"})
    return True


def run_worker(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int | None:
    """Run a worker until SIGTERM/SIGINT (or `stop`); return the signal, None for `stop`."""
    stop = stop or threading.Event()
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # procrastinate logs every job's start and end at info: keep its warnings only.
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    app = tasks.build_app(cfg, factory, stop)
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    ensure_schema(app, bind)
    received: list[int] = []
    started = models.utcnow()  # this process's start, as `status` shows it
    first = threading.Event()  # set at the first start (`on_ready` is called once)

    async def serve() -> None:
        """Run procrastinate's worker(s) until `stop` or until they end on their own (the
        database went away: procrastinate stops a worker whose listener lost it)."""
        async with app.open_async():
            common: dict[str, Any] = {
                "install_signal_handlers": False,
                "update_heartbeat_interval": cfg.workers.heartbeat,
                "stalled_worker_timeout": cfg.workers.stalled_seconds,
                "shutdown_graceful_timeout": GRACE,
                "fetch_job_polling_interval": FETCH_POLLING,
            }
            workers = [
                pq_worker.Worker(
                    app,
                    name=leases.WORKER_ID,
                    queues=["sync", "default"],
                    concurrency=cfg.workers.concurrency,
                    **common,
                )
            ]
            watchable = sum(1 for mb in cfg.mailboxes if watch.may_watch(mb))
            if watchable:  # the watchers hold their slots: never the syncs' ones
                workers.append(
                    pq_worker.Worker(
                        app,
                        name=f"{leases.WORKER_ID}:watch",
                        queues=[tasks.WATCH_QUEUE],
                        concurrency=watchable,
                        **common,
                    )
                )
            # Worker.run is procrastinate's `run_worker_async` without the App building it: the
            # worker ids it registers are ours to read (`_record_hosts`).
            runs = [w.run() for w in workers]  # type: ignore[no-untyped-call]
            worker = asyncio.ensure_future(asyncio.gather(*runs))
            recorded: set[int] = set()
            try:
                # Sync (and watch) at once, as the embedded daemon does, not at the next tick.
                with contextlib.suppress(pq_exceptions.AlreadyEnqueued):
                    await app.tasks[tasks.SYNC_TICK].defer_async(timestamp=int(time.time()))
                log.info(
                    "worker started",
                    extra={
                        "action": "worker_start",
                        "worker": leases.WORKER_ID,
                        "engine": "procrastinate",
                    },
                )
                if not first.is_set():
                    first.set()
                    if on_ready is not None:
                        on_ready()
                while not stop.is_set() and not worker.done():
                    await _record_hosts(workers, recorded)
                    await asyncio.sleep(0.5)
            finally:
                worker.cancel()  # procrastinate stops gracefully: running jobs get GRACE s
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
                # In a thread of its own, waited for a bounded time: a database that does
                # not answer must not hold the stop (SIGTERM: < 10 s) or the restart.
                forget = threading.Thread(target=hosts.forget, args=(factory, recorded))
                forget.daemon = True
                forget.start()
                await asyncio.to_thread(forget.join, FORGET_TIMEOUT)

    async def _record_hosts(workers: list[pq_worker.Worker], recorded: set[int]) -> None:
        """Write the host row of each worker registered since the last call."""
        for w in workers:
            if w.worker_id is not None and w.worker_id not in recorded:
                recorded.add(w.worker_id)
                queues = list(w.queues or [])
                await asyncio.to_thread(
                    hosts.record, factory, w.worker_id, w.worker_name or "", queues, started
                )

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            log.info("stopping", extra={"action": "signal", "signal": signum})
            received.append(signum)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
        delay = 1.0
        while not stop.is_set():
            started = loop.time()
            try:
                await serve()
            except Exception as exc:  # the database is unreachable (at start or restart)
                log.warning(
                    "worker cannot reach the database",
                    extra={"action": "worker_db_error", "error": f"{type(exc).__name__}: {exc}"},
                )
            if stop.is_set():
                break
            if loop.time() - started > 60:
                delay = 1.0  # it ran a while: a new outage starts the back-off again
            log.warning(
                "worker ended without being asked (database lost?): starting it again",
                extra={"action": "worker_restart", "worker": leases.WORKER_ID, "delay": delay},
            )
            until = loop.time() + delay
            while not stop.is_set() and loop.time() < until:
                await asyncio.sleep(0.2)
            delay = min(delay * 2, MAX_RESTART_DELAY)
        log.info("worker stopped", extra={"action": "worker_stop", "worker": leases.WORKER_ID})

    asyncio.run(main())
    return received[0] if received else None
