"""`mailmanager config check --connect` against a real Dovecot and a real SMTP server
(aiosmtpd): every mailbox is tried as `mailbox test` tries it, the SMTP server is logged in
to, and nothing is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from tests.cli.helpers import cli
from tests.conftest import ConfigWriter
from tests.integration.notify_support import Sink, free_port


def _config(
    write_config: ConfigWriter, tmp_path: Path, dovecot: DovecotServer, smtp_port: int
) -> Path:
    user = DovecotServer.new_user()
    return write_config(
        f"sqlite:///{tmp_path / 'c.db'}",
        f"""
        [[mailboxes]]
        name = "bob-imap"
        connector = "imap"
        owner = "bob@example.com"
        host = "127.0.0.1"
        port = {dovecot.imap_port}
        security = "none"
        username = "{user}"
        password_env = "MM_TEST_IMAP_PASSWORD"
        """,
        extra=f"""
        [smtp]
        host = "127.0.0.1"
        port = {smtp_port}
        security = "none"
        username = "mailmanager"
        password_env = "MM_TEST_SMTP_PASSWORD"
        """,
    )


def test_connect_tries_every_mailbox_and_smtp(
    dovecot: DovecotServer,
    write_config: ConfigWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MM_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("MM_TEST_SMTP_PASSWORD", "smtp-secret")
    sink = Sink(user="mailmanager", password="smtp-secret").start()
    try:
        cfg = _config(write_config, tmp_path, dovecot, sink.port)
        cli("db", "upgrade", config=cfg)
        out = cli("config", "check", "--connect", config=cfg).stdout
    finally:
        sink.stop()
    assert "schema: current" in out
    assert "mailbox bob-imap (imap):" in out
    for step in ("reach", "tls", "login", "capabilities", "folders"):
        assert f"[ok  ] {step}" in out, out
    assert "[ok  ] connect, TLS, login: logged in as 'mailmanager'" in out
    assert sink.logins == ["mailmanager"] and sink.received == []  # nothing sent


def test_connect_fails_with_exit_1_when_smtp_is_down(
    dovecot: DovecotServer,
    write_config: ConfigWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MM_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("MM_TEST_SMTP_PASSWORD", "smtp-secret")
    cfg = _config(write_config, tmp_path, dovecot, free_port())
    proc = cli("config", "check", "--connect", config=cfg, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "[ok  ] login" in proc.stdout  # the mailbox is fine
    assert "[FAIL] connect, TLS, login: cannot connect to 127.0.0.1" in proc.stdout
    assert "cursors: skipped" in proc.stdout  # no database yet: nothing to try
