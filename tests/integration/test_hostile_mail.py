"""No single message can stop a mailbox (issue #16): whatever one message holds, the sync
stores it (cleaned) or quarantines it with its reason, stores the messages after it, moves
its cursor and ends its run. On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from connectors.memory import MemoryAccount, MemoryConnector
from mailmanager import config, spi
from mailmanager.db import models, store
from mailmanager.db.models import Message
from mailmanager.mail import storable
from mailmanager.sync import engine as sync
from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from tests.cli.helpers import cli_json
from tests.conftest import ConfigWriter
from tests.integration.notify_support import write_maildir_message
from tests.mailgen import make

ALICE = "alice@example.com"
CLIENT = "jean@acme.fr"
CANARY = make(CLIENT, ALICE, "Canari", msgid="canary@acme.fr")
UTF7_SURROGATE = "=?utf-7?Q?+2D0-?="
# 900 CJK characters, 2,700+ bytes of UTF-8 that do not compress: over PostgreSQL's btree
# limit for an index row.
LONG_ID = "".join(chr(0x4E00 + i * 7919 % 20000) for i in range(900)) + "@acme.fr"


def surrogate_message() -> bytes:
    """~160 bytes that stopped a mailbox for good: a UTF-7 lone surrogate in the subject,
    the display name and the body."""
    return (
        f"From: {UTF7_SURROGATE} <{CLIENT}>\r\nTo: {ALICE}\r\n"
        f"Subject: {UTF7_SURROGATE}\r\nMessage-ID: <s@acme.fr>\r\n"
        "Date: Mon, 2 Nov 2026 09:00:00 +0000\r\n"
        'Content-Type: text/plain; charset="utf-7"\r\n\r\n+2D0-\r\n'
    ).encode()


def raw_message(sender: str, to: str, subject: str, msgid: str, references: str = "") -> bytes:
    """A message with raw UTF-8 headers (RFC 6532), which `mailgen.make` cannot write."""
    refs = f"In-Reply-To: <{references}>\r\nReferences: <{references}>\r\n" if references else ""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n"
        f"{refs}Date: Mon, 2 Nov 2026 09:00:00 +0000\r\n\r\nBonjour\r\n"
    ).encode()


def long_id_message() -> bytes:
    return raw_message(CLIENT, ALICE, "Identifiant long", LONG_ID)


def sync_config(write_config: ConfigWriter, db_url: str, mailbox: str) -> config.Config:
    return config.load(write_config(db_url, mailbox + "\n[sync]\nparse_workers = 0\n"))


def assert_run_ended(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        statuses = s.scalars(sa.select(models.SyncRun.status)).all()
    assert statuses and "running" not in statuses


def message_ids(factory: sessionmaker[Session]) -> set[str]:
    with factory() as s:
        return set(s.scalars(sa.select(Message.message_id)))


def test_surrogate_message_then_canary_in_a_maildir(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp_path: Path
) -> None:
    root = tmp_path / "maildir"
    write_maildir_message(root, "INBOX", surrogate_message())
    write_maildir_message(root, "INBOX", long_id_message())
    write_maildir_message(root, "INBOX", CANARY)
    mailbox = f"""
        [[mailboxes]]
        name = "x"
        connector = "maildir"
        path = "{root}"
        owner = "{ALICE}"
        """
    report = sync.Syncer(sync_config(write_config, db_url, mailbox), factory).sync("x")
    assert report.status == "ok", report.error
    ids = message_ids(factory)
    assert {"canary@acme.fr", "s@acme.fr"} <= ids
    assert storable.identifier(LONG_ID) in ids
    with factory() as s:
        subject, name = s.execute(
            sa.select(Message.subject, Message.from_name).where(Message.message_id == "s@acme.fr")
        ).one()
        cursors = s.scalars(sa.select(models.Folder.cursor)).all()
    assert subject == "\ufffd" and name == "\ufffd"
    assert all(cursors)
    assert_run_ended(factory)


@pytest.fixture
def account() -> Iterator[MemoryAccount]:
    acct = MemoryConnector.account(f"acct-{uuid.uuid4().hex[:8]}")
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    yield acct
    acct.clear()


def memory_config(write_config: ConfigWriter, db_url: str, account: MemoryAccount) -> config.Config:
    mailbox = f"""
        [[mailboxes]]
        name = "x"
        connector = "memory"
        store = "{account.name}"
        owner = "{ALICE}"
        """
    return sync_config(write_config, db_url, mailbox)


def test_a_long_message_id_is_stored_hashed_and_still_threads(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, account: MemoryAccount
) -> None:
    account.append("INBOX", long_id_message())
    account.append("INBOX", raw_message(ALICE, CLIENT, "Re: Identifiant long", "r@x", LONG_ID))
    report = sync.Syncer(memory_config(write_config, db_url, account), factory).sync("x")
    assert report.status == "ok", report.error
    with factory() as s:
        rows = s.execute(sa.select(Message.message_id, Message.thread_id)).all()
    assert len(rows) == 2
    assert len({thread for _, thread in rows}) == 1  # the reply threads with the long id
    assert storable.identifier(LONG_ID) in {mid for mid, _ in rows}
    assert_run_ended(factory)


def test_a_message_the_database_refuses_is_quarantined_and_the_rest_stored(
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    account: MemoryAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The parser's own cleaning off: what reaches the database is what once stopped a
    # mailbox (a lone surrogate; on PostgreSQL an index row too big). Each such item is
    # quarantined with its reason; the batch, its cursor and the canary go on.
    for name in ("value", "identifier", "text"):
        monkeypatch.setattr(storable, name, lambda v: v)
    account.append("INBOX", surrogate_message())
    account.append("INBOX", long_id_message())
    account.append("INBOX", CANARY)
    report = sync.Syncer(memory_config(write_config, db_url, account), factory).sync("x")
    assert report.status == "ok", report.error
    assert "canary@acme.fr" in message_ids(factory)
    with factory() as s:
        reasons = s.scalars(sa.select(models.Quarantine.reason)).all()
        cursor = s.scalar(sa.select(models.Folder.cursor))
    assert any("UnicodeEncodeError" in r for r in reasons), reasons
    if db_url.startswith("postgresql"):
        assert any("ProgramLimitExceeded" in r for r in reasons), reasons
    assert cursor
    assert_run_ended(factory)


def test_an_unexpected_failure_ends_the_run_with_its_error(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, account: MemoryAccount
) -> None:
    cfg = memory_config(write_config, db_url, account)
    assert sync.Syncer(cfg, factory, hooks=[]).sync("x").status == "ok"  # the full scan
    account.append("INBOX", CANARY)

    def broken_hook(*_: object) -> None:
        raise RuntimeError("a later stage broke")

    report = sync.Syncer(cfg, factory, hooks=[broken_hook]).sync("x")
    assert report.status == "error" and "a later stage broke" in (report.error or "")
    with factory() as s:
        run = s.scalars(sa.select(models.SyncRun).order_by(models.SyncRun.id.desc())).first()
        mailbox = s.scalars(sa.select(models.Mailbox)).one()
    assert run is not None and run.status == "error" and run.finished_at is not None
    assert mailbox.last_error and "a later stage broke" in mailbox.last_error


_PIECES = ["\x00", "\x1b]8;;http://x\x07", "\x1b[2J", "+2D0-", "=?utf-7?Q?+2D0-?=", "\\ud83d"]
_HOSTILE_TEXT = st.lists(
    st.characters(codec="utf-8", exclude_characters="\r\n") | st.sampled_from(_PIECES),
    max_size=20,
).map("".join)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    subject=_HOSTILE_TEXT,
    name=_HOSTILE_TEXT,
    msgid=_HOSTILE_TEXT,
    charset=st.sampled_from(["utf-7", "utf-8", "unicode-escape", "utf-16", "x-unknown"]),
    body=st.binary(max_size=200),
)
def test_generated_hostile_messages_never_stop_the_sync(
    sqlite_template: Path,
    tmp_path: Path,
    write_config: ConfigWriter,
    subject: str,
    name: str,
    msgid: str,
    charset: str,
    body: bytes,
) -> None:
    db = tmp_path / f"{uuid.uuid4().hex[:8]}.db"
    shutil.copy(sqlite_template, db)
    engine = store.make_engine(f"sqlite:///{db}")
    factory = store.session_factory(engine)
    acct = MemoryConnector.account(f"acct-{uuid.uuid4().hex[:8]}")
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    try:
        head = (
            f"From: {name} <{CLIENT}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Subject: =?{charset}?Q?{subject}?=\r\nMessage-ID: <{msgid}>\r\n"
            f"References: <{msgid}> <{LONG_ID}>\r\n"
            f'Content-Type: text/plain; charset="{charset}"\r\n\r\n'
        )
        acct.append("INBOX", head.encode("utf-8", "surrogatepass") + body)
        acct.append("INBOX", CANARY)
        cfg = memory_config(write_config, f"sqlite:///{db}", acct)
        report = sync.Syncer(cfg, factory, hooks=[]).sync("x")
        assert report.status == "ok", report.error
        assert "canary@acme.fr" in message_ids(factory)
        assert_run_ended(factory)
    finally:
        acct.clear()
        engine.dispose()


def test_over_imap_the_surrogate_message_does_not_stop_the_sync(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", PASSWORD)
    user = DovecotServer.new_user()
    dovecot.append(user, "INBOX", [surrogate_message(), long_id_message(), CANARY])
    mailbox = f"""
        [[mailboxes]]
        name = "alice"
        connector = "imap"
        host = "127.0.0.1"
        port = {dovecot.imap_port}
        security = "none"
        username = "{user}"
        password_env = "ALICE_IMAP_PASSWORD"
        owner = "{ALICE}"
        """
    config_path = write_config(db_url, mailbox)
    out = cli_json("sync", config=config_path)  # exits 0
    [report] = out["mailboxes"]
    assert report["status"] == "ok", report
    assert {"canary@acme.fr", "s@acme.fr", storable.identifier(LONG_ID)} <= message_ids(factory)
    assert_run_ended(factory)


def test_an_oversize_message_is_stored_as_headers_and_a_note(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, account: MemoryAccount
) -> None:
    big = make(CLIENT, ALICE, "Gros fichier", msgid="big@acme.fr", body="x" * 5000)
    account.append("INBOX", big)
    account.append("INBOX", CANARY)
    mailbox = f"""
        [[mailboxes]]
        name = "x"
        connector = "memory"
        store = "{account.name}"
        owner = "{ALICE}"
        """
    path = write_config(db_url, mailbox + "\n[sync]\nparse_workers = 0\nmax_message_size = 2048\n")
    report = sync.Syncer(config.load(path), factory).sync("x")
    assert report.status == "ok", report.error
    with factory() as s:
        row = s.execute(
            sa.select(Message.subject, Message.snippet, Message.size, Message.sha256).where(
                Message.message_id == "big@acme.fr"
            )
        ).one()
        data = s.scalar(sa.select(models.MessageRaw.data).where(models.MessageRaw.sha256 == row[3]))
    assert row[0] == "Gros fichier" and row[1].startswith("[Message too large:")
    assert row[2] == len(big)
    assert data is not None and len(data) < 2048 and b"xxxx" not in data
    assert "canary@acme.fr" in message_ids(factory)
