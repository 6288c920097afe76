"""`[retention]` (issue #16) at fixed instants, on SQLite and PostgreSQL: old messages go
with their locations, participants, raw bytes and links; a thread left without messages
goes and its open reminders are cancelled; old quarantined items and audit entries go; a
dry run says the same counts and changes nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.services import privacy
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.integration import privacy_support
from tests.mailgen import make

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
RECENT = NOW - timedelta(days=10)


def _count(s: Session, model: type[models.Base]) -> int:
    return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_retention_at_a_fixed_instant(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    inbox = tmp_path / "mail" / "INBOX"
    inbox.mkdir(parents=True)
    (inbox / "old.eml").write_bytes(
        make("jane@acme.fr", "alice@example.com", "Ancien", msgid="old@acme.fr", at=OLD)
    )
    (inbox / "new.eml").write_bytes(
        make("paul@acme.fr", "alice@example.com", "Récent", msgid="new@acme.fr", at=RECENT)
    )
    cfg = privacy_support.alice_maildir(
        tmp_path,
        db_url,
        write_config,
        "[retention]\nmessages_days = 365\nquarantine_days = 30\naudit_days = 90\n",
    )
    assert sync.Syncer(cfg, factory).sync("alice").status == "ok"
    with store.session_scope(factory) as s:
        old = s.scalars(sa.select(models.Message).where(models.Message.key == "old@acme.fr")).one()
        old_thread = old.thread_id
        alice = s.scalar(sa.select(models.User.id).where(models.User.email == "alice@example.com"))
        assert alice is not None
        s.add(models.Reminder(thread_id=old_thread, user_id=alice, kind="no_reply", due_at=OLD))
        folder = s.scalar(sa.select(models.Folder.id))
        for pid, at in (("q-old", NOW - timedelta(days=31)), ("q-new", NOW - timedelta(days=1))):
            s.add(models.Quarantine(folder_id=folder, provider_id=pid, reason="empty",
                                    sha256="0" * 64, data=b"x", created_at=at))  # fmt: skip
        for at in (NOW - timedelta(days=91), NOW - timedelta(days=89)):
            s.add(models.AuditLog(actor="cli:x", action="thread.read", target="thread:1", at=at))

    with store.session_scope(factory) as s:
        dry = privacy.apply_retention(s, cfg, NOW, dry_run=True)
    assert (dry.messages, dry.threads, dry.reminders_cancelled) == (1, 1, 1)
    assert (dry.quarantine, dry.audit) == (1, 1)
    with factory() as s:
        assert _count(s, models.Message) == 2 and _count(s, models.Quarantine) == 2
        assert _count(s, models.AuditLog) == 2

    with store.session_scope(factory) as s:
        done = privacy.apply_retention(s, cfg, NOW)
    assert (done.messages, done.threads, done.quarantine, done.audit) == (1, 1, 1, 1)
    with factory() as s:
        assert list(s.scalars(sa.select(models.Message.key))) == ["new@acme.fr"]
        assert s.get(models.Thread, old_thread) is None
        assert s.get(models.MessageRaw, old.sha256) is None
        locations = s.scalars(sa.select(models.MessageLocation.provider_id)).all()
        assert [Path(p).name for p in locations] == ["new.eml"]
        [reminder] = s.scalars(sa.select(models.Reminder)).all()
        assert reminder.status == "cancelled" and reminder.thread_id is None
        assert list(s.scalars(sa.select(models.Quarantine.provider_id))) == ["q-new"]
        actions = sorted(s.scalars(sa.select(models.AuditLog.action)))
        assert actions == ["privacy.retention", "thread.read"]
    with store.session_scope(factory) as s:  # applied again: nothing left to delete
        again = privacy.apply_retention(s, cfg, NOW)
    assert (again.messages, again.quarantine, again.audit) == (0, 0, 0)


def test_unset_retention_keeps_everything(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = config.load(write_config(db_url, ""))
    with store.session_scope(factory) as s:
        s.add(models.AuditLog(actor="cli:x", action="a", target="", at=NOW - timedelta(days=9999)))
    with store.session_scope(factory) as s:
        report = privacy.apply_retention(s, cfg, NOW)
    assert (report.messages, report.quarantine, report.audit) == (0, 0, 0)
    with factory() as s:
        assert _count(s, models.AuditLog) == 1


def test_the_daemon_runs_retention_daily(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    from mailmanager import daemon

    class Jobs:
        def __init__(self) -> None:
            self.added: dict[str, dict[str, object]] = {}

        def add_job(self, func: object, trigger: str, **kw: object) -> None:
            self.added[str(kw["id"])] = {"func": func, "trigger": trigger, **kw}

    cfg = config.load(write_config(db_url, "", "[retention]\naudit_days = 3650\n"))
    jobs = Jobs()
    daemon._add_notification_jobs(jobs, cfg, factory, threading.Event(), NOW)
    job = jobs.added["privacy:retention"]
    assert job["func"] is daemon.retention_job and job["seconds"] == 86400
    unset = Jobs()
    daemon._add_notification_jobs(unset, config.load(write_config(db_url, "")), factory,
                                  threading.Event(), NOW)  # fmt: skip
    assert "privacy:retention" not in unset.added
    with store.session_scope(factory) as s:
        s.add(
            models.AuditLog(
                actor="cli:x", action="a", target="", at=datetime(2001, 1, 1, tzinfo=UTC)
            )
        )
    daemon.retention_job(cfg, factory)  # at the wall clock's now: 2001 is over ten years ago
    with factory() as s:
        assert list(s.scalars(sa.select(models.AuditLog.action))) == ["privacy.retention"]
