"""The CLI as a user meets it: init, config check, run --once on the sample mailbox,
threads and messages, status, exit codes, the daemon's start and clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.helpers import cli, cli_json
from tests.conftest import REPO, ConfigWriter


def sample_config(write_config: ConfigWriter, db_url: str) -> Path:
    return write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice-archive"
        connector = "maildir"
        path = "{REPO / "examples" / "sample-mailbox"}"
        owner = "alice@example.com"
        """,
    )


def test_init_writes_a_working_starter_file(tmp_path: Path) -> None:
    target = tmp_path / "mm.toml"
    proc = cli("init", str(target))
    assert target.exists() and "run --once" in proc.stdout
    assert cli("init", str(target), check=False).returncode == 1  # never overwrites silently
    # The starter file reads the repository's sample mailbox: it runs with no edit.
    out = cli("--config", str(target), "run", "--once").stdout
    assert "alice-archive: ok" in out


def test_config_check_names_the_key_and_the_fix(tmp_path: Path, write_config: ConfigWriter) -> None:
    bad = write_config(
        "sqlite:///x.db",
        """
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        pathh = "somewhere"
        owner = "alice@example.com"
        """,
    )
    proc = cli("config", "check", config=bad, check=False)
    assert proc.returncode == 2
    assert "pathh" in proc.stderr and "did you mean 'path'" in proc.stderr
    good = write_config("sqlite:///x.db", "", name="good.toml")
    assert "OK" in cli("config", "check", config=good).stdout


def test_run_once_then_threads_messages_and_status(db_url: str, write_config: ConfigWriter) -> None:
    cfg = sample_config(write_config, db_url)
    out = cli("run", "--once", config=cfg).stdout
    assert "alice-archive: ok" in out and "quarantined" in out
    assert "reminders:" in out and "threads evaluated" in out  # the follow-up jobs ran too
    status = cli_json("status", config=cfg)
    assert status["totals"]["messages"] == 40
    assert status["totals"]["auto_replies"] == 2 and status["totals"]["bounces"] == 1
    threads = cli_json("threads", "list", "--search", "Boulangeries", config=cfg)
    assert threads and all("Boulangeries" in t["subject"] for t in threads)
    longest = max(cli_json("threads", "list", config=cfg), key=lambda t: t["message_count"])
    detail = cli_json("threads", "show", str(longest["id"]), config=cfg)
    assert len(detail["messages"]) == longest["message_count"] >= 5
    first = detail["messages"][0]
    msg = cli_json("messages", "show", first["message_id"], config=cfg)
    assert msg["thread_id"] == longest["id"] and msg["locations"][0]["mailbox"] == "alice-archive"
    raw = cli("messages", "show", str(msg["id"]), "--raw", config=cfg).stdout
    assert first["message_id"] in raw
    text = cli("threads", "show", str(longest["id"]), config=cfg).stdout
    assert longest["subject"][:30] in text
    assert cli("threads", "show", "999999", config=cfg, check=False).returncode == 1
    unknown = cli("sync", "--mailbox", "nope", config=cfg, check=False)
    assert unknown.returncode == 2 and "alice-archive" in unknown.stderr


def test_failed_mailbox_gives_exit_code_1_and_is_reported(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    cfg = write_config(
        f"sqlite:///{tmp_path / 'f.db'}",
        f"""
        [[mailboxes]]
        name = "missing"
        connector = "maildir"
        path = "{tmp_path / "does-not-exist"}"
        owner = "alice@example.com"
        """,
    )
    proc = cli("sync", "--json", config=cfg, check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)["mailboxes"][0]
    assert report["status"] == "error" and "does-not-exist" in report["error"]
    status = cli_json("status", config=cfg)
    assert "does-not-exist" in status["mailboxes"][0]["last_error"]


def test_daemon_syncs_then_stops_cleanly_on_sigterm(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    db = tmp_path / "d.db"
    cfg = sample_config(write_config, f"sqlite:///{db}")
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "--config", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        synced = False
        last = ""
        while time.monotonic() < deadline and not synced:
            time.sleep(0.5)
            if proc.poll() is not None:
                break
            status = cli("status", "--json", config=cfg, check=False)
            last = (status.stdout if status.returncode == 0 else status.stderr)[-2000:]
            if status.returncode == 0:
                synced = json.loads(status.stdout)["totals"]["messages"] == 40
        if not synced:  # say what the daemon was doing
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(
                f"the daemon did not sync the sample mailbox within 60 s (exit code "
                f"{proc.returncode}); last status: {last}\ndaemon stderr:\n{err[-4000:]}"
            )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "daemon stopped" in err


@pytest.mark.parametrize("flag", ["--help", "sync --help", "threads list --help"])
def test_help_explains(flag: str) -> None:
    out = cli(*flag.split()).stdout
    assert "Usage:" in out and len(out.splitlines()) > 4
