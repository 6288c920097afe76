"""The CLI never prints a terminal escape sequence that came in a message (issue #16): a
subject or a name can neither clear the screen nor plant a hyperlink."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter
from tests.integration.notify_support import write_maildir_message

CLEAR = "\x1b[2J"
LINK = "\x1b]8;;https://evil.example/\x07cliquez ici\x1b]8;;\x07"
HOSTILE = (
    f'From: "Jean{CLEAR} Dupont" <jean@acme.fr>\r\nTo: alice@example.com\r\n'
    f"Subject: Devis {LINK} urgent{CLEAR}\r\nMessage-ID: <esc@acme.fr>\r\n"
    "Date: Mon, 2 Nov 2026 09:00:00 +0000\r\n\r\n"
    f"Bonjour {CLEAR}voici\x9b31m le devis\r\n"
).encode()


def test_escape_sequences_from_mail_are_not_printed(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    root = tmp_path / "maildir"
    write_maildir_message(root, "INBOX", HOSTILE)
    cfg = write_config(
        f"sqlite:///{tmp_path / 'mm.db'}",
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "maildir"
        path = "{root}"
        owner = "alice@example.com"
        """,
    )
    cli("sync", config=cfg)
    [thread] = cli_json("threads", "list", config=cfg)
    assert CLEAR in thread["subject"]  # stored as it came; JSON escapes it
    outputs = {
        "threads list": cli("threads", "list", config=cfg).stdout,
        "threads show": cli("threads", "show", str(thread["id"]), config=cfg).stdout,
        "messages show": cli("messages", "show", "esc@acme.fr", config=cfg).stdout,
        "explain": cli("explain", "esc@acme.fr", config=cfg).stdout,
    }
    for command, out in outputs.items():
        assert not any(c in out for c in "\x1b\x07\x9b"), (command, out)
        assert "Devis cliquez ici urgent" in out, (command, out)
    assert "Jean Dupont" in outputs["messages show"]
    assert "Bonjour voici le devis" in outputs["messages show"]
