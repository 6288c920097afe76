"""The daemon: APScheduler timers that call idempotent jobs. No business logic lives here.

Timers: sync per mailbox (`[sync] interval`), reminder evaluation
(`[notifications] evaluate_interval`), digest slots (`[notifications] interval`: each tick
queues the digests whose slot is open, see `notify`), the outbox flush
(`[notifications] flush_interval`) and webhook delivery (`[webhooks] interval`). Every job
is safe to run twice or concurrently with another process: the database decides (leases,
unique keys, the outbox's claims).

Each process runs a BackgroundScheduler with the in-memory job store (APScheduler's docs
forbid sharing a job store between schedulers); all coordination between processes goes
through the database (mailbox leases, unique keys). Jobs use `max_instances=1`,
`coalesce=True` and an explicit misfire grace, and SIGTERM/SIGINT let the running batch
finish and commit before the process exits.

Push: a mailbox whose connector can wait for changes (IMAP with `idle = true`) also gets a
watcher thread (`watch`) that runs its sync job at once when the provider reports a change;
the timer keeps running as a safety net.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import models, store, tokens
from mailmanager.reminders import evaluation as reminders
from mailmanager.sync import engine as sync
from mailmanager.sync import watch

log = logging.getLogger(__name__)


def run_once(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    progress: sync.Progress | None = None,
    stop: threading.Event | None = None,
    only: str | None = None,
) -> list[sync.SyncReport]:
    """One full pass: sync every enabled mailbox (or just `only`) once, in order."""
    syncer = sync.Syncer(cfg, factory, progress=progress, stop=stop)
    reports = []
    for mb in cfg.mailboxes:
        if (only is not None and mb.name != only) or (only is None and not mb.enabled):
            continue
        if syncer.stop.is_set():
            break
        try:
            reports.append(syncer.sync(mb.name))
        except sync.LeaseHeldError as exc:
            reports.append(sync.SyncReport(mailbox=mb.name, status="skipped", error=str(exc)))
    return reports


@dataclass
class PassReport:
    """What `run --once` did after syncing: reminder evaluation, digests, outbox."""

    evaluated_threads: int = 0
    reminder_changes: dict[str, int] = field(default_factory=dict)
    digests: int = 0
    immediate: int = 0
    sent: int = 0
    outbox_error: str | None = None
    webhooks_delivered: int = 0


def follow_up_once(
    cfg: config_mod.Config, factory: sessionmaker[Session], stop: threading.Event
) -> PassReport:
    """The jobs after a sync, once each: evaluate reminders, queue the digests whose slot is
    open, flush the outbox, deliver the webhooks. Errors propagate (the caller is the job
    boundary)."""
    from mailmanager.notify import notifier as notify
    from mailmanager.notify import outbox  # mail templates and SMTP: only when sending

    report = PassReport()
    if cfg.reminders.enabled:
        with store.session_scope(factory) as s:
            store.write_first(s)
            evaluation = reminders.evaluate(s, cfg, models.utcnow())
        report.evaluated_threads = evaluation.threads
        report.reminder_changes = dict(evaluation.counts)
    if cfg.notifications.enabled:
        queued = notify.run(cfg, factory, models.utcnow())
        report.digests, report.immediate = len(queued.digests), len(queued.immediate)
        flushed = outbox.flush(cfg, factory, stop=stop)
        report.sent, report.outbox_error = len(flushed.sent), flushed.error
    from mailmanager.notify import webhooks

    try:
        report.webhooks_delivered = len(webhooks.deliver(cfg, factory, stop=stop).delivered)
    except tokens.SecretKeyError as exc:  # the other jobs' results still count
        log.error("webhooks not delivered: %s", exc, extra={"action": "webhooks_no_key"})
    return report


def sync_job(syncer: sync.Syncer, name: str, takeover: bool = False) -> None:
    """Sync mailbox `name` once (the embedded timers and the procrastinate task both call
    this); `takeover`: see `sync.Syncer.sync`."""
    try:
        syncer.sync(name, takeover=takeover)
    except sync.LeaseHeldError:
        log.info("mailbox busy elsewhere", extra={"action": "sync_skipped", "mailbox": name})
    except Exception:  # the job boundary: log and let the next run retry
        log.exception("sync job failed", extra={"action": "sync_crash", "mailbox": name})


def evaluate_job(cfg: config_mod.Config, factory: sessionmaker[Session]) -> None:
    """Create and cancel reminders over every thread (the rules are in `reminders`)."""
    try:
        with store.session_scope(factory) as s:
            store.write_first(s)
            reminders.evaluate(s, cfg, models.utcnow())
    except Exception:  # the job boundary
        log.exception("reminder evaluation failed", extra={"action": "evaluate_crash"})


def notify_job(
    cfg: config_mod.Config, factory: sessionmaker[Session], stop: threading.Event
) -> None:
    """Queue the digests whose slot is open (and immediate mails), then send them."""
    from mailmanager.notify import notifier as notify
    from mailmanager.notify import outbox

    try:
        report = notify.run(cfg, factory, models.utcnow())
        if report.digests or report.immediate:
            outbox.flush(cfg, factory, stop=stop)
    except Exception:  # the job boundary
        log.exception("notification job failed", extra={"action": "notify_crash"})


def flush_job(
    cfg: config_mod.Config, factory: sessionmaker[Session], stop: threading.Event
) -> None:
    """Send what the outbox holds that is due (retries included)."""
    from mailmanager.notify import outbox

    try:
        outbox.flush(cfg, factory, stop=stop)
    except Exception:  # the job boundary
        log.exception("outbox flush failed", extra={"action": "flush_crash"})


def webhooks_job(
    cfg: config_mod.Config, factory: sessionmaker[Session], stop: threading.Event
) -> None:
    """Deliver the webhook events that are due (retries included; see `notify.webhooks`),
    then drop the events older than `[webhooks] keep_days` that are done."""
    from mailmanager.notify import webhooks
    from mailmanager.services import webhooks as subscriptions

    try:
        webhooks.deliver(cfg, factory, stop=stop)
        with store.session_scope(factory) as s:
            subscriptions.prune(s, models.utcnow(), cfg.webhooks.keep_days)
    except Exception:  # the job boundary
        log.exception("webhook delivery failed", extra={"action": "webhooks_crash"})


def retention_job(cfg: config_mod.Config, factory: sessionmaker[Session]) -> None:
    """Apply `[retention]` (daily; see `services.privacy.apply_retention`)."""
    from mailmanager.services import privacy

    try:
        with store.session_scope(factory) as s:
            store.write_first(s)
            privacy.apply_retention(s, cfg, models.utcnow())
    except Exception:  # the job boundary
        log.exception("retention failed", extra={"action": "retention_crash"})


def weekly_job(cfg: config_mod.Config, factory: sessionmaker[Session]) -> None:
    """Queue the weekly activity reports that are due (hourly; see `services.weekly`)."""
    from mailmanager.services import weekly

    try:
        weekly.send_weekly_reports(factory, cfg, models.utcnow())
    except Exception:  # the job boundary
        log.exception("weekly report failed", extra={"action": "weekly_crash"})


def _add_notification_jobs(
    scheduler: Any,
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    stop: threading.Event,
    now: datetime,
) -> None:
    n = cfg.notifications
    jobs: list[tuple[str, Callable[..., None], tuple[Any, ...], int]] = []
    if n.enabled:
        jobs.append(("notify:outbox", flush_job, (cfg, factory, stop), n.flush_interval))
        jobs.append(("notify:digests", notify_job, (cfg, factory, stop), n.interval))
        if any(u.weekly_report for u in cfg.users):
            jobs.append(("notify:weekly", weekly_job, (cfg, factory), 3600))
    if cfg.reminders.enabled:
        jobs.append(("reminders:evaluate", evaluate_job, (cfg, factory), n.evaluate_interval))
    if any(v is not None for v in dataclasses.astuple(cfg.retention)):  # daily, from start
        jobs.append(("privacy:retention", retention_job, (cfg, factory), 86400))
    jobs.append(("notify:webhooks", webhooks_job, (cfg, factory, stop), cfg.webhooks.interval))
    for i, (job_id, func, args, seconds) in enumerate(jobs):
        scheduler.add_job(
            func,
            "interval",
            args=args,
            id=job_id,
            seconds=seconds,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(60, seconds),
            next_run_time=now + timedelta(seconds=2 + 2 * i),  # after the syncs start
            replace_existing=True,
        )


class _SyncNow:
    """`wake(name)`: run mailbox `name`'s sync job now. The job has max_instances=1, so a wake
    while that sync runs is dropped by the scheduler; it is kept here and honoured when the
    running sync ends (the change may have come after it read INBOX).

    `close()` before the scheduler shuts down: `shutdown(wait=True)` holds APScheduler's job
    store lock while it waits for the running jobs, and a job ending with a wake pending
    would wait for that lock in `modify_job` for ever."""

    def __init__(self, scheduler: Any) -> None:
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES

        self.scheduler, self.busy_code = scheduler, EVENT_JOB_MAX_INSTANCES
        self._lock, self._pending = threading.Lock(), set[str]()
        self._closed = False
        mask = EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
        scheduler.add_listener(self._on_event, mask)

    def __call__(self, name: str) -> None:
        log.info("sync now", extra={"action": "sync_wake", "mailbox": name})
        self._run_now(f"sync:{name}")

    def close(self) -> None:
        """No more wakes: waits for one under way, then drops those still to come."""
        with self._lock:
            self._closed = True

    def _run_now(self, job_id: str) -> None:
        with self._lock:
            self._modify(job_id)

    def _modify(self, job_id: str) -> None:  # under self._lock
        if not self._closed:
            self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))

    def _on_event(self, event: Any) -> None:
        job_id = str(event.job_id)
        if not job_id.startswith("sync:"):
            return
        with self._lock:
            if event.code == self.busy_code:
                self._pending.add(job_id)
                return
            if job_id not in self._pending:
                return
            self._pending.discard(job_id)
            self._modify(job_id)


def run_forever(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int | None:
    """Run the timers until SIGTERM/SIGINT (or `stop` is set); return the signal that
    stopped them, None when `stop` did (the caller exits 130 after a SIGINT)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    stop = stop or threading.Event()
    syncer = sync.Syncer(cfg, factory, stop=stop)
    scheduler = BackgroundScheduler(timezone="UTC")
    interval = cfg.sync.interval
    now = datetime.now(UTC)
    for mb in cfg.mailboxes:
        if not mb.enabled:
            continue
        scheduler.add_job(
            sync_job,
            "interval",
            args=(syncer, mb.name),
            id=f"sync:{mb.name}",
            seconds=interval,
            jitter=max(1, interval // 10),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(60, interval),
            # The first pass starts at once, staggered so several workers don't run in step.
            next_run_time=now + timedelta(seconds=random.uniform(0, 2)),
            replace_existing=True,
        )
    _add_notification_jobs(scheduler, cfg, factory, stop, now)
    received: list[int] = []
    if threading.current_thread() is threading.main_thread():

        def _handle(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping", extra={"action": "signal", "signal": signum})
            received.append(signum)
            stop.set()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
    scheduler.start()
    watchers: list[watch.Watcher] = []
    wake = _SyncNow(scheduler)
    try:
        watchers = watch.start_watchers(cfg, factory, stop, wake)
        log.info(
            "daemon started",
            extra={
                "action": "daemon_start",
                "jobs": len(scheduler.get_jobs()),
                "watchers": len(watchers),
            },
        )
        if on_ready is not None:
            on_ready()
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()  # an exception above must stop the watchers too
        watch.join_watchers(watchers)
        wake.close()
        scheduler.shutdown(wait=True)
        log.info("daemon stopped", extra={"action": "daemon_stop"})
    return received[0] if received else None
