"""Files (issue #16): the SQLite database is created readable by its owner only, with its
-wal and -shm files; `config check` warns, with the fix, about a database or secret file
others can read; a Maildir symlink out of the root is quarantined by a real sync, saying so,
and the mail after it is stored."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.services import quarantine as quarantine_svc
from mailmanager.sync import engine as sync
from tests.cli.helpers import cli
from tests.conftest import ConfigWriter
from tests.mailgen import make

ALICE = "alice@example.com"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644
    yield
    os.umask(old)


def test_a_new_sqlite_database_and_its_wal_are_private(tmp_path: Path, wide_umask: None) -> None:
    path = tmp_path / "data" / "mm.db"
    engine = store.make_engine(f"sqlite:///{path}")
    try:
        store.create_schema(engine)
        with engine.begin() as conn:  # a write in WAL mode: -wal and -shm exist now
            conn.execute(sa.insert(models.Company).values(name="Acme"))
        assert mode(path) == 0o600
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            assert side.exists() and mode(side) == 0o600, suffix
    finally:
        engine.dispose()


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "mm.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    store.make_engine(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o640  # not changed behind the admin's back: `config check` warns


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_config_check_warns_about_files_others_can_read(
    db_url: str, write_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Path(sa.engine.make_url(db_url).database or "")
    key = tmp_path / "secret.key"
    key.write_text("x\n")
    cfg = write_config(db_url, "")
    db.chmod(0o600)
    key.chmod(0o600)
    monkeypatch.setenv("MAILMANAGER_SECRET_KEY_FILE", str(key))
    quiet = cli("config", "check", config=cfg)
    assert "warning" not in quiet.stdout
    db.chmod(0o644)
    key.chmod(0o640)
    loud = cli("config", "check", config=cfg)  # a warning, not an error: exit 0
    assert f"warning: {db} (the database: raw mail)" in loud.stdout
    assert f"chmod 600 {db}" in loud.stdout and "mode 0644" in loud.stdout
    assert f"warning: {key} (the token encryption key)" in loud.stdout
    assert f"chmod 600 {key}" in loud.stdout


def test_a_maildir_symlink_out_of_the_root_is_quarantined_by_the_sync(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, tmp_path: Path
) -> None:
    secret = tmp_path / "private" / "notes.eml"
    secret.parent.mkdir()
    secret.write_bytes(b"Subject: mots de passe\nMessage-ID: <leak@x>\n\nhunter2\n")
    secret.chmod(0o600)
    root = tmp_path / "mail"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    os.symlink(secret, root / "cur" / "1000.leak:2,S")
    (root / "cur" / "1001.canary:2,S").write_bytes(
        make("jean@acme.fr", ALICE, "Canari", msgid="canary@acme.fr")
    )
    os.symlink(secret.parent, root / ".Private")  # a folder out of the root: never synced
    mailbox = f"""
        [[mailboxes]]
        name = "local"
        connector = "maildir"
        path = "{root}"
        owner = "{ALICE}"
        [sync]
        parse_workers = 0
        """
    cfg = config.load(write_config(db_url, mailbox))
    report = sync.Syncer(cfg, factory).sync("local")
    assert report.status == "ok", report.error
    assert [f.folder for f in report.folders] == ["INBOX"]
    with factory() as s:
        ids = set(s.scalars(sa.select(models.Message.message_id)))
        [item] = quarantine_svc.list_items(s, "local")
        raws = s.scalars(sa.select(models.MessageRaw.data)).all()
    assert ids == {"canary@acme.fr"}
    assert item.reason.startswith("symlink_outside_root") and str(secret) in item.reason
    assert "outside the maildir root" in item.explanation and item.size == 0
    assert not any(b"hunter2" in r for r in raws if r)
