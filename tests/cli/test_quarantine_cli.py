"""`mailmanager quarantine list|show` on a sync that kept two items aside: an Outlook .msg
file and a file without a header block, beside a real message."""

from __future__ import annotations

import json
from pathlib import Path

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
