"""`privacy erase` end to end (issue #16), on SQLite and PostgreSQL: a real Maildir sync,
an erasure (dry run first), then incremental and full re-syncs (cursors reset) that must
not bring the erased person back; a new message from them is dropped too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.services import privacy
from mailmanager.sync import engine as sync
from mailmanager.sync import privacy as kept
from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from tests.conftest import ConfigWriter
from tests.integration import privacy_support
from tests.integration.privacy_support import text_dump
from tests.mailgen import make

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JANE = "jane@acme.fr"


def _mail(root: Path) -> None:
    inbox = root / "INBOX"
    inbox.mkdir(parents=True, exist_ok=True)
    msgs = {
        "1.eml": make(f"Jane Doe <{JANE}>", "alice@example.com", "Devis", body="JANE-SECRET-1\n",
                      msgid="j1@acme.fr", at=T0),
        "2.eml": make("alice@example.com", JANE, "Re: Devis", body="Merci Jane\n",
                      msgid="j2@example.com", reply_to="j1@acme.fr", at=T0.replace(hour=10)),
        "3.eml": make("paul@acme.fr", "alice@example.com", "Réunion", body="SHARED-BODY-2\n",
                      msgid="p3@acme.fr", cc=f"Jane Doe <{JANE}>", at=T0.replace(hour=11)),
        "4.eml": make("paul@acme.fr", "alice@example.com", "Autre", body="PAUL-ONLY-4\n",
                      msgid="p4@acme.fr", at=T0.replace(hour=12)),
    }  # fmt: skip
    for name, raw in msgs.items():
        (inbox / name).write_bytes(raw)


def _setup(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> config.Config:
    _mail(tmp_path / "mail")
    cfg = privacy_support.alice_maildir(tmp_path, db_url, write_config)
    with store.session_scope(factory) as s:
        acme = models.Company(name="Acme")
        s.add(acme)
        s.flush()
        s.add(models.CompanyDomain(company_id=acme.id, domain="acme.fr"))
        jane = models.Contact(first_name="Jane", last_name="Doe", company_id=acme.id)
        s.add(jane)
        s.flush()
        s.add(models.ContactEmail(contact_id=jane.id, email=JANE, display="Jane Doe"))
    report = sync.Syncer(cfg, factory).sync("alice")
    assert report.status == "ok", report.error
    return cfg


def _state(s: Session) -> dict[str, object]:
    M, P = models.Message, models.Participant
    return {
        "messages": sorted(s.scalars(sa.select(M.message_id))),
        "jane_participants": s.scalar(
            sa.select(sa.func.count()).select_from(P).where(sa.func.lower(P.email) == JANE)
        ),
        "contacts": s.scalar(sa.select(sa.func.count()).select_from(models.Contact)),
        "contact_links": s.scalar(
            sa.select(sa.func.count())
            .select_from(models.Link)
            .where(models.Link.target_kind == "contact")
        ),
    }


def _sync(cfg: config.Config, factory: sessionmaker[Session], reset: bool = False) -> None:
    if reset:
        with store.session_scope(factory) as s:
            s.execute(sa.update(models.Folder).values(cursor=None))
    report = sync.Syncer(cfg, factory).sync("alice")
    assert report.status == "ok", report.error


def test_erase_then_resync_does_not_resurrect(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _setup(tmp_path, db_url, factory, write_config)
    with factory() as s:
        before = _state(s)
        thread = s.scalar(
            sa.select(models.Message.thread_id).where(models.Message.key == "j1@acme.fr")
        )
        alice = s.scalar(sa.select(models.User.id).where(models.User.email == "alice@example.com"))
    assert before["contact_links"], "the matcher linked Jane's mail to her contact"
    with store.session_scope(factory) as s:  # a reminder about Jane's thread
        s.add(models.Reminder(thread_id=thread, user_id=alice, kind="no_reply", due_at=T0,
                              contact_email=JANE))  # fmt: skip

    with store.session_scope(factory) as s:
        dry = privacy.erase(s, cfg, "cli:test", address="Jane@Acme.fr", dry_run=True)
    assert dry.dry_run and dry.messages_deleted == 2 and dry.messages_scrubbed == 1
    with factory() as s:
        assert _state(s) == before  # a dry run changes nothing
        assert s.scalar(sa.select(sa.func.count()).select_from(models.PrivacyTombstone)) == 0

    with store.session_scope(factory) as s:
        done = privacy.erase(s, cfg, "cli:test", address="Jane@Acme.fr")
    assert done.counts() == dry.counts()
    assert (done.contacts_deleted, done.threads_deleted, done.reminders_deleted) == (1, 1, 1)

    def check() -> None:
        with factory() as s:
            after = _state(s)
            assert after == {
                "messages": ["p3@acme.fr", "p4@acme.fr"],
                "jane_participants": 0,
                "contacts": 0,
                "contact_links": 0,
            }
            shared = s.scalars(
                sa.select(models.Message).where(models.Message.key == "p3@acme.fr")
            ).one()
            assert shared.stored_as == "scrubbed" and shared.snippet == ""
            assert s.get(models.MessageRaw, shared.sha256) is None
            other = s.scalars(
                sa.select(models.Message).where(models.Message.key == "p4@acme.fr")
            ).one()
            assert other.stored_as == "full" and s.get(models.MessageRaw, other.sha256) is not None
            assert s.get(models.Thread, thread) is None
            assert s.scalar(sa.select(sa.func.count()).select_from(models.Reminder)) == 0

    check()
    with factory() as s:
        [entry] = privacy.audit_entries(s)
        assert entry.action == "privacy.erase" and entry.actor == "cli:test"
        assert entry.target == privacy.person_target(kept.address_hash(s, JANE))
        assert isinstance(entry.detail, dict) and entry.detail["messages_deleted"] == 2
        every = " ".join(f"{a.target} {a.detail}" for a in s.scalars(sa.select(models.AuditLog)))
        assert "jane" not in every.lower()

    _sync(cfg, factory)  # incremental: nothing new
    check()
    _sync(cfg, factory, reset=True)  # a full re-scan of the folder, every file read again
    check()
    # A new message from Jane alone is dropped; with Paul, it is stored without her.
    (tmp_path / "mail" / "INBOX" / "5.eml").write_bytes(
        make(JANE, "alice@example.com", "Encore", body="JANE-SECRET-5\n", msgid="j5@acme.fr",
             at=T0.replace(hour=13))
    )  # fmt: skip
    (tmp_path / "mail" / "INBOX" / "6.eml").write_bytes(
        make("paul@acme.fr", ["alice@example.com", JANE], "Suite", msgid="p6@acme.fr",
             at=T0.replace(hour=14))
    )  # fmt: skip
    _sync(cfg, factory)
    with factory() as s:
        keys = sorted(s.scalars(sa.select(models.Message.key)))
        assert keys == ["p3@acme.fr", "p4@acme.fr", "p6@acme.fr"]
        assert _state(s)["jane_participants"] == 0
        p6 = s.scalars(sa.select(models.Message).where(models.Message.key == "p6@acme.fr")).one()
        assert p6.stored_as == "scrubbed"
        dump = text_dump(s).lower()  # every text and byte value of every table
        assert "paul@acme.fr" in dump
        assert JANE not in dump and "jane doe" not in dump and "jane-secret" not in dump

    if db_url.startswith("sqlite"):
        engine = store.make_engine(db_url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        path = Path(db_url.removeprefix("sqlite:///"))
        data = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"PAUL-ONLY-4" in data  # the check can see a body
        for marker in (b"JANE-SECRET-1", b"SHARED-BODY-2", b"JANE-SECRET-5", b"Merci Jane"):
            assert marker not in data, marker


def test_erase_by_contact_and_errors(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _setup(tmp_path, db_url, factory, write_config)
    with factory() as s:
        contact_id = s.scalar(sa.select(models.Contact.id))
    assert contact_id is not None
    with store.session_scope(factory) as s:
        done = privacy.erase(s, cfg, "cli:test", contact_id=contact_id)
    assert done.messages_deleted == 2 and done.contacts_deleted == 1
    with factory() as s:
        for bad in ({"contact_id": 999999}, {"address": "not-an-address"}, {}):
            try:
                privacy.erase(s, cfg, "cli:test", **bad)
            except privacy.PrivacyError as exc:
                assert "contact" in str(exc) or "address" in str(exc)
            else:
                raise AssertionError(f"erase accepted {bad}")


def test_erase_holds_over_an_imap_full_resync(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same over IMAP (a real Dovecot): after the erasure, a re-sync from reset cursors
    (every UID fetched again) stores Paul's mail and nothing of Jane's."""
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", PASSWORD)
    user = DovecotServer.new_user()
    dovecot.append(user, "INBOX", [
        make(JANE, "alice@example.com", "Devis", body="JANE-SECRET-1\n", msgid="j1@acme.fr", at=T0),
        make("paul@acme.fr", ["alice@example.com", JANE], "Réunion", msgid="p3@acme.fr", at=T0),
        make("paul@acme.fr", "alice@example.com", "Autre", msgid="p4@acme.fr", at=T0),
    ])  # fmt: skip
    cfg = config.load(
        write_config(
            db_url,
            f"""
            [[mailboxes]]
            name = "alice"
            connector = "imap"
            host = "127.0.0.1"
            port = {dovecot.imap_port}
            security = "none"
            username = "{user}"
            password_env = "ALICE_IMAP_PASSWORD"
            owner = "alice@example.com"
            [sync]
            parse_workers = 0
            """,
        )
    )
    _sync(cfg, factory)
    with store.session_scope(factory) as s:
        done = privacy.erase(s, cfg, "cli:test", address=JANE)
    assert (done.messages_deleted, done.messages_scrubbed) == (1, 1)
    dovecot.append(user, "INBOX", [make(JANE, "alice@example.com", "Encore", msgid="j5@acme.fr")])
    _sync(cfg, factory, reset=True)
    with factory() as s:
        assert sorted(s.scalars(sa.select(models.Message.key))) == ["p3@acme.fr", "p4@acme.fr"]
        assert _state(s)["jane_participants"] == 0
        assert JANE not in text_dump(s).lower()
