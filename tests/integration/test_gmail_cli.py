"""Gmail through the core: the sync engine and the CLI (`sync`, `mailbox test`, `auth`,
`secrets`) on SQLite and PostgreSQL, the refresh token in the encrypted token store.

The CLI runs in-process (click's runner): the same command code as `mailmanager ...`,
without a process start (about a second) per call."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.cli.app import main
from mailmanager.db import models, tokens
from mailmanager.sync import engine as sync
from mailmanager.testing.fakes.gmail_server import GmailFake
from tests.conftest import ConfigWriter
from tests.integration.gmail_support import msg
from tests.mailgen import make

MAILBOX = "alice-gmail"


@pytest.fixture
def fake() -> Iterator[GmailFake]:
    server = GmailFake()
    yield server
    server.close()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, value)
    monkeypatch.delenv(tokens.ENV_KEY_FILE, raising=False)
    return value


@pytest.fixture
def cfg_path(db_url: str, write_config: ConfigWriter, fake: GmailFake, tmp_path: Path) -> Path:
    client_id, _ = fake.register_client()
    secret = tmp_path / "gmail-client.json"
    secret.write_text(fake.client_json(client_id))
    os.chmod(secret, 0o600)
    fake.cli_client = client_id  # type: ignore[attr-defined]
    return write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "{MAILBOX}"
        connector = "gmail"
        owner = "alice@example.com"
        client_secret_file = "{secret}"
        api_endpoint = "{fake.url}"
        max_retries = 1
        [sync]
        batch_size = 2
        parse_workers = 0
        """,
    )


def authorize(fake: GmailFake, factory: sessionmaker[Session]) -> str:
    """What `mailmanager auth` leaves behind: a refresh token in the store."""
    refresh = fake.issue_refresh_token(fake.cli_client)  # type: ignore[attr-defined]
    tokens.DbTokenStore(factory, MAILBOX).save("refresh_token", refresh)
    return refresh


def cli(cfg: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(cfg), *args], catch_exceptions=False)


def test_sync_engine_reads_gmail_with_the_stored_token(
    fake: GmailFake, cfg_path: Path, factory: sessionmaker[Session], key: str
) -> None:
    client = "Jean Dupont <jean@acme.fr>"
    fake.append(make(client, "alice@example.com", "Devis", msgid="q1@acme.fr"), ["INBOX"], "T1")
    # Same Gmail thread, but no In-Reply-To: only the threadId hint joins them.
    fake.append(make("alice@example.com", client, "Votre devis", msgid="a1@example.com"),
                ["SENT"], "T1")  # fmt: skip
    fake.append(msg(3), ["INBOX", "UNREAD", "STARRED"], "T2")
    fake.append(msg(4), ["INBOX", "CATEGORY_PROMOTIONS"], "T3")  # excluded by default
    authorize(fake, factory)
    cfg = config.load(cfg_path)
    report = sync.Syncer(cfg, factory).sync(MAILBOX)
    assert report.status == "ok", report.error
    with factory() as s:
        threads = dict(s.execute(sa.select(models.Message.key, models.Message.thread_id)).all())
        locations = {
            loc.provider_id: (loc.flags, loc.labels)
            for loc in s.scalars(sa.select(models.MessageLocation))
        }
    assert len(threads) == 3 and threads["q1@acme.fr"] == threads["a1@example.com"]
    assert sorted(locations.values()) == [
        ("\\Flagged", "INBOX STARRED UNREAD"),
        ("\\Seen", "INBOX"),
        ("\\Seen", "SENT"),
    ]
    fake.append(msg(5), ["INBOX"], "T4")
    fake.expire_history()  # the next sync must rescan, keeping what it has
    again = sync.Syncer(cfg, factory).sync(MAILBOX)
    assert again.status == "ok" and again.total("new_messages") == 1
    with factory() as s:
        after = dict(s.execute(sa.select(models.Message.key, models.Message.thread_id)).all())
    assert {k: after[k] for k in threads} == threads and len(after) == 4


def test_mailbox_test_diagnoses_token_and_cursor(
    fake: GmailFake, cfg_path: Path, factory: sessionmaker[Session], key: str
) -> None:
    fake.append(msg(1))
    missing = cli(cfg_path, "mailbox", "test", MAILBOX)
    assert missing.exit_code == 1
    assert f"[FAIL] credentials: no refresh token for mailbox '{MAILBOX}'" in missing.output
    authorize(fake, factory)
    healthy = cli(cfg_path, "mailbox", "test", MAILBOX)
    assert healthy.exit_code == 0, healthy.output
    assert "[ok  ] profile: alice@example.com: 1 messages" in healthy.output
    assert cli(cfg_path, "sync").exit_code == 0
    valid = cli(cfg_path, "mailbox", "test", MAILBOX)
    assert "[ok  ] cursor All Mail: still valid" in valid.output
    fake.expire_history()
    expired = cli(cfg_path, "mailbox", "test", MAILBOX)
    assert expired.exit_code == 0 and "cursor All Mail: expired" in expired.output
    assert "the next sync rescans this folder" in expired.output
    fake.refresh.clear()  # revoked at Google
    revoked = cli(cfg_path, "mailbox", "test", MAILBOX)
    assert revoked.exit_code == 1 and "[FAIL] token: token refused: invalid_grant" in revoked.output
    assert f"mailmanager auth {MAILBOX}" in revoked.output


def test_auth_needs_a_key_first_and_imap_needs_no_consent(
    fake: GmailFake, cfg_path: Path, factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.delenv(tokens.ENV_KEY, raising=False)
    monkeypatch.delenv(tokens.ENV_KEY_FILE, raising=False)
    result = cli(cfg_path, "auth", MAILBOX)
    assert result.exit_code == 2 and "mailmanager secrets new-key" in result.output
    assert fake.calls == {}  # nobody was sent to a consent page
    text = cfg_path.read_text() + '\n[[mailboxes]]\nname = "archive"\nconnector = "maildir"\n'
    text += f'owner = "alice@example.com"\npath = "{tmp_path}"\n'
    cfg_path.write_text(text)
    plain = cli(cfg_path, "auth", "archive")
    assert plain.exit_code == 0 and "needs no consent" in plain.output


def test_secrets_new_key_and_rotate(
    fake: GmailFake, cfg_path: Path, factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch, key: str,
) -> None:  # fmt: skip
    fake.append(msg(1))
    refresh = authorize(fake, factory)
    new = CliRunner().invoke(main, ["secrets", "new-key"])
    fresh = new.stdout.splitlines()[0]
    assert new.exit_code == 0 and tokens.cipher([fresh]) and fresh != key
    monkeypatch.setenv(tokens.ENV_KEY, f"{fresh},{key}")
    rotated = cli(cfg_path, "secrets", "rotate")
    assert rotated.exit_code == 0 and "re-encrypted 1 token(s)" in rotated.output
    monkeypatch.setenv(tokens.ENV_KEY, fresh)  # the old key is gone: the token still reads
    assert tokens.DbTokenStore(factory, MAILBOX).load("refresh_token") == refresh
    assert cli(cfg_path, "mailbox", "test", MAILBOX).exit_code == 0
    monkeypatch.setenv(tokens.ENV_KEY, tokens.new_key())  # a key that never encrypted it
    broken = cli(cfg_path, "secrets", "rotate")
    assert broken.exit_code == 2 and "cannot be decrypted" in broken.output
