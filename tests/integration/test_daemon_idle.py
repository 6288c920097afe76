"""The daemon's IMAP IDLE watcher against a real Dovecot: with `idle = true` a message
APPENDed to INBOX is synced within seconds although the sync timer is an hour away; the
watcher reconnects after the server drops it; bad credentials end the watcher (not the
daemon); with idle off no watcher starts. The daemon always stops within seconds."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, daemon
from mailmanager.db.models import Message
from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from tests.conftest import ConfigWriter
from tests.mailgen import day, make

ALICE = "alice@example.com"


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("WRONG_IMAP_PASSWORD", PASSWORD + "-not")


def mailbox_toml(server: DovecotServer, user: str, idle: bool, password: str = "ALICE") -> str:
    return f"""
        [[mailboxes]]
        name = "{user}"
        connector = "imap"
        host = "127.0.0.1"
        port = {server.imap_port}
        security = "none"
        username = "{user}"
        password_env = "{password}_IMAP_PASSWORD"
        owner = "{ALICE}"
        folders = ["INBOX"]
        idle = {str(idle).lower()}
        [sync]
        interval = 3600
        """


def message(n: int) -> bytes:
    return make(f"buyer{n}@client.fr", ALICE, f"Devis {n}", msgid=f"idle{n}@client.fr", at=day(n))


def message_ids(factory: sessionmaker[Session]) -> set[str]:
    with factory() as s:
        return set(s.scalars(sa.select(Message.message_id)))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def watcher_threads(user: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"idle:{user}" and t.is_alive()]


@contextmanager
def running(cfg: config.Config, factory: sessionmaker[Session]) -> Iterator[threading.Thread]:
    """`run_forever` in a thread; on exit, set stop and check it returns within 10 s."""
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=daemon.run_forever, args=(cfg, factory, stop, ready.set))
    runner.start()
    try:
        assert ready.wait(10)
        yield runner
    finally:
        stop.set()
        started = time.monotonic()
        runner.join(30)
        assert not runner.is_alive(), "run_forever did not return"
        assert time.monotonic() - started < 10, "run_forever took too long to stop"


def test_idle_syncs_an_appended_message_at_once(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
) -> None:
    user = DovecotServer.new_user()
    dovecot.append(user, "INBOX", [message(0), message(1)])
    cfg = config.load(write_config(db_url, mailbox_toml(dovecot, user, idle=True)))
    with running(cfg, factory):
        seeded = {"idle0@client.fr", "idle1@client.fr"}
        wait_until(lambda: message_ids(factory) == seeded, 40, "the first sync")
        assert len(watcher_threads(user)) == 1
        dovecot.append(user, "INBOX", [message(2)])
        wait_until(lambda: "idle2@client.fr" in message_ids(factory), 30, "the IDLE sync")
    assert watcher_threads(user) == []


def test_idle_reconnects_after_the_server_drops_the_link(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mailmanager.sync.watch")
    user = DovecotServer.new_user()
    dovecot.append(user, "INBOX", [message(0)])
    cfg = config.load(write_config(db_url, mailbox_toml(dovecot, user, idle=True)))

    def logged(action: str) -> bool:
        return any(getattr(r, "action", None) == action for r in caplog.records)

    with running(cfg, factory):
        wait_until(lambda: message_ids(factory) == {"idle0@client.fr"}, 40, "the first sync")
        wait_until(lambda: logged("watch_start"), 15, "the watcher")
        time.sleep(1)
        subprocess.run(
            ["doveadm", "-c", str(dovecot.config_file), "kick", user],
            check=True, capture_output=True,
        )  # fmt: skip
        wait_until(lambda: logged("watch_transient"), 40, "the watcher to see the lost link")
        dovecot.append(user, "INBOX", [message(1)])  # while disconnected (5 s backoff)
        wait_until(lambda: "idle1@client.fr" in message_ids(factory), 40, "the catch-up sync")
        assert len(watcher_threads(user)) == 1
    assert not any(r.levelno >= logging.ERROR for r in caplog.records if r.name.endswith("watch"))


def test_bad_credentials_end_the_watcher_not_the_daemon(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mailmanager.sync.watch")
    user = DovecotServer.new_user()
    toml = mailbox_toml(dovecot, user, idle=True, password="WRONG")
    cfg = config.load(write_config(db_url, toml))
    with running(cfg, factory) as runner:
        wait_until(lambda: not watcher_threads(user), 40, "the watcher to give up")
        assert runner.is_alive()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.endswith("watch")]
    assert [getattr(r, "action", None) for r in errors] == ["watch_auth_error"]
    assert PASSWORD not in caplog.text


def test_idle_off_starts_no_watcher(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
) -> None:
    user = DovecotServer.new_user()
    dovecot.append(user, "INBOX", [message(0)])
    cfg = config.load(write_config(db_url, mailbox_toml(dovecot, user, idle=False)))
    with running(cfg, factory):
        wait_until(lambda: message_ids(factory) == {"idle0@client.fr"}, 40, "the first sync")
        assert watcher_threads(user) == []


def test_a_wake_during_a_running_sync_runs_it_again_after() -> None:
    """The sync job has max_instances=1: the scheduler drops a run asked while one runs; the
    daemon's wake keeps it and runs the sync again once the running one ends."""
    from apscheduler.schedulers.background import BackgroundScheduler

    runs: list[float] = []
    release = threading.Event()

    def job() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            release.wait(10)  # the first sync is still running when the change comes

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(job, "interval", id="sync:box", seconds=3600, max_instances=1,
                      coalesce=True, misfire_grace_time=60, next_run_time=None)  # fmt: skip
    wake = daemon._SyncNow(scheduler)
    scheduler.start()
    try:
        wake("box")
        wait_until(lambda: len(runs) == 1, 5, "the first run")
        wake("box")  # dropped by the scheduler (max_instances), kept by the wake
        time.sleep(0.5)
        assert len(runs) == 1
        release.set()
        wait_until(lambda: len(runs) == 2, 5, "the run asked during the first one")
        time.sleep(0.5)
        assert len(runs) == 2
    finally:
        release.set()
        scheduler.shutdown(wait=True)
