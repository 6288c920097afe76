"""The sync engine: drives one connector into the store, batch by batch.

For each folder the engine loops: fetch a batch from the connector and parse it (in a fetch
worker process, see `fetching`) → write it with `ingest` and the folder's new cursor in ONE
transaction, in this process. Fetching, parsing and writing overlap, so each gets a core.

Crash safety follows from three rules: the cursor is committed only with the batch it
covers; every write is an idempotent upsert; a full scan (first sync, or an expired cursor)
marks its start time on the folder and, when it completes, removes only the locations it did
not see. A `kill -9` at any moment therefore resumes from the last committed batch and
converges on the same state as an uninterrupted run.

Several workers may share a PostgreSQL database: a mailbox is synced under a lease (an
atomic UPDATE on the mailbox row naming this sync's owner token), renewed in every batch's
transaction. A sync that finds its lease gone (it stalled past the expiry and another
worker took over) stops at once: that batch rolls back, and it neither writes nor releases
anything the new holder owns. A sync that takes over a lease marks the runs still
"running" for the mailbox "abandoned" (their worker died or lost the lease).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager import events, logs, spi
from mailmanager.config import identity
from mailmanager.db import configrows, leases, models, store, tokens, webhookevents
from mailmanager.db.models import Folder, Mailbox
from mailmanager.errors import MailmanagerError
from mailmanager.matching import run as linking
from mailmanager.reminders import evaluation as reminders
from mailmanager.sync import fetching, ingest, privacy

log = logging.getLogger(__name__)

LEASE = leases.SYNC_LEASE
PENDING_PART = 20000  # threads per transaction when a full scan's stages run

Progress = Callable[[str, int], None]  # (folder name, messages fetched so far in it)


def default_hooks() -> list[events.BatchHook]:
    """Stages that run on each stored batch, in its transaction (matching, reminders...).

    A hook gets the session, the config and the batch's result (new message ids, touched
    thread ids) and must be idempotent: a batch may be replayed after a crash.
    """
    # Matching first, reminders last: they read the links the matcher writes.
    return [linking.batch_hook, reminders.sync_hook, replies_hook]


def replies_hook(session: Session, cfg: config_mod.Config, result: events.BatchResult) -> None:
    """`thread.replied` webhook events for the batch's new messages (a no-op unless a
    webhook subscription wants them; see `db.webhookevents`)."""
    webhookevents.thread_replies(session, result.message_ids)


def merge_hooks() -> tuple[events.MergeHook, ...]:
    """How the later stages keep their rows when threads merge: always on, whatever stages
    run after a batch, since a merge deletes the losing threads."""
    return (linking.threads_merged, reminders.threads_merged, privacy.carry_private)


class LeaseHeldError(MailmanagerError):
    """Raised when another worker holds the mailbox's sync lease (it is syncing it now)."""


LeaseLostError = leases.LeaseLostError


@dataclass
class FolderReport:
    folder: str
    role: str
    fetched: int = 0
    new_messages: int = 0
    new_locations: int = 0
    removed: int = 0
    flag_changes: int = 0
    quarantined: int = 0
    rescanned: bool = False


@dataclass
class SyncReport:
    mailbox: str
    status: str = "ok"  # ok, error, skipped
    error: str | None = None
    elapsed: float = 0.0
    folders: list[FolderReport] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # exclude_folders: never fetched

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.folders)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("fetched", "new_messages", "new_locations", "removed", "quarantined"):
            data[name] = self.total(name)
        return data


def _context(
    cfg: config_mod.Config, mb: config_mod.MailboxConfig, mailbox_id: int
) -> ingest.MailboxContext:
    return ingest.MailboxContext(
        mailbox_id=mailbox_id,
        identity=identity.of(cfg).mailbox(mb.name),
        subject_fallback=cfg.threading.subject_fallback,
        subject_window=timedelta(days=cfg.threading.subject_window_days),
        keep_raw=True,
        on_merge=merge_hooks(),
    )


def store_one(
    session: Session, cfg: config_mod.Config, mailbox: str, folder_id: int, item: ingest.Fetched
) -> events.BatchResult:
    """Store one fetched item of `mailbox`'s folder as a sync stores it (ingest: message,
    thread, raw or quarantine; then the batch stages: matching, reminders) in the caller's
    transaction. Raises what ingest or a stage raises. (`mailmanager quarantine retry`.)"""
    mailbox_id = session.scalars(sa.select(Mailbox.id).where(Mailbox.name == mailbox)).one()
    ctx = _context(cfg, cfg.mailbox(mailbox), mailbox_id)
    result = ingest.store_batch(session, ctx, folder_id, [item])
    for hook in default_hooks():
        hook(session, cfg, result)
    return result


class Syncer:
    """Syncs the mailboxes of one config into one database."""

    def __init__(
        self,
        cfg: config_mod.Config,
        factory: sessionmaker[Session],
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        hooks: list[events.BatchHook] | None = None,
    ) -> None:
        self.cfg = cfg
        self.factory = factory
        self.progress = progress
        self.stop = stop or threading.Event()
        self.hooks = default_hooks() if hooks is None else hooks
        self._rows_written = False  # see `_mailbox_id`

    def sync(self, mailbox_name: str, takeover: bool = False) -> SyncReport:
        """Sync one mailbox; errors are recorded on the report and the mailbox, not raised,
        its configuration errors included (one bad mailbox never stops the others), except
        a held lease.

        `takeover`: take the lease whoever holds it, for a scheduler whose own lock already
        guarantees that no other live job syncs this mailbox (procrastinate, `workers`):
        the lease then only fences off a stalled former holder, which stops at its next
        batch (`LeaseLostError`). Every line logged meanwhile carries `mailbox` and `run`."""
        with logs.bound(mailbox=mailbox_name):
            return self._sync(mailbox_name, takeover)

    def _sync(self, mailbox_name: str, takeover: bool) -> SyncReport:
        mb = self.cfg.mailbox(mailbox_name)
        started = time.perf_counter()
        sync_start = models.utcnow()
        report = SyncReport(mailbox=mb.name)
        owner = leases.new_owner()  # this sync's lease; one Syncer runs several at once
        with store.session_scope(self.factory) as s:
            store.write_first(s)
            mailbox_id = self._mailbox_id(s, mb.name)
            if not leases.take_sync_lease(s, mailbox_id, sync_start, owner, takeover):
                raise LeaseHeldError(f"mailbox {mb.name!r} is being synced by another worker")
            leases.abandon_runs(s, mailbox_id, sync_start)
            run = models.SyncRun(
                mailbox_id=mailbox_id, started_at=sync_start, worker=leases.WORKER_ID
            )
            s.add(run)
            s.flush()
            run_id = run.id
        logs.bind(run=run_id)
        ctx = _context(self.cfg, mb, mailbox_id)
        try:
            connector = tokens.build_connector(self.cfg, mb, self.factory)
        except config_mod.ConfigFileError as exc:
            # This mailbox's settings are wrong: it fails alone, the others still sync.
            report.status = "error"
            report.error = "configuration error: " + "; ".join(str(e) for e in exc.errors)
            log.warning(
                "sync failed",
                extra={"action": "sync_error", "mailbox": mb.name, "error": report.error},
            )
            report.elapsed = time.perf_counter() - started
            self._finish(mailbox_id, run_id, report, sync_start, owner)
            return report
        side = fetching.open_fetch_side(
            connector,
            self.cfg.sync.batch_size,
            self.cfg.sync.parse_workers if getattr(connector, "forkable", True) else 0,
            self.stop,
            self.factory.kw.get("bind"),
            self.cfg.sync.max_message_size,
        )
        try:
            self._run_pending(mailbox_id)  # left by a full scan that was cut short
            listed = side.folders()
            report.excluded = [f.name for f in listed if privacy.excluded(mb, f)]
            kept = [f for f in listed if not privacy.excluded(mb, f)]  # as if gone: see _folders
            for remote in self._folders(kept, mailbox_id):
                if self.stop.is_set():
                    break
                fctx = dataclasses.replace(ctx, store=privacy.level(mb, remote))
                report.folders.append(self._sync_folder(side, fctx, remote, owner))
        except (spi.ConnectorError, spi.ConfigError) as exc:  # e.g. a token found unusable
            report.status, report.error = "error", f"{type(exc).__name__}: {exc}"
            log.warning(
                "sync failed", extra={"action": "sync_error", "mailbox": mb.name, "error": str(exc)}
            )
        except LeaseLostError as exc:  # stalled past the lease: the new holder carries on
            report.status, report.error = "error", str(exc)
            log.warning("sync stopped", extra={"action": "sync_lease_lost", "mailbox": mb.name})
        except Exception as exc:  # a bug or a database failure: this mailbox fails alone
            report.status, report.error = "error", f"{type(exc).__name__}: {exc}"[:2000]
            log.exception(
                "sync failed", extra={"action": "sync_error", "mailbox": mb.name, "error": str(exc)}
            )
        finally:
            side.close()
            connector.close()
        try:
            self._run_pending(mailbox_id)
        except BaseException as exc:
            report.status, report.error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            report.elapsed = time.perf_counter() - started
            self._finish(mailbox_id, run_id, report, sync_start, owner)
        log.info(
            "sync done",
            extra={
                "action": "sync_done",
                "mailbox": mb.name,
                "new_messages": report.total("new_messages"),
                "elapsed": round(report.elapsed, 3),
            },
        )
        return report

    def _mailbox_id(self, session: Session, name: str) -> int:
        """The mailbox's row id. The config's users and mailboxes are written to the
        database at this Syncer's first sync only (and again if the row is missing): with
        a thousand mailboxes, writing them all at every sync would cost more than the sync."""
        if self._rows_written:
            found = session.scalar(sa.select(Mailbox.id).where(Mailbox.name == name))
            if found is not None:
                return int(found)
        configrows.ensure_config_rows(session, self.cfg)
        session.flush()
        self._rows_written = True
        return int(session.scalars(sa.select(Mailbox.id).where(Mailbox.name == name)).one())

    def _folders(self, remote: list[spi.RemoteFolder], mailbox_id: int) -> list[spi.RemoteFolder]:
        with store.session_scope(self.factory) as s:
            store.write_first(s)
            rows = {
                f.remote_id: f
                for f in s.scalars(sa.select(Folder).where(Folder.mailbox_id == mailbox_id))
            }
            seen = set()
            for rf in remote:
                row = rows.get(rf.id) or Folder(mailbox_id=mailbox_id, remote_id=rf.id)
                row.name, row.role, row.present = rf.name, str(rf.role), True
                s.add(row)
                seen.add(rf.id)
            gone = [row.id for remote_id, row in rows.items() if remote_id not in seen]
            for row in rows.values():
                if row.id in gone:
                    # A folder deleted or renamed at the provider: its locations go (the
                    # messages, threads and links stay; a renamed folder's full scan
                    # re-creates them under its new name), and so does its cursor.
                    row.present, row.cursor, row.rescan_started_at = False, None, None
            for chunk in store.chunks(gone):
                t = store.table(models.MessageLocation)
                s.execute(sa.delete(t).where(t.c.folder_id.in_(chunk)))
        return remote

    def _sync_folder(
        self,
        side: fetching.FetchSide,
        ctx: ingest.MailboxContext,
        remote: spi.RemoteFolder,
        owner: str,
    ) -> FolderReport:
        report = FolderReport(folder=remote.name, role=str(remote.role))
        with store.session_scope(self.factory) as s:
            folder = s.scalars(
                sa.select(Folder).where(
                    Folder.mailbox_id == ctx.mailbox_id, Folder.remote_id == remote.id
                )
            ).one()
            folder_id, cursor = folder.id, folder.cursor
        for item in side.batches(remote, cursor):
            report.rescanned = report.rescanned or item.rescanned
            full_scan = cursor is None or report.rescanned
            self._store(folder_id, ctx, item.batch, item.results, report, owner, full_scan)
            report.fetched += len(item.batch.messages)
            if self.progress is not None:
                self.progress(remote.name, report.fetched)
            if self.stop.is_set():
                break
        return report

    def _store(
        self,
        folder_id: int,
        ctx: ingest.MailboxContext,
        batch: spi.ChangeBatch,
        results: list[Any],
        report: FolderReport,
        owner: str,
        full_scan: bool = False,
    ) -> None:
        items = [
            ingest.Fetched(
                provider_id=m.provider_id,
                raw=m.raw,
                parsed=r,
                flags=m.flags,
                labels=m.labels,
                thread_hint=m.thread_hint,
            )
            for m, r in zip(batch.messages, results, strict=True)
        ]
        with store.session_scope(self.factory) as s:
            store.write_first(s)
            folder = s.get(Folder, folder_id)
            assert folder is not None
            now = models.utcnow()
            if batch.reset:
                folder.rescan_started_at = now
            changes = [(c.provider_id, c.flags) for c in batch.flag_changes]
            try:
                with s.begin_nested():
                    result = ingest.store_batch(s, ctx, folder_id, items, batch.removed, changes)
            except Exception as exc:  # maybe one item the database (or ingest) rejects
                if ingest.is_outage(exc):
                    raise  # the database is unreachable or locked: the next run retries
                log.warning(
                    "batch rejected, storing it item by item",
                    extra={"action": "batch_fallback", "error": ingest.failure(exc)[:200]},
                )
                result = ingest.store_items_apart(s, ctx, folder_id, items, batch.removed, changes)
            if full_scan and self.hooks:  # the stages run once, when the scan ends
                pending = [{"mailbox_id": ctx.mailbox_id, "thread_id": t} for t in result.threads]
                store.insert_ignore(s, store.table(models.PendingThread), pending)
            else:
                for hook in self.hooks:
                    hook(s, self.cfg, result)
            if not batch.more and folder.rescan_started_at is not None:
                report.removed += _sweep(s, folder_id, folder.rescan_started_at)
                folder.rescan_started_at = None
            folder.cursor = batch.cursor
            folder.last_sync_at = now
            leases.renew_sync_lease(s, ctx.mailbox_id, now, owner)
        report.new_messages += result.new_messages
        report.new_locations += result.new_locations
        report.quarantined += result.quarantined
        report.removed += result.removed
        report.flag_changes += result.flag_changes

    def _run_pending(self, mailbox_id: int) -> None:
        """Run the per-batch stages over the threads a full scan stored mail into.

        A full scan (first sync, expired cursor) queues its threads instead of matching them
        after every batch: each thread is then matched once, however many batches and
        folders it spans, against the whole CRM loaded once. Each part is unqueued in the
        stages' transaction, so a crash only means the next sync runs them again.
        """
        if not self.hooks:
            return
        P = models.PendingThread
        with store.session_scope(self.factory) as s:
            queued = s.scalars(
                sa.select(P.thread_id).where(P.mailbox_id == mailbox_id).order_by(P.thread_id)
            ).all()
        done = 0
        for part in store.chunks(queued, PENDING_PART):
            if self.stop.is_set():
                return  # the rest waits for the next sync
            with store.session_scope(self.factory) as s:
                store.write_first(s)
                result = events.BatchResult(threads=set(part))
                for hook in self.hooks:
                    hook(s, self.cfg, result)
                for ids in store.chunks(part):
                    s.execute(sa.delete(P).where(P.mailbox_id == mailbox_id, P.thread_id.in_(ids)))
            done += len(part)
            if self.progress is not None:
                self.progress("linking threads", done)

    def _finish(
        self, mailbox_id: int, run_id: int, report: SyncReport, sync_start: datetime, owner: str
    ) -> None:
        with store.session_scope(self.factory) as s:
            store.write_first(s)
            run = s.get(models.SyncRun, run_id)
            assert run is not None
            now = models.utcnow()
            # Only the lease holder speaks for the mailbox: a sync that lost its lease
            # leaves the mailbox's state (and the new holder's lease) alone.
            mailbox = (
                s.get(Mailbox, mailbox_id)
                if leases.release_sync_lease(s, mailbox_id, owner)
                else None
            )
            if mailbox is not None:
                mailbox.last_sync_at = now
                if report.status == "ok" and not self.stop.is_set():
                    mailbox.last_success_at = now
                    mailbox.synced_until = sync_start
                    mailbox.last_error = None
                elif report.error:
                    if mailbox.last_error is None:  # it was healthy: tell the webhooks once
                        webhookevents.mailbox_failed(s, mailbox.name, report.error, now)
                    mailbox.last_error = report.error
            run.finished_at = now
            if mailbox is None:
                run.status = "abandoned"
            else:
                run.status = report.status if not self.stop.is_set() else "interrupted"
            run.fetched = report.total("fetched")
            run.new_messages = report.total("new_messages")
            run.new_locations = report.total("new_locations")
            run.removed = report.total("removed")
            run.quarantined = report.total("quarantined")
            run.errors = 0 if report.status == "ok" else 1
            run.error = report.error


def _sweep(session: Session, folder_id: int, since: datetime) -> int:
    """End of a full scan: drop the locations of the folder the scan did not see."""
    t = store.table(models.MessageLocation)
    res = session.execute(sa.delete(t).where(t.c.folder_id == folder_id, t.c.seen_at < since))
    return int(res.rowcount)  # type: ignore[attr-defined]
