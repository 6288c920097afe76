""" "Sync now" from the admin page: one sync of one mailbox, in a background thread of the
web process, never two at once.

Two guards keep a mailbox from being synced twice. In this process, a runner remembers the
mailbox it is syncing and refuses a second start (a second click) until it ends: the sync
lease alone would not, since a worker may renew its own lease. Across processes, the sync
engine's lease on the mailbox row (`sync.engine`) holds: a start is refused at once when
another live worker (the daemon) holds it, and a sync that loses the race to one ends as
"skipped".

When the server stops (SIGTERM, Ctrl-C), the app's lifespan calls `SyncRunner.close`: a
running sync is asked to stop after its current batch (the engine ends its run as
"interrupted", releases the lease and keeps every batch it committed) and is waited for a
bounded time, so that the process exits promptly and leaves no run "running".
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import leases, models, store
from mailmanager.errors import MailmanagerError
from mailmanager.services import mailboxhealth
from mailmanager.sync import engine as sync

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 10.0  # seconds a stopping server waits for its syncs (then exits anyway)


@dataclass(frozen=True)
class SyncRun:
    """A sync started from the page: "running", then "ok", "error" or "skipped"."""

    mailbox: str
    state: str
    started_at: datetime
    finished_at: datetime | None = None
    new_messages: int = 0
    fetched: int = 0
    error: str | None = None  # the error of an "error" run, or why it was "skipped"


class SyncRefusedError(MailmanagerError):
    """The sync was not started: `reason` is "running" (this process is syncing it),
    "leased" (another worker is, named by `holder`) or "stopping" (the server is)."""

    def __init__(self, reason: str, holder: str = "") -> None:
        super().__init__(reason)
        self.reason, self.holder = reason, holder


def _ours(owner: str) -> bool:
    """Whether a lease owner ("host:pid" or "host:pid:nonce") is this process."""
    host, _, rest = owner.partition(":")
    return f"{host}:{rest.partition(':')[0]}" == leases.WORKER_ID


class SyncRunner:
    """Starts and remembers the syncs of one web process (one per app)."""

    def __init__(self, cfg: config_mod.Config, factory: sessionmaker[Session]) -> None:
        self.cfg, self.factory = cfg, factory
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[str, SyncRun] = {}
        self._threads: dict[str, threading.Thread] = {}

    def last(self, mailbox: str) -> SyncRun | None:
        """The current or last run of `mailbox` started here, None if none was."""
        with self._lock:
            return self._runs.get(mailbox)

    def start(self, mailbox: str) -> SyncRun:
        """Start syncing `mailbox` (a name of the config file) in a background thread.

        Raises `spi.ConfigError` for an unknown mailbox, `SyncRefusedError` when it is being
        synced.
        """
        self.cfg.mailbox(mailbox)
        now = models.utcnow()
        with self._lock:
            if self.stop.is_set():  # the server is stopping
                raise SyncRefusedError("stopping")
            current = self._runs.get(mailbox)
            if current is not None and current.state == "running":
                raise SyncRefusedError("running")
            with store.session_scope(self.factory) as s:
                holder = mailboxhealth.syncing_by(s, mailbox, now)
            # A lease of this very process with no run of ours going is a leftover: the
            # engine decides (it frees it, or the run ends as "skipped").
            if holder is not None and not _ours(holder):
                raise SyncRefusedError("leased", holder)
            run = SyncRun(mailbox, "running", now)
            self._runs[mailbox] = run
            thread = threading.Thread(
                target=self._run, args=(mailbox,), name=f"sync-now-{mailbox}", daemon=True
            )
            self._threads[mailbox] = thread
        log.info("sync started from the web", extra={"action": "sync_now", "mailbox": mailbox})
        thread.start()
        return run

    def _run(self, mailbox: str) -> None:
        try:
            report = sync.Syncer(self.cfg, self.factory, stop=self.stop).sync(mailbox)
            state, error = report.status, report.error
            new, fetched = report.total("new_messages"), report.total("fetched")
        except sync.LeaseHeldError as exc:
            state, error, new, fetched = "skipped", str(exc), 0, 0
        except Exception as exc:  # a database failure: shown on the page, never lost
            log.exception("sync now failed", extra={"action": "sync_now", "mailbox": mailbox})
            state, error, new, fetched = "error", f"{type(exc).__name__}: {exc}", 0, 0
        with self._lock:
            self._runs[mailbox] = replace(
                self._runs[mailbox],
                state=state,
                finished_at=models.utcnow(),
                new_messages=new,
                fetched=fetched,
                error=error,
            )

    def wait(self, mailbox: str, timeout: float | None = None) -> SyncRun | None:
        """Wait for the run of `mailbox` to end (tests, shutdown); its last state."""
        with self._lock:
            thread = self._threads.get(mailbox)
        if thread is not None:
            thread.join(timeout)
        return self.last(mailbox)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Ask running syncs to stop after their current batch and wait for them, `timeout`
        seconds in all; whether they all ended. (One that did not is a daemon thread: the
        process exits all the same, and the next sync of its mailbox marks its run
        "abandoned".) No sync starts once this was called."""
        self.stop.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [t for t in self._threads.values() if t.is_alive()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in threads if t.is_alive()]
        if left:
            log.warning(
                "sync now still running at shutdown",
                extra={"action": "sync_now_shutdown", "threads": left},
            )
        elif threads:
            log.info("sync now stopped", extra={"action": "sync_now_shutdown", "threads": 0})
        return not left
