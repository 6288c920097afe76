"""The services behind the admin pages, on a real database (SQLite and PostgreSQL): the
mailbox test, mailbox health, "sync now" (once at a time) and the CRM upload's two steps."""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, spi
from mailmanager.db import configrows, leases, models, store
from mailmanager.services import crmupload, mailboxcheck, mailboxhealth, syncnow
from mailmanager.sync import engine as sync
from tests.conftest import REPO, ConfigWriter

SAMPLE = REPO / "examples" / "sample-mailbox"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _maildir(name: str, path: Path, extra: str = "") -> str:
    return f"""
        [[mailboxes]]
        name = "{name}"
        connector = "maildir"
        path = "{path}"
        owner = "alice@example.com"
        {extra}
        """


@pytest.fixture
def cfg(db_url: str, write_config: ConfigWriter, tmp_path: Path) -> config.Config:
    mailboxes = (
        _maildir("sample", SAMPLE)
        + _maildir("gone", tmp_path / "nowhere")
        + _maildir("off", SAMPLE, "enabled = false")
    )
    extra = """
        [[users]]
        email = "root@example.com"
        name = "Root"
        role = "admin"
        """
    users = write_config(db_url, mailboxes, extra).read_text()
    users = users.replace('name = "Bob Smith"', 'name = "Bob Smith"\nmanager = "root@example.com"')
    path = tmp_path / "admin.toml"
    path.write_text(users)
    return config.load(path)


def test_check_mailbox_runs_the_steps_of_mailbox_test(
    cfg: config.Config, factory: sessionmaker[Session]
) -> None:
    good = mailboxcheck.check_mailbox(cfg, "sample", factory)
    assert good.ok and good.steps and all(isinstance(s, spi.CheckStep) for s in good.steps)
    assert good.steps == tuple(mailboxcheck.connection_steps(cfg, cfg.mailbox("sample"), factory))
    bad = mailboxcheck.check_mailbox(cfg, "gone", factory)
    assert not bad.ok and bad.steps[0].step == "configuration"
    assert "does not exist" in bad.steps[0].detail and "nowhere" in bad.steps[0].detail
    with pytest.raises(spi.ConfigError, match="no mailbox named"):
        mailboxcheck.check_mailbox(cfg, "nope", factory)


def real_now() -> datetime:
    """The real time: syncs stamp their runs with it and leases run on it."""
    return models.utcnow()  # wall clock: what the sync and the leases compare with


def test_overview_says_the_state_of_each_mailbox(
    cfg: config.Config, factory: sessionmaker[Session]
) -> None:
    with store.session_scope(factory) as s:
        before = {m.name: m for m in mailboxhealth.overview(s, cfg, NOW)}
    assert [m.state for m in before.values()] == ["never", "never", "disabled"]
    syncer = sync.Syncer(cfg, factory)
    assert syncer.sync("sample").status == "ok"
    assert syncer.sync("gone").status == "error"
    with store.session_scope(factory) as s:
        after = {m.name: m for m in mailboxhealth.overview(s, cfg, real_now())}
    assert after["sample"].state == "ok" and after["sample"].messages == 40
    assert after["sample"].last_sync_at and after["sample"].error is None
    assert after["gone"].state == "error" and after["gone"].error_kind == "config"
    assert "does not exist" in (after["gone"].error or "")
    assert after["off"].state == "disabled" and after["off"].owner == "alice@example.com"


def test_error_kinds() -> None:
    kind = mailboxhealth.error_kind
    assert kind(None) is None and kind("") is None
    assert kind("AuthError: LOGIN failed") == "auth"
    assert kind("TransientError: timed out") == "transient"
    assert kind("configuration error: mailboxes.x.path: missing") == "config"
    assert kind("UnsupportedError: no UIDPLUS") == "unsupported"
    assert kind("ConnectorError: NO [ALERT]") == "provider"
    assert kind("OperationalError: disk full") == "internal"


def test_team_lists_users_roles_managers_and_mailboxes(cfg: config.Config) -> None:
    team = {m.email: m for m in mailboxhealth.team(cfg)}
    assert team["alice@example.com"].mailboxes == ("sample", "gone", "off")
    assert (
        team["alice@example.com"].role == "salesperson" and team["alice@example.com"].locale == "fr"
    )
    assert team["bob@example.com"].manager == "root@example.com"
    assert team["root@example.com"].role == "admin" and team["root@example.com"].mailboxes == ()


def _hold_lease(
    cfg: config.Config, factory: sessionmaker[Session], mailbox: str, owner: str
) -> None:
    with store.session_scope(factory) as s:
        configrows.ensure_config_rows(s, cfg)
        s.execute(
            sa.update(models.Mailbox)
            .where(models.Mailbox.name == mailbox)
            .values(lease_owner=owner, lease_until=real_now() + timedelta(minutes=5))
        )


def test_sync_now_runs_once_and_reports(cfg: config.Config, factory: sessionmaker[Session]) -> None:
    runner = syncnow.SyncRunner(cfg, factory)
    run = runner.start("sample")
    assert run.state == "running"
    done = runner.wait("sample", timeout=120)
    assert done is not None and done.state == "ok" and done.new_messages == 40
    assert done.finished_at is not None
    again = runner.start("sample")  # a finished run does not block the next one
    assert runner.wait("sample", timeout=120).state == "ok"  # type: ignore[union-attr]
    assert again.state == "running"
    with pytest.raises(spi.ConfigError):
        runner.start("nope")


def test_sync_now_refuses_a_mailbox_another_worker_is_syncing(
    cfg: config.Config, factory: sessionmaker[Session]
) -> None:
    _hold_lease(cfg, factory, "sample", "otherhost:1234:abc")  # a live worker elsewhere
    runner = syncnow.SyncRunner(cfg, factory)
    with pytest.raises(syncnow.SyncRefusedError) as refused:
        runner.start("sample")
    assert refused.value.reason == "leased" and refused.value.holder == "otherhost:1234:abc"
    with store.session_scope(factory) as s:
        health = {m.name: m for m in mailboxhealth.overview(s, cfg, real_now())}
    assert health["sample"].state == "syncing"
    assert health["sample"].syncing_by == "otherhost:1234:abc"


def test_sync_now_refuses_a_second_click_while_running(
    cfg: config.Config, factory: sessionmaker[Session], db_url: str
) -> None:
    """The first sync waits on a write lock another connection holds, so it is surely still
    running at the second click; the lease alone would not refuse it (same process)."""
    runner = syncnow.SyncRunner(cfg, factory)
    blocker = sa.create_engine(db_url)
    conn = blocker.connect()
    try:
        if db_url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE mailboxes IN EXCLUSIVE MODE")
            conn.exec_driver_sql("LOCK TABLE users IN EXCLUSIVE MODE")
        runner.start("sample")
        with pytest.raises(syncnow.SyncRefusedError) as refused:
            runner.start("sample")
        assert refused.value.reason == "running"
        assert runner.last("sample").state == "running"  # type: ignore[union-attr]
    finally:
        conn.rollback()
        conn.close()
        blocker.dispose()
    done = runner.wait("sample", timeout=120)
    assert done is not None and done.state == "ok" and done.new_messages == 40


def test_a_run_that_loses_the_lease_race_is_skipped(
    cfg: config.Config, factory: sessionmaker[Session]
) -> None:
    _hold_lease(cfg, factory, "sample", f"{leases.HOST}:{os.getpid()}:someone-else")
    runner = syncnow.SyncRunner(cfg, factory)
    runner.start("sample")  # a lease of this process: the engine decides
    done = runner.wait("sample", timeout=60)
    assert done is not None and done.state == "skipped"
    assert "being synced" in (done.error or "")


CSV_OK = b"name;domains\nAcme;acme.example\nGlobex;globex.example\n"
CSV_BAD = b"first_name,last_name,email,owner\nAnn,Lee,ann@acme.example,nobody@example.com\n"


def test_upload_is_kept_private_then_dry_run_then_applied(
    cfg: config.Config, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    base = tmp_path / "uploads"
    staged = crmupload.stage(base, "root@example.com", "companies", "../../clients.csv", CSV_OK)
    assert staged.filename == "clients.csv" and staged.size == len(CSV_OK)
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    files = sorted(base.iterdir())
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    with pytest.raises(crmupload.UploadError):  # another admin cannot apply it...
        crmupload.load(base, staged.id, "other-admin@example.com")
    crmupload.discard(base, staged.id, "other-admin@example.com")  # ...nor discard it
    loaded, data = crmupload.load(base, staged.id, "root@example.com")
    assert loaded == staged and data == CSV_OK
    with store.session_scope(factory) as s:
        dry = crmupload.run_import(s, cfg, loaded, data, apply=False, actor="web:root")
    assert dry.created == 2 and not dry.applied and not dry.errors
    with store.session_scope(factory) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.Company)) == 0
        done = crmupload.run_import(s, cfg, loaded, data, apply=True, actor="web:root")
    assert done.applied and done.created == 2
    crmupload.discard(base, staged.id, "root@example.com")
    with pytest.raises(crmupload.UploadError, match="upload the file again"):
        crmupload.load(base, staged.id, "root@example.com")
    with store.session_scope(factory) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.Company)) == 2


def test_upload_errors_are_line_numbered_and_refusals_say_why(
    cfg: config.Config, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    base = tmp_path / "uploads"
    staged = crmupload.stage(base, "root@example.com", "contacts", "c.csv", CSV_BAD)
    with store.session_scope(factory) as s:
        report = crmupload.run_import(s, cfg, staged, CSV_BAD, apply=True, actor="web:root")
    assert not report.applied and report.errors and report.errors[0][0] == 2
    assert "nobody@example.com" in report.errors[0][1]
    with pytest.raises(crmupload.UploadError, match="empty"):
        crmupload.stage(base, "root@example.com", "contacts", "c.csv", b"")
    with pytest.raises(crmupload.UploadError, match="MB"):
        crmupload.stage(
            base, "root@example.com", "contacts", "c.csv", b"x" * (crmupload.MAX_BYTES + 1)
        )
    with pytest.raises(crmupload.UploadError, match="unknown kind"):
        crmupload.stage(base, "root@example.com", "deals", "c.csv", CSV_OK)
    for bad_id in ("../../etc/passwd", "short", staged.id + "/x"):
        with pytest.raises(crmupload.UploadError):
            crmupload.load(base, bad_id, "root@example.com")
    no_table = crmupload.stage(base, "root@example.com", "contacts", "x.csv", b"hello\n")
    with store.session_scope(factory) as s, pytest.raises(crmupload.UploadError, match="email"):
        crmupload.run_import(s, cfg, no_table, b"hello\n", apply=False, actor="web:root")


def test_old_uploads_are_swept(tmp_path: Path) -> None:
    base = tmp_path / "uploads"
    old = crmupload.stage(base, "root@example.com", "companies", "a.csv", CSV_OK)
    past = 1_000_000_000  # 2001: far older than MAX_AGE
    for f in base.iterdir():
        os.utime(f, (past, past))
    crmupload.stage(base, "root@example.com", "companies", "b.csv", CSV_OK)
    with pytest.raises(crmupload.UploadError):
        crmupload.load(base, old.id, "root@example.com")


def test_every_state_kind_and_role_the_pages_name_has_words() -> None:
    from mailmanager.services import access
    from mailmanager.web import admin_queues, admin_text, i18n

    assert admin_text  # importing it adds the admin strings
    keys = [f"admin.state.{s}" for s in mailboxhealth.STATES]
    keys += [f"admin.{p}.{k}" for k in mailboxhealth.ERROR_KINDS for p in ("err", "fix")]
    keys += [f"admin.role.{r}" for r in access.ROLES]
    keys += [f"admin.o.st.{s}" for s in admin_queues.OUTBOX_STATUSES]
    keys += [f"admin.i.kind.{k}" for k in crmupload.KINDS]
    for lang in ("fr", "en"):
        t = i18n.translator(lang)
        assert [k for k in keys if t(k) == k] == []
    templates = REPO / "mailmanager" / "web" / "templates"
    used = set()
    for path in templates.glob("admin_*.html"):
        used |= set(re.findall(r"""t\(["'](admin\.[a-z_.]+)["']""", path.read_text()))
    t = i18n.translator("en")
    used = {k for k in used if not k.endswith(".")}  # prefixes of the keys checked above
    assert used and [k for k in sorted(used) if t(k) == k] == []
