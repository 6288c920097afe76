"""Identity that a forged copy cannot hijack (issue #16, finding 6): a second message with
the same Message-ID, From, Date and Subject but another body is kept as its own message,
shown as such, and threads with the first; a true copy (the same body, whatever transport
headers each mailbox added) stays one message with several locations. On SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models
from mailmanager.db.models import Message, MessageLocation
from mailmanager.sync import engine as sync
from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter

ALICE = "alice@example.com"
BOB = "bob@example.com"
CLIENT = "jean@acme.fr"
MSGID = "devis-42@acme.fr"
HEAD = (
    f"From: Jean Dupont <{CLIENT}>\r\nTo: {ALICE}, {BOB}\r\nSubject: Devis 42\r\n"
    f"Message-ID: <{MSGID}>\r\nDate: Mon, 2 Nov 2026 09:00:00 +0000\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
)
REAL = (HEAD + "Bonjour, le montant est de 12 400 EUR.\r\n").encode()
FORGED = (HEAD + "Bonjour, payez sur le compte FR76 9999 0000.\r\n").encode()


def relayed(raw: bytes, mailbox: str) -> bytes:
    """`raw` as another mailbox receives it: its own transport headers on top."""
    return (
        f"Received: from mx.{mailbox}.example.com by imap; Mon, 2 Nov 2026 09:00:03 +0000\r\n"
        f"Delivered-To: {mailbox}@example.com\r\nX-Spam-Score: 0.{len(mailbox)}\r\n"
    ).encode() + raw


def reply() -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {CLIENT}\r\nSubject: Re: Devis 42\r\n"
        f"Message-ID: <re-42@example.com>\r\nIn-Reply-To: <{MSGID}>\r\nReferences: <{MSGID}>\r\n"
        "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nBien recu.\r\n"
    ).encode()


class Maildirs:
    """One Maildir per mailbox ("alice", "bob"), written byte for byte (no line-end change)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        for name in ("alice", "bob"):
            for sub in ("cur", "new", "tmp"):
                (root / name / sub).mkdir(parents=True)

    def append(self, mailbox: str, raw: bytes) -> None:
        self.count += 1
        (self.root / mailbox / "new" / f"{self.count:04d}.identity:2,").write_bytes(raw)


@pytest.fixture
def accounts(tmp_path: Path) -> Maildirs:
    return Maildirs(tmp_path / "maildirs")


def mailboxes_toml(accounts: Maildirs, sync: str = "parse_workers = 0") -> str:
    mailboxes = "".join(
        f"""
        [[mailboxes]]
        name = "{name}"
        connector = "maildir"
        path = "{accounts.root / name}"
        owner = "{name}@example.com"
        """
        for name in ("alice", "bob")
    )
    return f"{mailboxes}\n[sync]\n{sync}\n"


@pytest.fixture
def config_path(db_url: str, write_config: ConfigWriter, accounts: Maildirs) -> Path:
    return write_config(db_url, mailboxes_toml(accounts))


def sync_all(config_path: Path, factory: sessionmaker[Session]) -> None:
    cfg = config.load(config_path)
    for name in ("alice", "bob"):
        report = sync.Syncer(cfg, factory).sync(name)
        assert report.status == "ok", report.error


def stored(factory: sessionmaker[Session]) -> list[tuple[int, str, int | None, str]]:
    """(id, key, thread, sha256) of every message with the Message-ID under test."""
    with factory() as s:
        rows = s.execute(
            sa.select(Message.id, Message.key, Message.thread_id, Message.sha256)
            .where(Message.message_id == MSGID)
            .order_by(Message.id)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def raw_of(factory: sessionmaker[Session], sha: str) -> bytes | None:
    with factory() as s:
        return s.scalar(sa.select(models.MessageRaw.data).where(models.MessageRaw.sha256 == sha))


@pytest.mark.parametrize("one_batch", [False, True], ids=["two-syncs", "one-batch"])
def test_a_forged_copy_first_does_not_hide_the_real_message(
    config_path: Path,
    factory: sessionmaker[Session],
    accounts: Maildirs,
    one_batch: bool,
) -> None:
    accounts.append("alice", FORGED)
    if not one_batch:
        sync_all(config_path, factory)
    accounts.append("alice", relayed(REAL, "alice"))
    accounts.append("alice", reply())
    sync_all(config_path, factory)

    rows = stored(factory)
    assert len(rows) == 2, rows  # the real one is its own message, not folded in
    (
        (forged_id, forged_key, forged_thread, forged_sha),
        (real_id, real_key, real_thread, real_sha),
    ) = rows
    assert forged_key == MSGID and real_key.startswith(f"{MSGID}#")
    assert b"FR76" in (raw_of(factory, forged_sha) or b"")
    assert b"12 400 EUR" in (raw_of(factory, real_sha) or b"")
    # Both in one thread, and the reply quoting the Message-ID threads with them.
    with factory() as s:
        reply_thread = s.scalar(
            sa.select(Message.thread_id).where(Message.message_id == "re-42@example.com")
        )
    assert forged_thread is not None and forged_thread == real_thread == reply_thread

    # Visible: `messages show` names the other one, `threads show` lists both.
    detail = cli_json("messages", "show", str(real_id), config=config_path)
    assert detail["same_message_id"] == [forged_id]
    text = cli("messages", "show", str(forged_id), config=config_path).stdout
    assert f"another message with the same Message-ID exists: #{real_id}" in text
    shown = cli("threads", "show", str(real_thread), config=config_path).stdout
    assert f"#{forged_id}" in shown and f"#{real_id}" in shown
    assert "same Message-ID as" in shown


def test_a_true_copy_in_two_mailboxes_is_one_message_with_two_locations(
    config_path: Path, factory: sessionmaker[Session], accounts: Maildirs
) -> None:
    # Each mailbox got the message through its own relay (other Received, Delivered-To,
    # X- headers), and Bob's store keeps it with bare LF line ends.
    accounts.append("alice", relayed(REAL, "alice"))
    accounts.append("bob", relayed(REAL, "bob").replace(b"\r\n", b"\n"))
    accounts.append("bob", REAL + b"\r\n\r\n")  # a copy with trailing blank lines
    sync_all(config_path, factory)
    rows = stored(factory)
    assert len(rows) == 1, rows
    with factory() as s:
        locations = s.scalar(
            sa.select(sa.func.count())
            .select_from(MessageLocation)
            .where(MessageLocation.message_id == rows[0][0])
        )
    assert locations == 3
    text = cli("messages", "show", str(rows[0][0]), config=config_path).stdout
    assert "same Message-ID" not in text


def test_copies_of_a_future_dated_message_are_one_message_though_each_has_its_own_date(
    config_path: Path, factory: sessionmaker[Session], accounts: Maildirs
) -> None:
    # A Date in the future is not believed: each copy is dated by its own Received header,
    # one second apart here, as two workers fetching at once saw it (the fault suite, #15).
    future = REAL.replace(b"Mon, 2 Nov 2026 09:00:00", b"Tue, 2 Nov 2038 09:00:00")
    for name, second in (("alice", b"03"), ("bob", b"04")):
        copy = relayed(future, name).replace(b"09:00:03 +0000", b"09:00:" + second + b" +0000")
        accounts.append(name, copy)
    sync_all(config_path, factory)
    rows = stored(factory)
    assert len(rows) == 1, rows
    with factory() as s:
        boxes = s.scalar(
            sa.select(sa.func.count())
            .select_from(MessageLocation)
            .where(MessageLocation.message_id == rows[0][0])
        )
    assert boxes == 2


def test_a_message_stored_before_the_body_hash_is_compared_by_its_raw_bytes(
    config_path: Path, factory: sessionmaker[Session], accounts: Maildirs
) -> None:
    # Messages stored before schema 0015 have no body hash: their raw bytes answer.
    accounts.append("alice", relayed(REAL, "alice"))
    sync_all(config_path, factory)
    with factory.begin() as s:
        s.execute(sa.update(Message).values(body_sha256=None))
    accounts.append("bob", relayed(REAL, "bob"))  # a true copy
    accounts.append("bob", FORGED)  # a forged one
    sync_all(config_path, factory)
    rows = stored(factory)
    assert len(rows) == 2, rows
    with factory() as s:
        per_message = dict(
            s.execute(
                sa.select(MessageLocation.message_id, sa.func.count()).group_by(
                    MessageLocation.message_id
                )
            ).all()
        )
    assert per_message[rows[0][0]] == 2 and per_message[rows[1][0]] == 1


def test_a_forged_copy_after_the_real_message_is_kept_apart_too(
    config_path: Path, factory: sessionmaker[Session], accounts: Maildirs
) -> None:
    accounts.append("alice", relayed(REAL, "alice"))
    sync_all(config_path, factory)
    accounts.append("bob", FORGED)
    accounts.append("bob", relayed(REAL, "bob"))  # Bob's true copy joins Alice's
    sync_all(config_path, factory)
    rows = stored(factory)
    assert len(rows) == 2 and rows[0][1] == MSGID and rows[1][1].startswith(f"{MSGID}#")
    assert rows[0][2] == rows[1][2]  # one thread
    assert b"12 400 EUR" in (raw_of(factory, rows[0][3]) or b"")
    assert b"FR76" in (raw_of(factory, rows[1][3]) or b"")


def test_copies_of_an_oversize_message_stay_one_message(
    db_url: str, write_config: ConfigWriter, factory: sessionmaker[Session], accounts: Maildirs
) -> None:
    # Over `max_message_size` the body may not be read whole (a fetch may stop at the
    # headers): its copies are told by their headers, as before.
    big = (HEAD + "x" * 5000 + "\r\n").encode()
    accounts.append("alice", relayed(big, "alice"))
    accounts.append("bob", relayed(big, "bob"))
    sizes = "parse_workers = 0\nmax_message_size = 2048"
    path = write_config(db_url, mailboxes_toml(accounts, sizes))
    sync_all(path, factory)
    assert len(stored(factory)) == 1
