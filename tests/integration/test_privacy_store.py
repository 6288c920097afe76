"""What is stored, per mailbox and folder (issue #16): `storage`, `storage_folders` and
`exclude_folders`, through a real Maildir sync, on SQLite and PostgreSQL. Nothing of a
body (nor of a subject at the metadata level) reaches the database: on SQLite the file's
bytes are searched for each message's unique markers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.integration.privacy_support import text_dump
from tests.mailgen import make

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _write(folder: Path, name: str, raw: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(raw)


def _maildir(root: Path) -> None:
    out = make(
        "alice@example.com", "jane@acme.fr", "Subject-FULL-a1b2", body="Body-FULL-a1b2\n",
        msgid="full@example.com", at=T0,
    )  # fmt: skip
    _write(root / "INBOX", "1.eml", out)
    reply = make(
        "jane@acme.fr", "alice@example.com", "Subject-META-c3d4", body="Body-META-c3d4\n",
        msgid="meta@acme.fr", reply_to="full@example.com", at=T0.replace(hour=10),
    )  # fmt: skip
    _write(root / "Notes", "2.eml", reply)
    archived = make(
        "jane@acme.fr", "alice@example.com", "Subject-HEAD-e5f6", body="Body-HEAD-e5f6\n",
        msgid="head@acme.fr", at=T0.replace(hour=11),
    )  # fmt: skip
    _write(root / "Archive", "3.eml", archived)
    private = make(
        "doctor@clinic.fr", "alice@example.com", "Subject-PRIV-g7h8", body="Body-PRIV-g7h8\n",
        msgid="priv@clinic.fr", at=T0.replace(hour=12),
    )  # fmt: skip
    _write(root / "Private", "4.eml", private)


def _config(tmp_path: Path, db_url: str, write_config: ConfigWriter) -> config.Config:
    root = tmp_path / "mail"
    _maildir(root)
    return config.load(
        write_config(
            db_url,
            f"""
            [[mailboxes]]
            name = "alice"
            connector = "maildir"
            path = "{root}"
            owner = "alice@example.com"
            storage = "metadata"
            storage_folders = {{ "inbox" = "full", "Arch*" = "headers" }}
            exclude_folders = ["private"]
            [sync]
            parse_workers = 0
            """,
        )
    )


def _database_bytes(db_url: str) -> bytes:
    path = Path(db_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_store_levels_and_excluded_folders(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _config(tmp_path, db_url, write_config)
    report = sync.Syncer(cfg, factory).sync("alice")
    assert report.status == "ok", report.error
    assert report.excluded == ["Private"]
    assert sorted(f.folder for f in report.folders) == ["Archive", "INBOX", "Notes"]

    with factory() as s:
        dump = text_dump(s)
        rows = {
            m.message_id: m
            for m in s.scalars(sa.select(models.Message)).all()  # every stored message
        }
        assert set(rows) == {"full@example.com", "meta@acme.fr", "head@acme.fr"}
        full, meta, head = rows["full@example.com"], rows["meta@acme.fr"], rows["head@acme.fr"]
        assert (full.stored_as, meta.stored_as, head.stored_as) == ("full", "metadata", "headers")
        # metadata: still threaded by its headers, with direction and time for the reminders
        assert meta.thread_id == full.thread_id and meta.subject == "" and meta.snippet == ""
        assert meta.direction == "inbound" and meta.sent_at == T0.replace(hour=10)
        thread = s.get(models.Thread, meta.thread_id)
        assert thread is not None and thread.last_inbound_at == T0.replace(hour=10)
        senders = set(s.scalars(sa.select(models.Participant.email)))
        assert "jane@acme.fr" in senders and "doctor@clinic.fr" not in senders
        # headers: the subject stays, the body does not; the raw bytes are its header block
        assert head.subject == "Subject-HEAD-e5f6" and head.snippet == ""
        raw = s.get(models.MessageRaw, head.sha256)
        assert raw is not None and raw.data.endswith(b"\r\n\r\n") and b"Body" not in raw.data
        assert s.get(models.MessageRaw, meta.sha256) is None
    store.make_engine(db_url).dispose()

    assert "Body-FULL-a1b2" in dump  # the check can see a marker
    for marker in ("Body-META-c3d4", "Subject-META-c3d4", "Body-HEAD-e5f6", "PRIV-g7h8"):
        assert marker not in dump, marker
    if db_url.startswith("sqlite"):
        data = _database_bytes(db_url)
        assert b"Body-FULL-a1b2" in data
        for word in (b"Body-META-c3d4", b"Subject-META-c3d4", b"Body-HEAD-e5f6", b"PRIV-g7h8"):
            assert word not in data, word


def test_sync_output_says_which_folders_were_not_fetched(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    from tests.cli.helpers import cli

    cfg = _config(tmp_path, db_url, write_config)
    out = cli("sync", config=Path(cfg.path or "")).stdout
    assert "not fetched (exclude_folders): Private" in out
    status = cli("status", config=Path(cfg.path or "")).stdout
    assert "not fetched (exclude_folders): private" in status


def test_a_wrong_level_is_refused_with_the_closest_one(write_config: ConfigWriter) -> None:
    path = write_config(
        "sqlite:///x.db",
        """
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        path = "/tmp"
        owner = "alice@example.com"
        storage_folders = { "Archive" = "header" }
        """,
    )
    try:
        config.load(path)
    except config.ConfigFileError as exc:
        assert "mailboxes[0].storage_folders" in str(exc) and "did you mean 'headers'" in str(exc)
    else:
        raise AssertionError("an unknown level was accepted")


def test_reminders_work_on_metadata(db_url: str, tmp_path: Path) -> None:
    """A mailbox that keeps no subject and no body still gets its awaiting-reply reminder
    (direction, times and the reply facts read at parse time are kept), and the answer
    closes it, matched by its headers alone."""
    from tests.mailgen import day
    from tests.remindergen import ALICE, ASK, JEAN, World

    world = World(db_url, tmp_path)
    try:
        [mb] = world.cfg.mailboxes
        world.cfg = dataclasses.replace(
            world.cfg, mailboxes=(dataclasses.replace(mb, storage="metadata"),)
        )
        world.sent(make(ALICE, JEAN, "Devis", body=ASK, msgid="q1@example.com", at=day(0)))
        assert world.sync(day(0.05)).status == "ok"
        (r,) = world.reminders()
        assert (r.kind, r.status) == ("awaiting_reply", "pending")
        with world.factory() as s:
            m = s.scalars(sa.select(models.Message)).one()
            assert (m.subject, m.snippet, m.stored_as) == ("", "", "metadata")
            assert m.expects_reply is True and s.get(models.MessageRaw, m.sha256) is None
        world.received(
            make(JEAN, ALICE, "Re: Devis", body="Oui.\n", msgid="a1@acme-industrie.fr",
                 reply_to="q1@example.com", at=day(1))
        )  # fmt: skip
        assert world.sync(day(1.05)).status == "ok"
        (after,) = world.reminders(models.Reminder.id == r.id)
        assert after.status == "cancelled"  # the reply ends it, as with full storage
    finally:
        world.close()
