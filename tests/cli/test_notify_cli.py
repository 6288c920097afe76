"""Acceptance: `mailmanager digest send` killed with -9 before its commit or right after the
SMTP server accepted the digest, then re-run: the user gets the digest exactly once. Plus
`reminders preview`, `outbox list|flush|retry` and `status`, all as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.integration.notify_support import (
    Sink,
    cli_command,
    evaluate,
    free_port,
    outbox_rows,
    reminder_statuses,
    run_cli,
    working_morning,
    write_maildir_message,
)
from tests.mailgen import make

# 08:35 in Paris on the next working day. The CLI runs in subprocesses, whose clock a test
# cannot pin with time-machine, and `outbox retry|flush` act at the real time: the slot is
# kept just ahead of it (a fixed slot fails when the real day is far from it).
SLOT = working_morning(datetime.now(UTC))  # wall clock: see above; mail is dated from SLOT
NOW = SLOT.isoformat()


@dataclass
class Setup:
    config: Path
    factory: sessionmaker[Session]
    maildir: Path
    reminder: int


def setup(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp: Path, port: int
) -> Setup:
    maildir = tmp / "alice-mail"
    write_maildir_message(
        maildir,
        "Sent",
        make(
            "Alice Martin <alice@example.com>",
            "Jean Dupont <jean.dupont@acme-industrie.fr>",
            "Offre maintenance été",
            body="Bonjour Jean,\nvoici l'offre. Pouvez-vous me confirmer votre accord ?\n",
            msgid="q2@example.com",
            at=SLOT - timedelta(days=7),
        ),
    )
    write_maildir_message(
        maildir, "INBOX", make("Bob <bob@example.com>", "alice@example.com", "Hi")
    )
    cfg = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        path = "{maildir}"
        owner = "alice@example.com"
        [sync]
        parse_workers = 0
        [smtp]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        from = "Mailmanager <mailmanager@example.com>"
        """,
    )
    loaded = config.load(cfg)
    sync.Syncer(loaded, factory).sync("alice")  # in-process: the CLI runs below are the test
    evaluate(factory, loaded, SLOT)
    (rid,) = reminder_statuses(factory)
    return Setup(cfg, factory, maildir, rid)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    # It also delivers into Alice's Maildir INBOX, as her real server would.
    s = Sink(maildir=tmp_path / "alice-mail").start()
    yield s
    s.stop()


def run_until_paused(config: Path, point: str, *args: str) -> None:
    """Start the CLI with the test hook, wait until it pauses at `point`, kill -9 it."""
    env = dict(os.environ, MAILMANAGER_TEST_PAUSE_AT=point)
    env.pop("MAILMANAGER_CONFIG", None)
    proc = subprocess.Popen(
        cli_command(config, *args),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith(f"PAUSED {point}"):
            break
    else:
        proc.wait()
        raise AssertionError(f"never paused at {point}:\n{''.join(lines)}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_kill9_before_commit_then_rerun_sends_once(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp_path: Path,
    sink: Sink,
) -> None:  # fmt: skip
    s = setup(db_url, factory, write_config, tmp_path, sink.port)
    run_until_paused(s.config, "before_commit", "digest", "send", "--now", NOW)
    # Rendered and written, not committed: nothing happened.
    assert sink.received == [] and outbox_rows(factory) == []
    assert reminder_statuses(factory) == {s.reminder: "pending"}
    proc = run_cli(s.config, "digest", "send", "--now", NOW)
    assert proc.returncode == 0, proc.stderr
    assert len(sink.received) == 1
    assert reminder_statuses(factory) == {s.reminder: "sent"}
    assert [r.status for r in outbox_rows(factory)] == ["sent"]


def test_kill9_after_smtp_accept_is_found_in_the_synced_inbox_not_resent(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp_path: Path,
    sink: Sink,
) -> None:  # fmt: skip
    s = setup(db_url, factory, write_config, tmp_path, sink.port)
    run_until_paused(s.config, "after_smtp", "digest", "send", "--now", NOW)
    assert len(sink.received) == 1  # the server has it; the database says "sending"
    assert [r.status for r in outbox_rows(factory)] == ["sending"]
    # Re-run at once: Alice's mailbox has not been synced since, so the row waits.
    report = json.loads(run_cli(s.config, "digest", "send", "--now", NOW, "--json").stdout)
    assert report["outbox"]["waiting"] == [outbox_rows(factory)[0].id]
    assert len(sink.received) == 1
    # The daemon syncs Alice's inbox, where the digest was delivered; the next flush
    # finds its Message-ID there and marks it sent without sending it again.
    assert run_cli(s.config, "sync").returncode == 0
    flushed = json.loads(run_cli(s.config, "outbox", "flush", "--json").stdout)
    assert flushed["reconciled"] == [outbox_rows(factory)[0].id] and flushed["sent"] == []
    assert len(sink.received) == 1
    (row,) = outbox_rows(factory)
    assert row.status == "sent" and not row.possible_duplicate
    assert reminder_statuses(factory) == {s.reminder: "sent"}


def test_preview_list_retry_and_status(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp_path: Path
) -> None:
    port = free_port()  # no server yet
    s = setup(db_url, factory, write_config, tmp_path, port)
    text = run_cli(s.config, "reminders", "preview", "--user", "alice@example.com", "--now", NOW)
    assert text.returncode == 0, text.stderr
    assert "Subject: [mailmanager] 1 relance à faire" in text.stdout
    assert "depuis" in text.stdout and "Offre maintenance été" in text.stdout
    html = run_cli(s.config, "reminders", "preview", "-u", "alice@example.com", "--html")
    assert '<html lang="fr">' in html.stdout
    assert outbox_rows(factory) == [] and reminder_statuses(factory) == {s.reminder: "pending"}

    down = run_cli(s.config, "digest", "send", "--now", NOW)
    assert down.returncode == 1 and "server unreachable" in down.stdout
    listed = json.loads(run_cli(s.config, "outbox", "list", "--json").stdout)
    assert [(r["status"], r["attempts"]) for r in listed] == [("pending", 1)]
    assert "cannot connect" in listed[0]["last_error"]
    status = json.loads(run_cli(s.config, "status", "--json").stdout)
    assert status["reminders"]["sent"] == 1 and status["outbox"]["pending"] == 1

    sink = Sink(port=port).start()
    try:
        retry = run_cli(s.config, "outbox", "retry", str(listed[0]["id"]))
        assert retry.returncode == 0, retry.stderr
        flushed = run_cli(s.config, "outbox", "flush")
        assert flushed.returncode == 0 and "1 sent" in flushed.stdout
    finally:
        sink.stop()
    assert len(sink.received) == 1
