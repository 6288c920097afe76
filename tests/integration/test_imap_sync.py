"""Acceptance: the real CLI (`mailmanager --config F sync --json`, as a subprocess) syncing a
real Dovecot account into a temp SQLite database, with the config of the IMAP issue."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from tests.cli.helpers import canonical_state, cli_json
from tests.conftest import ConfigWriter
from tests.mailgen import day, make

ALICE = "alice@example.com"


def thread_mail(n_threads: int, replies: int = 2) -> tuple[list[bytes], list[bytes]]:
    """(inbox, sent): each thread opens with a client message, then alternates replies."""
    inbox: list[bytes] = []
    sent: list[bytes] = []
    for t in range(n_threads):
        client = f"buyer{t % 7}@client{t % 5}.fr"
        ids = [f"t{t}-0@client{t % 5}.fr"]
        inbox.append(make(client, ALICE, f"Devis {t}", msgid=ids[0], at=day(t % 30)))
        for r in range(1, replies + 1):
            ours = r % 2 == 1
            mid = f"t{t}-{r}@{'example.com' if ours else f'client{t % 5}.fr'}"
            raw = make(ALICE if ours else client, client if ours else ALICE, f"Re: Devis {t}",
                       msgid=mid, reply_to=list(ids), at=day(t % 30 + r))  # fmt: skip
            (sent if ours else inbox).append(raw)
            ids.append(mid)
    return inbox, sent


def mailbox_toml(server: DovecotServer, user: str, batch_size: int = 200) -> str:
    return f"""
        [[mailboxes]]
        name = "alice"
        connector = "imap"
        host = "127.0.0.1"
        port = {server.imap_port}
        security = "none"
        username = "{user}"
        password_env = "ALICE_IMAP_PASSWORD"
        owner = "{ALICE}"
        [sync]
        batch_size = {batch_size}
        """


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", PASSWORD)


def sync_json(config: Path) -> dict[str, Any]:
    out: dict[str, Any] = cli_json("sync", config=config)
    return out


def test_sync_counts_then_no_change_resync_adds_nothing(
    dovecot: DovecotServer, write_config: ConfigWriter, tmp_path: Path
) -> None:
    user = DovecotServer.new_user()
    inbox, sent = thread_mail(12)
    dovecot.append(user, "INBOX", inbox)
    dovecot.append(user, "Sent", sent)
    db = f"sqlite:///{tmp_path / 'mm.db'}"
    config = write_config(db, mailbox_toml(dovecot, user))

    first = sync_json(config)
    [report] = first["mailboxes"]
    assert report["status"] == "ok"
    fetched = {f["folder"]: f["fetched"] for f in report["folders"]}
    assert fetched == {"INBOX": len(inbox), "Sent": len(sent), "Archive": 0}
    assert first["totals"]["messages"] == len(inbox) + len(sent)
    assert first["totals"]["threads"] == 12
    state = canonical_state(db)

    again = sync_json(config)
    assert again["mailboxes"][0]["new_messages"] == 0
    assert again["mailboxes"][0]["fetched"] == 0
    assert again["totals"] == first["totals"]
    assert canonical_state(db) == state

    dovecot.deliver(user, make("late@client9.fr", ALICE, "Nouveau", msgid="late@client9.fr"))
    third = sync_json(config)
    assert third["mailboxes"][0]["new_messages"] == 1
    assert third["totals"]["messages"] == first["totals"]["messages"] + 1


def _count(db_file: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=0.2) as conn:
            return int(conn.execute("select count(*) from messages").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_minus_nine_mid_sync_then_resume(
    dovecot: DovecotServer, write_config: ConfigWriter, tmp_path: Path
) -> None:
    user = DovecotServer.new_user()
    inbox, sent = thread_mail(150, replies=3)
    dovecot.append(user, "INBOX", inbox)
    dovecot.append(user, "Sent", sent)
    total = len(inbox) + len(sent)

    reference_db = f"sqlite:///{tmp_path / 'reference.db'}"
    sync_json(write_config(reference_db, mailbox_toml(dovecot, user), name="reference.toml"))
    reference = canonical_state(reference_db)
    assert len(reference["messages"]) == total

    db_file = tmp_path / "killed.db"
    config = write_config(f"sqlite:///{db_file}", mailbox_toml(dovecot, user, batch_size=10))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "--config", str(config), "sync", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and _count(db_file) < 20:
        time.sleep(0.01)
    assert proc.poll() is None, "the sync ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the parse worker dies too
    proc.wait()
    partial = _count(db_file)
    assert 0 < partial < total

    resumed = sync_json(config)
    assert resumed["mailboxes"][0]["status"] == "ok"
    assert canonical_state(f"sqlite:///{db_file}") == reference
