"""Issue #17 (part A): a starter config that runs as written, `config check` running the
checks `run` makes, one bad mailbox never stopping the others, and the daemon's and
`mailbox test`'s messages and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cli.helpers import cli, cli_json
from tests.conftest import REPO, ConfigWriter

SAMPLE = REPO / "examples" / "sample-mailbox"


def test_init_in_an_empty_folder_runs_with_no_edit(tmp_path: Path) -> None:
    target = tmp_path / "mm.toml"
    cli("init", str(target))
    check = cli("config", "check", config=target)
    out = cli("run", "--once", config=target).stdout
    assert "alice-archive: ok" in out
    assert cli_json("status", config=target)["totals"]["messages"] == 40
    assert "OK" in check.stdout and "database: sqlite:///" in check.stdout  # and which one


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "mm.toml"
    cli("init", str(target))
    target.write_text("# mine\n")
    again = cli("init", str(target), check=False)
    assert again.returncode == 1 and "--force" in again.stderr
    assert target.read_text() == "# mine\n"
    cli("init", "--force", str(target))
    assert "[[mailboxes]]" in target.read_text()


def test_init_creates_missing_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.toml"
    proc = cli("init", str(target))
    assert target.exists() and "Traceback" not in proc.stderr
    assert "OK" in cli("config", "check", config=target).stdout
    blocker = tmp_path / "file"
    blocker.write_text("")
    refused = cli("init", str(blocker / "mm.toml"), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "cannot write" in refused.stderr and "choose another path" in refused.stderr


def _imap(name: str, host: str, security: str, port: int = 0) -> str:
    return f"""
        [[mailboxes]]
        name = "{name}"
        connector = "imap"
        owner = "bob@example.com"
        host = "{host}"
        security = "{security}"
        {f"port = {port}" if port else ""}
        username = "bob"
        password_env = "MM_TEST_IMAP_PASSWORD"
        """


def _maildir(name: str, path: Path) -> str:
    return f"""
        [[mailboxes]]
        name = "{name}"
        connector = "maildir"
        path = "{path}"
        owner = "alice@example.com"
        """


@pytest.fixture
def imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM_TEST_IMAP_PASSWORD", "secret")


@pytest.mark.usefixtures("imap_password")
def test_config_check_rejects_what_run_rejects(tmp_path: Path, write_config: ConfigWriter) -> None:
    cfg = write_config(
        f"sqlite:///{tmp_path / 'c.db'}",
        _imap("remote", "imap.example.com", "none") + _maildir("gone", tmp_path / "nowhere"),
    )
    proc = cli("config", "check", config=cfg, check=False)
    assert proc.returncode == 2, proc.stdout
    assert "mailboxes.remote.security" in proc.stderr and '"tls"' in proc.stderr
    assert f"{tmp_path / 'nowhere'} does not exist" in proc.stderr
    assert "mailboxes[1].path" in proc.stderr
    assert not (tmp_path / "c.db").exists()  # checking opens no database


def test_config_check_names_an_owner_who_is_not_a_user(write_config: ConfigWriter) -> None:
    cfg = write_config("sqlite:///x.db", _maildir("a", SAMPLE).replace("alice@", "carol@"))
    proc = cli("config", "check", config=cfg, check=False)
    assert proc.returncode == 2
    assert "'carol@example.com' is not a user" in proc.stderr and "owner" in proc.stderr
    assert "add a [[users]] table with email = 'carol@example.com'" in proc.stderr


@pytest.mark.usefixtures("imap_password")
def test_one_bad_mailbox_does_not_stop_the_others(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    cfg = write_config(
        f"sqlite:///{tmp_path / 'r.db'}",
        _maildir("first", SAMPLE)
        + _imap("second", "imap.example.com", "none")
        + _maildir("third", SAMPLE),
    )
    proc = cli("run", "--once", config=cfg, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "first: ok" in proc.stdout and "third: ok" in proc.stdout
    assert "second: error" in proc.stdout and "security" in proc.stdout
    assert "reminders:" in proc.stdout  # the follow-up jobs ran too
    status = {m["name"]: m for m in cli_json("status", config=cfg)["mailboxes"]}
    assert status["first"]["messages"] == status["third"]["messages"] == 40
    assert "configuration error" in status["second"]["last_error"]
    assert "security" in status["second"]["last_error"]
    assert "last error:" in cli("status", config=cfg).stdout


def test_status_and_banner_count_disabled_mailboxes_apart(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    off = _maildir("off", SAMPLE) + "enabled = false\n"
    cfg = write_config(f"sqlite:///{tmp_path / 's.db'}", _maildir("on", SAMPLE) + off)
    cli("run", "--once", config=cfg)
    text = cli("status", config=cfg).stdout
    assert "off (maildir): disabled" in text and "on (maildir): ok" in text
    assert "1 mailboxes to sync, 1 disabled" in cli("config", "check", config=cfg).stdout
    proc = _daemon(cfg)
    try:
        banner = _read_banner(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert "daemon: 1 mailboxes" in banner and "1 disabled" in banner


def _daemon(cfg: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "--config", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _read_banner(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()  # blocks until the daemon has started
    assert "mailmanager daemon" in line, line
    return line


def test_sigint_stops_the_daemon_with_exit_code_130(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    cfg = write_config(f"sqlite:///{tmp_path / 'd.db'}", _maildir("a", SAMPLE))
    proc = _daemon(cfg)
    try:
        _read_banner(proc)
        assert proc.stderr is not None
        for line in proc.stderr:  # its signal handlers are in place once it has started
            if "daemon started" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def _answer_plain_imap(conn: socket.socket) -> None:
    """A plain-text IMAP server without STARTTLS: a greeting, CAPABILITY and LOGOUT."""
    with conn, contextlib.suppress(OSError):  # the "reach" probe connects and drops
        conn.sendall(b"* OK ready\r\n")
        for line in conn.makefile("rb"):
            tag, _, command = line.decode("latin-1").strip().partition(" ")
            if command.upper() == "CAPABILITY":
                conn.sendall(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n".encode())
            elif command.upper() == "LOGOUT":
                conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                return
            else:  # a TLS ClientHello, or anything else: not IMAP this server knows
                conn.sendall(b"* BAD what?\r\n")


@pytest.fixture
def plain_imap_port() -> Iterator[int]:
    """A loopback server that answers like a plain-text IMAP server without STARTTLS (what a
    TLS client meets on port 143 of a server that offers no STARTTLS)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            threading.Thread(target=_answer_plain_imap, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    done.set()
    thread.join(5)
    server.close()


@pytest.mark.usefixtures("imap_password")
def test_mailbox_test_hints_at_security_and_port(
    tmp_path: Path, write_config: ConfigWriter, plain_imap_port: int
) -> None:
    cfg = write_config(
        f"sqlite:///{tmp_path / 'm.db'}", _imap("box", "127.0.0.1", "tls", plain_imap_port)
    )
    cli("db", "upgrade", config=cfg)
    proc = cli("mailbox", "test", "box", config=cfg, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "[FAIL] tls" in proc.stdout
    assert f"did not answer TLS on port {plain_imap_port}" in proc.stdout
    assert 'security = "starttls"' in proc.stdout and "port = 993" in proc.stdout


def test_mailbox_test_needs_no_current_schema(tmp_path: Path, write_config: ConfigWriter) -> None:
    db = tmp_path / "old.db"
    cfg = write_config(f"sqlite:///{db}", _maildir("a", SAMPLE))
    cli("sync", config=cfg)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0010'")
    engine.dispose()
    assert cli("status", config=cfg, check=False).returncode == 3  # the schema is old
    proc = cli("mailbox", "test", "a", config=cfg)
    assert "[ok  ] messages counted: 40 messages" in proc.stdout
    assert "cursors: skipped" in proc.stdout and "db upgrade" in proc.stdout


def test_sync_json_reports_the_bad_mailbox_and_syncs_the_rest(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    cfg = write_config(
        f"sqlite:///{tmp_path / 'j.db'}",
        _maildir("gone", tmp_path / "nowhere") + _maildir("here", SAMPLE),
    )
    proc = cli("sync", "--json", config=cfg, check=False)
    assert proc.returncode == 1
    reports = {r["mailbox"]: r for r in json.loads(proc.stdout)["mailboxes"]}
    assert reports["here"]["status"] == "ok" and reports["here"]["new_messages"] == 40
    assert reports["gone"]["status"] == "error" and "nowhere" in reports["gone"]["error"]


@pytest.mark.usefixtures("imap_password")
def test_mailbox_test_hints_when_starttls_is_not_offered(
    tmp_path: Path, write_config: ConfigWriter, plain_imap_port: int
) -> None:
    cfg = write_config(
        f"sqlite:///{tmp_path / 'm.db'}", _imap("box", "127.0.0.1", "starttls", plain_imap_port)
    )
    cli("db", "upgrade", config=cfg)
    proc = cli("mailbox", "test", "box", config=cfg, check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"[FAIL] tls: 127.0.0.1 does not offer STARTTLS on port {plain_imap_port}" in proc.stdout
    assert 'set security = "tls" and port = 993' in proc.stdout
