"""A "sync now" started from the admin page does not outlive the server: SIGTERM to a real
`mailmanager web` process while it syncs a large Maildir (many small batches) asks the sync
to stop after its batch; the process exits within seconds, and the sync run is closed
("interrupted", its lease released, the batches it committed kept), not left "running".
In process, on SQLite and PostgreSQL: a sync that cannot stop (it waits on a lock) is waited
for a bounded time only, and ends "interrupted" once it can; no sync starts meanwhile."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.services import syncnow
from mailmanager.testing import bulkmail
from tests.conftest import REPO, ConfigWriter
from tests.integration.notify_support import Sink
from tests.web.support import Template, WebServer, csrf_of, start_server

MESSAGES = 3000
BATCH = 5  # messages per batch: a stop is seen within one small batch
EXIT_WITHIN = 20.0  # seconds from SIGTERM to the process's exit


def slow_maildir(root: Path) -> Path:
    """A Maildir of MESSAGES small distinct messages: hundreds of batches to sync."""
    cur = root / "INBOX" / "cur"
    cur.mkdir(parents=True)
    for sub in ("new", "tmp"):
        (root / "INBOX" / sub).mkdir()
    for i in range(MESSAGES):
        (cur / f"{1700000000 + i}.{i}.test:2,S").write_bytes(
            bulkmail.synthetic_message(i, size=800)
        )
    return root


@pytest.fixture
def server(
    tmp_path_factory: pytest.TempPathFactory, web_template: Template, web_sink: Sink
) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("web-syncnow")
    mail = slow_maildir(root / "slow-mail")
    extra = f"""
[sync]
batch_size = {BATCH}
[[mailboxes]]
name = "slow"
connector = "maildir"
path = "{mail}"
owner = "dave@example.com"
"""
    started = start_server(root / "server", web_template, web_sink, extra=extra)
    yield started
    started.stop()


def _slow_run(server: WebServer) -> tuple[str, int, int]:
    """(status, messages stored so far, how many runs) of the mailbox "slow"."""
    with server.session() as s:
        mailbox = s.scalar(sa.select(models.Mailbox.id).where(models.Mailbox.name == "slow"))
        runs = s.scalars(
            sa.select(models.SyncRun.status)
            .where(models.SyncRun.mailbox_id == mailbox)
            .order_by(models.SyncRun.id)
        ).all()
        stored = s.scalar(
            sa.select(sa.func.count())
            .select_from(models.MessageLocation)
            .join(models.Folder, models.Folder.id == models.MessageLocation.folder_id)
            .where(models.Folder.mailbox_id == mailbox)
        )
    return (runs[-1] if runs else "", int(stored or 0), len(runs))


def test_sigterm_stops_a_running_sync_now_and_exits_promptly(server: WebServer) -> None:
    admin = server.sign_in("dave@example.com")
    reply = admin.post(
        "/admin/mailboxes/slow/sync", data={"csrf": csrf_of(admin.get("/admin").text)}
    )
    assert reply.status_code == 303 and "notice=started" in reply.headers["location"]
    deadline = time.monotonic() + 60  # wall clock: waits for the server's sync thread
    state = _slow_run(server)
    while not (state[0] == "running" and state[1] >= 2 * BATCH):  # a few batches in
        assert time.monotonic() < deadline, f"the sync did not get going: {state}"  # wall clock
        time.sleep(0.1)
        state = _slow_run(server)
    proc = server.proc
    assert proc is not None
    sent = time.monotonic()  # wall clock: how long the server takes to exit
    proc.send_signal(signal.SIGTERM)  # to the server alone, as a service manager does
    try:
        code = proc.wait(timeout=EXIT_WITHIN + 30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mailmanager web still running {EXIT_WITHIN + 30} s after SIGTERM")
    took = time.monotonic() - sent  # wall clock: same measure
    print(f"exit {took:.1f} s after SIGTERM")
    admin.close()
    # uvicorn shuts down gracefully, then raises the signal again: the exit says SIGTERM.
    assert code in (0, -signal.SIGTERM), server.output()
    assert took < EXIT_WITHIN, f"exit took {took:.1f} s"
    status, stored, runs = _slow_run(server)
    assert runs == 1
    assert status == "interrupted", (status, server.output())
    assert 0 < stored < MESSAGES  # it was stopped midway, its batches kept
    with server.session() as s:
        lease = s.scalar(sa.select(models.Mailbox.lease_owner).where(models.Mailbox.name == "slow"))
    assert lease is None


def test_close_waits_a_bounded_time_for_a_sync_that_cannot_stop(
    db_url: str, write_config: ConfigWriter, factory: sessionmaker[Session]
) -> None:
    mailbox = f"""
        [[mailboxes]]
        name = "sample"
        connector = "maildir"
        path = "{REPO / "examples" / "sample-mailbox"}"
        owner = "alice@example.com"
        """
    cfg = config.load(write_config(db_url, mailbox))
    runner = syncnow.SyncRunner(cfg, factory)
    blocker = sa.create_engine(db_url)
    conn = blocker.connect()
    try:  # another connection holds the write lock: the sync waits for it
        if db_url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE mailboxes IN EXCLUSIVE MODE")
            conn.exec_driver_sql("LOCK TABLE users IN EXCLUSIVE MODE")
        runner.start("sample")
        began = time.monotonic()  # wall clock: measures how long close() waits
        assert runner.close(timeout=1.0) is False
        assert time.monotonic() - began < 5  # wall clock: same measure
        with pytest.raises(syncnow.SyncRefusedError) as refused:
            runner.start("sample")
        assert refused.value.reason == "stopping"
    finally:
        conn.rollback()
        conn.close()
        blocker.dispose()
    assert runner.close(timeout=60) is True
    with store.session_scope(factory) as s:
        runs = s.scalars(sa.select(models.SyncRun.status)).all()
        messages = s.scalar(sa.select(sa.func.count()).select_from(models.Message))
    assert runs == ["interrupted"] and messages == 0
