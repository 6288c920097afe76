"""The daemon's push side under stress (issue #15, defects 5 and 6): a stop that comes while a
sync runs with a wake pending ends within 10 s, and IMAP IDLE keeps waiting through the
server's keepalives (Dovecot's "* OK Still here") instead of ending the watcher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, daemon, registry, spi
from mailmanager.sync import watch
from mailmanager.testing.dovecot import DovecotServer, dovecot_binary
from tests.conftest import IN_CI, ConfigWriter
from tests.integration.conftest import ImapAccount


class SlowWatch:
    """One INBOX whose sync blocks until `release`; its watcher reports a change once the
    sync has started (so the wake finds the sync job running and is kept pending)."""

    name: ClassVar[str] = "slowwatch"
    options: ClassVar[tuple[spi.Option, ...]] = ()
    syncing = threading.Event()
    release = threading.Event()
    done = threading.Event()
    woke = threading.Event()

    def __init__(self, config: spi.ConnectorConfig) -> None:
        pass

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        return [spi.RemoteFolder("INBOX", "INBOX", spi.FolderRole.INBOX)]

    def fetch_changes(self, folder: spi.RemoteFolder, cursor: str | None, limit: int) -> Any:
        SlowWatch.syncing.set()
        SlowWatch.release.wait(30)
        return spi.ChangeBatch(messages=[], cursor="1", more=False)

    def wait_for_changes(self, timeout: float) -> bool:
        if SlowWatch.syncing.is_set() and not SlowWatch.woke.is_set():
            SlowWatch.woke.set()
            return True
        SlowWatch.done.wait(timeout)
        return False

    def close(self) -> None:
        pass


@pytest.fixture
def slowwatch() -> Iterator[type[SlowWatch]]:
    for e in (SlowWatch.syncing, SlowWatch.release, SlowWatch.done, SlowWatch.woke):
        e.clear()
    registry.register("slowwatch", SlowWatch)  # type: ignore[arg-type]
    yield SlowWatch
    SlowWatch.release.set()
    SlowWatch.done.set()
    registry.unregister("slowwatch")


def test_a_stop_during_a_sync_with_a_wake_pending_ends_within_10_s(
    db_url: str,
    write_config: ConfigWriter,
    factory: sessionmaker[Session],
    slowwatch: type[SlowWatch],
) -> None:
    mailbox = """
        [[mailboxes]]
        name = "box"
        connector = "slowwatch"
        owner = "alice@example.com"
        [sync]
        interval = 3600
        """
    cfg = config.load(write_config(db_url, mailbox))
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run_forever, args=(cfg, factory, stop), daemon=True)
    runner.start()
    assert slowwatch.syncing.wait(15), "the sync never started"
    assert slowwatch.woke.wait(15), "the watcher never woke the sync"
    time.sleep(0.5)  # wall clock: let the scheduler drop the wake (the sync job runs)
    stop.set()
    slowwatch.done.set()
    # The sync ends once the shutdown has begun: its wake is still pending.
    threading.Timer(1.0, slowwatch.release.set).start()
    runner.join(10)
    assert not runner.is_alive(), "the daemon hung on shutdown"


# --- IDLE keepalives --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chatty_dovecot() -> Iterator[DovecotServer]:
    """A Dovecot that sends "* OK Still here" every second during IDLE."""
    if dovecot_binary() is None:
        reason = "Dovecot is not installed"
        if IN_CI:
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    server = DovecotServer()
    with Path(server.config_file).open("a") as f:
        f.write("imap_idle_notify_interval = 1 secs\n")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def chatty_account(chatty_dovecot: DovecotServer) -> Iterator[ImapAccount]:
    acc = ImapAccount(chatty_dovecot, DovecotServer.new_user())
    try:
        yield acc
    finally:
        acc.close()


def test_idle_waits_through_the_servers_keepalives(chatty_account: ImapAccount) -> None:
    conn = chatty_account.connector(idle=True)
    started = time.monotonic()  # wall clock: the wait's length is what is tested
    assert conn.wait_for_changes(4.0) is False
    assert time.monotonic() - started >= 3.5


def test_a_watcher_keeps_watching_across_keepalives(chatty_account: ImapAccount) -> None:
    stop = threading.Event()
    woken: list[str] = []
    watcher = watch.Watcher("box", chatty_account.connector(idle=True), woken.append, stop, 3.0)
    watcher.thread.start()
    try:
        time.sleep(7)  # wall clock: two slices, each crossed by keepalives
        assert watcher.thread.is_alive(), "the watcher stopped on a keepalive"
        assert woken == []
        chatty_account.server.append(chatty_account.user, "INBOX", [b"Subject: x\r\n\r\nhi\r\n"])
        deadline = time.monotonic() + 10  # wall clock: bounds the wait for the change
        while not woken and time.monotonic() < deadline:
            time.sleep(0.1)
        assert woken == ["box"]
    finally:
        stop.set()
        watcher.thread.join(10)
