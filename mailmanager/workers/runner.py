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
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import leases, store
from mailmanager.sync import watch
from mailmanager.workers import tasks

log = logging.getLogger(__name__)

GRACE = 8.0  # seconds the running jobs get to finish after SIGTERM (the whole stop < 10 s)
MAX_RESTART_DELAY = 15.0  # longest wait between two starts while the database is away


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
    first = threading.Event()  # set at the first start (`on_ready` is called once)

    async def serve() -> None:
        """Run procrastinate's worker(s) until `stop` or until they end on their own (the
        database went away: procrastinate stops a worker whose listener lost it)."""
        async with app.open_async():
            common: dict[str, Any] = {
                "install_signal_handlers": False,
                "update_heartbeat_interval": tasks.HEARTBEAT,
                "stalled_worker_timeout": tasks.STALLED_AFTER,
                "shutdown_graceful_timeout": GRACE,
                "fetch_job_polling_interval": 2.0,
            }
            runs = [
                app.run_worker_async(
                    name=leases.WORKER_ID,
                    queues=["sync", "default"],
                    concurrency=cfg.workers.concurrency,
                    **common,
                )
            ]
            watchable = sum(1 for mb in cfg.mailboxes if watch.may_watch(mb))
            if watchable:  # the watchers hold their slots: never the syncs' ones
                runs.append(
                    app.run_worker_async(
                        name=f"{leases.WORKER_ID}:watch",
                        queues=[tasks.WATCH_QUEUE],
                        concurrency=watchable,
                        **common,
                    )
                )
            worker = asyncio.ensure_future(asyncio.gather(*runs))
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
                    await asyncio.sleep(0.5)
            finally:
                worker.cancel()  # procrastinate stops gracefully: running jobs get GRACE s
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker

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
