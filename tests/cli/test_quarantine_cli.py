"""`mailmanager quarantine list|show` on a sync that kept two items aside: an Outlook .msg
file and a file without a header block, beside a real message."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager.db import models, store
from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
NO_HEADERS = "Notes de réunion\n\nRappeler Acme lundi.\n".encode()
GOOD = (
    b"From: Jane Doe <jane@acme.fr>\r\nTo: alice@example.com\r\nSubject: Devis\r\n"
    b"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\nMessage-ID: <devis-1@acme.fr>\r\n\r\nBonjour\r\n"
)


def _mailbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "mail" / "INBOX"
    inbox.mkdir(parents=True)
    (inbox / "devis.eml").write_bytes(GOOD)
    (inbox / "rendez-vous.msg").write_bytes(OLE2)
    (inbox / "notes.txt").write_bytes(NO_HEADERS)
    return tmp_path / "mail"


def test_quarantine_list_and_show(tmp_path: Path, db_url: str, write_config: ConfigWriter) -> None:
    root = _mailbox(tmp_path)
    cfg = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice-local"
        connector = "maildir"
        path = "{root}"
        owner = "alice@example.com"
        """,
    )
    assert cli("quarantine", "list", config=cfg).stdout.strip() == "nothing is quarantined"
    cli("sync", config=cfg)
    items = cli_json("quarantine", "list", config=cfg)
    by_file = {Path(i["provider_id"]).name: i for i in items}
    assert set(by_file) == {"rendez-vous.msg", "notes.txt"}, items
    msg, notes = by_file["rendez-vous.msg"], by_file["notes.txt"]
    assert msg["mailbox"] == "alice-local" and msg["folder"] == "INBOX"
    assert msg["reason"] == "outlook_msg_ole2" and "Outlook .msg" in msg["explanation"]
    assert notes["reason"] == "no_header_block" and "no header block" in notes["explanation"]

    text = cli("quarantine", "list", config=cfg).stdout
    assert "alice-local / INBOX" in text and "Outlook .msg file" in text
    assert "2 quarantined" in text
    assert cli_json("quarantine", "list", "--mailbox", "nope", config=cfg) == []

    shown = cli("quarantine", "show", str(notes["id"]), config=cfg).stdout
    assert "no header block" in shown and "alice-local" in shown and "notes.txt" in shown
    assert json.loads(cli("quarantine", "show", str(msg["id"]), "--json", config=cfg).stdout)[
        "size"
    ] == len(OLE2)
    raw = cli("quarantine", "show", str(notes["id"]), "--raw", config=cfg).stdout
    assert raw == NO_HEADERS.decode()
    saved = tmp_path / "item.msg"
    cli("quarantine", "show", str(msg["id"]), "--raw", "--output", str(saved), config=cfg)
    assert saved.read_bytes() == OLE2

    missing = cli("quarantine", "show", "999999", config=cfg, check=False)
    assert missing.returncode == 1 and "quarantine list" in missing.stderr
    assert "Traceback" not in missing.stderr


def _synced(tmp_path: Path, db_url: str, write_config: ConfigWriter) -> tuple[Path, dict[str, Any]]:
    root = _mailbox(tmp_path)
    cfg = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice-local"
        connector = "maildir"
        path = "{root}"
        owner = "alice@example.com"
        """,
    )
    cli("sync", config=cfg)
    items = {Path(i["provider_id"]).name: i for i in cli_json("quarantine", "list", config=cfg)}
    return cfg, items


LATER = GOOD.replace(b"devis-1@acme.fr", b"devis-2@acme.fr").replace(b"Devis", b"Relance")


def test_quarantine_retry_stores_what_now_parses_and_keeps_the_rest(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    cfg, items = _synced(tmp_path, db_url, write_config)
    notes, msg = items["notes.txt"], items["rendez-vous.msg"]
    engine = store.make_engine(db_url)
    with engine.begin() as conn:  # as a parser bug once left it: good bytes, an error
        conn.execute(
            sa.update(models.Quarantine)
            .where(models.Quarantine.id == notes["id"])
            .values(data=LATER, reason="parser_error: KeyError")
        )
    engine.dispose()

    usage = cli("quarantine", "retry", config=cfg, check=False)
    assert usage.returncode == 2 and "--all" in usage.stderr
    kept = cli("quarantine", "retry", str(msg["id"]), config=cfg, check=False)
    assert kept.returncode == 1 and "still quarantined" in kept.stdout and "Outlook" in kept.stdout
    outcomes = cli_json("quarantine", "retry", "--all", "--mailbox", "alice-local", config=cfg)
    by_id = {o["id"]: o for o in outcomes}
    done = by_id[notes["id"]]
    assert done["stored"] and done["reason"] == "" and done["message_id"]
    assert not by_id[msg["id"]]["stored"]
    left = cli_json("quarantine", "list", config=cfg)
    assert [i["id"] for i in left] == [msg["id"]] and left[0]["reason"] == "outlook_msg_ole2"
    shown = cli("messages", "show", "devis-2@acme.fr", config=cfg).stdout
    assert "Relance" in shown
    engine = store.make_engine(db_url)
    with engine.connect() as conn:
        thread = conn.scalar(
            sa.select(models.Message.thread_id).where(models.Message.id == done["message_id"])
        )
        audit = conn.execute(
            sa.select(models.AuditLog.action, models.AuditLog.target).where(
                models.AuditLog.action == "quarantine.retry"
            )
        ).all()
    engine.dispose()
    assert thread is not None  # threaded, as a sync would have
    assert ("quarantine.retry", f"quarantine:{notes['id']}") in audit


def test_quarantine_drop_asks_then_deletes_and_audits(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    cfg, items = _synced(tmp_path, db_url, write_config)
    target = items["rendez-vous.msg"]["id"]
    refused = cli("quarantine", "drop", str(target), config=cfg, check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert len(cli_json("quarantine", "list", config=cfg)) == 2
    out = cli("quarantine", "drop", str(target), "--yes", "--actor", "ops", config=cfg).stdout
    assert "dropped" in out
    assert [i["id"] for i in cli_json("quarantine", "list", config=cfg)] != [target]
    assert len(cli_json("quarantine", "list", config=cfg)) == 1
    missing = cli("quarantine", "drop", str(target), "--yes", config=cfg, check=False)
    assert missing.returncode == 1 and "quarantine list" in missing.stderr
    engine = store.make_engine(db_url)
    with engine.connect() as conn:
        actor, detail = conn.execute(
            sa.select(models.AuditLog.actor, models.AuditLog.detail).where(
                models.AuditLog.action == "quarantine.drop"
            )
        ).one()
    engine.dispose()
    assert actor == "cli:ops" and json.loads(detail)["reason"] == "outlook_msg_ole2"
    assert "\\xd0" not in detail  # what it was, never its bytes


def test_raw_saved_with_output_is_private(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    cfg, items = _synced(tmp_path, db_url, write_config)
    saved = tmp_path / "item.msg"
    saved.write_bytes(b"old")
    saved.chmod(0o644)  # an existing, wider file is narrowed too
    cli("quarantine", "show", str(items["rendez-vous.msg"]["id"]), "--raw", "-o", str(saved),
        config=cfg)  # fmt: skip
    assert saved.read_bytes() == OLE2 and stat.S_IMODE(saved.stat().st_mode) == 0o600
