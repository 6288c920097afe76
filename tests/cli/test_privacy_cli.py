"""The privacy commands as a user runs them (issue #16), on SQLite and PostgreSQL: private
threads in `threads list|show`, `messages show` and `timeline`; the read audit and
`privacy audit`; `privacy export` (a 0600 zip, opened); `privacy erase` with its dry run
and confirmation; `privacy retention` under a fixed clock (faketime)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from tests import faketime
from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter
from tests.mailgen import make

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JANE = "jane@acme.fr"


def _setup(
    tmp_path: Path,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    extra: str = "",
) -> Path:
    inbox = tmp_path / "mail" / "INBOX"
    inbox.mkdir(parents=True)
    (inbox / "1.eml").write_bytes(
        make(f"Jane Doe <{JANE}>", "alice@example.com", "Devis Jane", body="JANE-BODY\n",
             msgid="j1@acme.fr", at=T0)
    )  # fmt: skip
    (inbox / "2.eml").write_bytes(
        make("paul@acme.fr", "alice@example.com", "Sujet Paul", msgid="p2@acme.fr",
             at=T0.replace(hour=10))
    )  # fmt: skip
    (inbox / "notes.txt").write_bytes("Notes de réunion\n\nRappeler Acme lundi.\n".encode())
    cfg = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        path = "{tmp_path / "mail"}"
        owner = "alice@example.com"
        """,
        extra,
    )
    with store.session_scope(factory) as s:
        jane = models.Contact(first_name="Jane", last_name="Doe")
        s.add(jane)
        s.flush()
        s.add(models.ContactEmail(contact_id=jane.id, email=JANE, display="Jane Doe"))
    cli("sync", config=cfg)
    return cfg


def _actions(factory: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with factory() as s:
        a = models.AuditLog
        rows = s.execute(sa.select(a.actor, a.action, a.target).order_by(a.id))
        return [(actor, action, target) for actor, action, target in rows]


def test_private_threads_and_the_read_audit(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _setup(tmp_path, db_url, factory, write_config)
    jane_msg = cli_json("messages", "show", "j1@acme.fr", config=cfg)
    tid = jane_msg["thread_id"]
    [(actor, action, target)] = _actions(factory)
    assert action == "message.read" and target == f"message:{jane_msg['id']}"
    assert actor.startswith("cli:") and actor != "cli:"  # the OS user
    cli("threads", "show", str(tid), "--actor", "dpo", config=cfg)
    assert ("cli:dpo", "thread.read", f"thread:{tid}") in _actions(factory)

    bob = cli("threads", "private", str(tid), "--user", "bob@example.com", config=cfg, check=False)
    assert bob.returncode == 1 and "owns no mailbox holding thread" in bob.stderr
    cli("threads", "private", str(tid), "--user", "alice@example.com", config=cfg)
    listed = cli("threads", "list", config=cfg).stdout
    assert "(private)" in listed and "Devis Jane" not in listed and "Sujet Paul" in listed
    assert "Devis Jane" in cli("threads", "list", "--user", "alice@example.com", config=cfg).stdout
    shown = cli("threads", "show", str(tid), config=cfg).stdout
    assert "(private)" in shown and "Devis Jane" not in shown and "JANE" not in shown
    assert "Devis Jane" in cli("threads", "show", str(tid), "--user", "alice@example.com",
                               config=cfg).stdout  # fmt: skip
    refused = cli("messages", "show", "j1@acme.fr", config=cfg, check=False)
    assert refused.returncode == 1 and "private" in refused.stderr and "Devis" not in refused.stdout
    timeline = cli("timeline", "contact", JANE, config=cfg).stdout
    assert "(private)" in timeline and "Devis Jane" not in timeline
    cli("threads", "private", str(tid), "--off", "--user", "alice@example.com", config=cfg)
    assert "Devis Jane" in cli("threads", "list", config=cfg).stdout

    audit = cli_json("privacy", "audit", config=cfg)
    actions = {e["action"] for e in audit}
    assert {"message.read", "thread.read", "thread.private", "thread.public"} <= actions
    assert {"timeline.read"} <= actions
    assert cli_json("privacy", "audit", "--since", "2100-01-01", config=cfg) == []
    bad = cli("privacy", "audit", "--since", "yesterday", config=cfg, check=False)
    assert bad.returncode == 1 and "2026-11-30" in bad.stderr

    [item] = cli_json("quarantine", "list", config=cfg)
    saved = str(tmp_path / "item.bin")
    cli("quarantine", "show", str(item["id"]), "--raw", "-o", saved, "--actor", "dpo", config=cfg)
    assert ("cli:dpo", "quarantine.read_raw", f"quarantine:{item['id']}") in _actions(factory)


def test_export_is_a_private_zip_of_everything_about_the_person(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _setup(tmp_path, db_url, factory, write_config)
    out = tmp_path / "jane.zip"
    printed = cli("privacy", "export", "--address", "Jane@acme.fr", "-o", str(out), config=cfg)
    assert "1 messages (1 .eml)" in printed.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        person = json.loads(zf.read("person.json"))
        [meta] = [n for n in names if n.startswith("messages/") and n.endswith(".json")]
        message = json.loads(zf.read(meta))
        eml = zf.read(meta.replace(".json", ".eml"))
    assert {"person.json", "links.json", "reminders.json", "audit.json"} <= names
    assert person["contact"]["last_name"] == "Doe" and JANE in person["contact"]["addresses"]
    assert message["message_id"] == "j1@acme.fr" and b"JANE-BODY" in eml
    assert "p2@acme.fr" not in json.dumps(message)
    assert [a for _, a, _ in _actions(factory)] == ["privacy.export"]


def test_erase_asks_first_and_dry_run_changes_nothing(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _setup(tmp_path, db_url, factory, write_config)
    dry = cli("privacy", "erase", "--address", JANE, "--dry-run", config=cfg).stdout
    assert "1 messages would be deleted" in dry and "dry run" in dry
    cmd = [sys.executable, "-m", "mailmanager", "--config", str(cfg)]
    no = subprocess.run([*cmd, "privacy", "erase", "--address", JANE], input="n\n",
                        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert no.returncode == 1 and "Aborted" in no.stderr
    assert len(cli_json("threads", "list", config=cfg)) == 2
    done = cli("privacy", "erase", "--address", JANE, "--yes", "--actor", "dpo", config=cfg)
    assert "1 messages were deleted" in done.stdout and "tombstone" in done.stdout
    assert [t["subject"] for t in cli_json("threads", "list", config=cfg)] == ["Sujet Paul"]
    assert [(a, b) for a, b, _ in _actions(factory)] == [("cli:dpo", "privacy.erase")]
    missing = cli("privacy", "erase", config=cfg, check=False)
    assert missing.returncode == 1 and "--address" in missing.stderr


def test_retention_command_under_a_fixed_clock(
    tmp_path: Path, db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = _setup(tmp_path, db_url, factory, write_config, "[retention]\nmessages_days = 30\n")
    # At 09:30 on 1 April the cutoff is 09:30 on 2 March: Jane's message (09:00) is older,
    # Paul's (10:00) is not.
    clock = faketime.environ("2026-04-01 09:30:00", {**os.environ, "TZ": "UTC"})
    cmd = [sys.executable, "-m", "mailmanager", "--config", str(cfg)]
    dry = subprocess.run([*cmd, "privacy", "retention", "--dry-run"], env=clock,
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert "messages older than 30 days: 1 would be deleted" in dry.stdout
    assert "quarantined items: kept ([retention] quarantine_days is not set)" in dry.stdout
    assert len(cli_json("threads", "list", config=cfg)) == 2
    done = subprocess.run([*cmd, "privacy", "retention"], env=clock,
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert "messages older than 30 days: 1 deleted" in done.stdout
    assert [t["subject"] for t in cli_json("threads", "list", config=cfg)] == ["Sujet Paul"]
