"""The fetch worker process (`mailmanager.fetching`) and the stages a full scan runs once at
its end (`sync.Syncer._run_pending`), on a real database.

The worker forks from the test process, so the connector here is a small scripted one,
registered in this process before the fork: its messages and its faults come from its
options, which the child inherits.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, events, registry, spi
from mailmanager.db import models
from mailmanager.db.models import Message, PendingThread, Thread
from mailmanager.matching import run as linking
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.mailgen import day, make

ALICE = "Alice Martin <alice@example.com>"
CLIENT = "Jean Dupont <jean.dupont@acme-industrie.fr>"


class _OddError(spi.ConnectorError):
    """An error whose constructor pickling cannot replay (two required arguments)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(f"{message} [{code}]")


def _message(i: int) -> bytes:
    # Threads of three: message 3k starts one, 3k+1 and 3k+2 answer it.
    root = i - i % 3
    return make(
        CLIENT if i % 2 else ALICE,
        ALICE if i % 2 else CLIENT,
        f"Re: Commande {root}" if i % 3 else f"Commande {root}",
        msgid=f"m{i}@acme-industrie.fr",
        reply_to=f"m{root}@acme-industrie.fr" if i % 3 else None,
        at=day(i / 10),
    )


class ScriptedConnector:
    """`count` messages in INBOX; at message index `fail_at` it fails as `fail` says."""

    name: ClassVar[str] = "scripted"
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option("count", kind="int", default=10),
        spi.Option("fail_at", kind="int", default=-1),
        spi.Option("fail", default=""),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        self.count = int(str(config.values.get("count")))
        self.fail_at = int(str(config.values.get("fail_at")))
        self.fail = str(config.values.get("fail") or "")
        self.pid = os.getpid()

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        return [spi.RemoteFolder("INBOX", "INBOX", spi.FolderRole.INBOX)]

    def fetch_changes(self, folder: spi.RemoteFolder, cursor: str | None, limit: int) -> Any:
        start = int(cursor or 0)
        end = min(self.count, start + limit)
        if start <= self.fail_at < end:
            self._raise()
        messages = [
            spi.RawMessage(provider_id=str(i), raw=_message(i), internal_date=day(i / 10))
            for i in range(start, end)
        ]
        return spi.ChangeBatch(messages=messages, cursor=str(end), more=end < self.count)

    def _raise(self) -> None:
        if self.fail == "transient":
            raise spi.TransientError("server busy", retry_after=7)
        if self.fail == "config":
            raise spi.ConfigError("mailboxes.w.fail", "told to fail", "remove fail")
        if self.fail == "odd":
            raise _OddError("odd failure", 42)
        if self.fail == "die":
            os._exit(3)
        if self.fail == "pid":  # proves where fetching happens
            raise spi.ConnectorError(f"fetching in pid {os.getpid()}, built in {self.pid}")

    def check(self) -> Sequence[spi.CheckStep]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def scripted() -> Iterator[None]:
    registry.register("scripted", ScriptedConnector)  # type: ignore[arg-type]
    yield
    registry.unregister("scripted")


def _config(
    write_config: ConfigWriter, db_url: str, workers: int = 1, **options: object
) -> config.Config:
    opts = "\n".join(
        f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in options.items()
    )
    path = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "w"
        connector = "scripted"
        owner = "alice@example.com"
        {opts}
        [sync]
        batch_size = 4
        parse_workers = {workers}
        """,
    )
    return config.load(path)


def _count(factory: sessionmaker[Session], model: type[models.Base]) -> int:
    with factory() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def _state(factory: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    """Each message with its thread's first message: the outcome, without database ids."""
    with factory() as s:
        rows = s.execute(sa.select(Message.message_id, Message.thread_id, Message.snippet)).all()
    first: dict[int | None, str] = {}
    for msgid, tid, _ in sorted(rows):
        first.setdefault(tid, msgid)
    return sorted((msgid, first[tid], snippet) for msgid, tid, snippet in rows)


def test_the_worker_process_stores_what_the_in_process_path_stores(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session], tmp_path: Any
) -> None:
    report = sync.Syncer(_config(write_config, db_url, workers=1, count=22), factory).sync("w")
    assert report.status == "ok" and report.total("new_messages") == 22
    in_worker = _state(factory)
    assert _count(factory, Thread) == 8

    other = f"sqlite:///{tmp_path / 'inline.db'}"
    from mailmanager.db import store

    engine = store.make_engine(other)
    store.upgrade(engine)
    inline = store.session_factory(engine)
    sync.Syncer(_config(write_config, other, workers=0, count=22), inline).sync("w")
    assert _state(inline) == in_worker
    engine.dispose()
    assert not multiprocessing.active_children()


def test_fetching_moves_to_a_worker_process_once_a_folder_has_more_than_one_batch(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    # The first batch of a folder is fetched here: a small or no-change sync forks nothing.
    cfg = _config(write_config, db_url, count=3, fail_at=0, fail="pid")
    report = sync.Syncer(cfg, factory).sync("w")
    assert f"fetching in pid {os.getpid()}," in (report.error or "")
    # The third batch of a big folder is fetched by the worker.
    cfg = _config(write_config, db_url, count=20, fail_at=9, fail="pid")
    report = sync.Syncer(cfg, factory).sync("w")
    assert report.status == "error" and report.error is not None
    fetched_in, built_in = (
        int(w.rstrip(",")) for w in report.error.split() if w.rstrip(",").isdigit()
    )
    assert built_in == os.getpid() and fetched_in != os.getpid()
    assert _count(factory, Message) == 8


def test_a_worker_error_keeps_its_kind_and_what_was_stored_before_it(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    cfg = _config(write_config, db_url, count=12, fail_at=9, fail="transient")
    report = sync.Syncer(cfg, factory).sync("w")
    assert report.status == "error"
    assert report.error == "TransientError: server busy"
    assert _count(factory, Message) == 8  # two batches of four were committed
    # The stages of the cut-short full scan ran anyway: nothing is left pending.
    assert _count(factory, PendingThread) == 0
    report = sync.Syncer(_config(write_config, db_url, count=12), factory).sync("w")
    assert report.status == "ok" and report.total("new_messages") == 4
    assert _count(factory, Message) == 12


def test_errors_that_do_not_pickle_still_reach_the_writer(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    cfg = _config(write_config, db_url, count=12, fail_at=9, fail="odd")
    report = sync.Syncer(cfg, factory).sync("w")
    assert report.status == "error" and report.error is not None
    assert "odd failure [42]" in report.error and "_OddError" in report.error
    # A configuration error crosses intact (its kind, key and fix) and, as without the
    # worker, fails this mailbox alone: it is reported, not raised (issue #17).
    cfg = _config(write_config, db_url, count=12, fail_at=9, fail="config")
    report = sync.Syncer(cfg, factory).sync("w")
    assert report.status == "error" and report.error is not None
    assert report.error.startswith("ConfigError: ") and "told to fail (remove fail)" in report.error


def test_a_worker_that_dies_is_reported_and_the_next_sync_resumes(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    cfg = _config(write_config, db_url, count=10, fail_at=5, fail="die")
    report = sync.Syncer(cfg, factory).sync("w")
    assert report.status == "error"
    assert "fetch worker process ended unexpectedly (exit code 3)" in (report.error or "")
    # What the worker had fetched but not yet handed over is lost with it, and fetched
    # again: the cursor only moves with stored batches.
    stored = _count(factory, Message)
    assert stored < 8
    report = sync.Syncer(_config(write_config, db_url, count=10), factory).sync("w")
    assert report.total("new_messages") == 10 - stored and _count(factory, Message) == 10
    assert not multiprocessing.active_children()


def test_stopping_mid_sync_ends_the_worker(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    syncer = sync.Syncer(_config(write_config, db_url, count=40), factory)
    syncer.progress = lambda folder, done: syncer.stop.set()
    report = syncer.sync("w")
    assert report.total("fetched") == 4  # one batch, then it stopped
    assert not multiprocessing.active_children()
    with factory() as s:
        run = s.scalars(sa.select(models.SyncRun)).one()
    assert run.status == "interrupted"
    # The rest comes with the next sync.
    report = sync.Syncer(_config(write_config, db_url, count=40), factory).sync("w")
    assert report.total("new_messages") == 36


def test_a_full_scan_runs_the_stages_once_at_its_end_an_incremental_sync_per_batch(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    calls: list[list[int]] = []

    def hook(s: Session, cfg: config.Config, result: events.BatchResult) -> None:
        pending = _count_in(s, PendingThread)
        calls.append([*sorted(result.threads), -pending])

    cfg = _config(write_config, db_url, count=12)
    sync.Syncer(cfg, factory, hooks=[hook]).sync("w")
    assert len(calls) == 1  # three batches, one call
    assert len(calls[0]) == 4 + 1 and calls[0][-1] == -4  # 4 threads, all queued then
    assert _count(factory, PendingThread) == 0

    calls.clear()
    sync.Syncer(_config(write_config, db_url, count=20), factory, hooks=[hook]).sync("w")
    assert len(calls) == 2  # an incremental sync: batches 12-15 and 16-19
    assert all(c[-1] == 0 for c in calls)


def test_without_stages_a_full_scan_queues_nothing(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    sync.Syncer(_config(write_config, db_url, count=12), factory, hooks=[]).sync("w")
    assert _count(factory, Message) == 12 and _count(factory, PendingThread) == 0


def _count_in(s: Session, model: type[models.Base]) -> int:
    return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_stages_cut_short_by_a_crash_run_at_the_next_sync(
    write_config: ConfigWriter, db_url: str, factory: sessionmaker[Session]
) -> None:
    def broken(s: Session, cfg: config.Config, result: events.BatchResult) -> None:
        raise RuntimeError("killed while matching")

    cfg = _config(write_config, db_url, count=9)
    with pytest.raises(RuntimeError):
        sync.Syncer(cfg, factory, hooks=[broken]).sync("w")
    assert _count(factory, Message) == 9 and _count(factory, PendingThread) == 3
    with factory() as s:
        assert not s.scalars(sa.select(models.MatchState)).first()

    with factory() as s:
        run = s.scalars(sa.select(models.SyncRun)).one()
    assert run.status == "error" and "killed while matching" in (run.error or "")
    # The next sync (nothing new to fetch) runs the default stages over what was left.
    sync.Syncer(cfg, factory).sync("w")
    assert _count(factory, PendingThread) == 0
    with factory() as s:
        states = s.scalars(sa.select(models.MatchState.reason)).all()
    assert len(states) == 9  # every message has its matcher verdict
    with factory() as s:
        assert linking.thread_ids(s, unmatched=True) == []
