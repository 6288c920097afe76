"""The IMAP adapter's parsing pieces, on captured server responses (no Dovecot needed).

Gmail's X-GM-* extensions cannot run on Dovecot, so the Gmail path is checked two ways: the
parsers on FETCH responses shaped like Google's documentation
(developers.google.com/gmail/imap/imap-extensions), and the whole connector against a small
scripted server on loopback that answers like Gimap.
"""

from __future__ import annotations

import base64
import re
import shlex
import socketserver
import sys
import threading
from collections.abc import Iterator

import pytest
from imapclient.response_parser import parse_fetch_response

from connectors.imap import adapter as ad
from connectors.imap.connector import ImapConnector
from mailmanager import spi

GMAIL_FETCH = [
    (
        b"1 (X-GM-THRID 1266894439832287888 X-GM-MSGID 1266894439832287889 "
        b'X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante" "&AMk-l&AOk-ments envoy&AOk-s"'
        b' 2024) UID 7 FLAGS (\\Seen $Phishing) INTERNALDATE "26-Nov-2026 10:00:00 +0100" '
        b"BODY[] {24}",
        b"Subject: hi\r\n\r\nhello\r\n\r\n",
    ),
    b")",
]


def test_gmail_attributes_from_a_fetch_response() -> None:
    item = parse_fetch_response(GMAIL_FETCH, False, True)[7]
    msgid, thrid, labels = ad.gmail_attributes(item)
    assert (msgid, thrid) == ("1266894439832287889", "1266894439832287888")
    assert labels == {
        "\\Inbox",
        "\\Sent",
        "Important",
        "Muy Importante",
        "Éléments envoyés",
        "2024",
    }
    assert ad.flag_set(item[b"FLAGS"]) == {"\\Seen", "$Phishing"}


def test_gmail_attributes_absent() -> None:
    assert ad.gmail_attributes({b"FLAGS": ()}) == (None, None, frozenset())


@pytest.mark.parametrize(
    ("entries", "uids"),
    [
        ([b"(EARLIER) 1:3,5"], [1, 2, 3, 5]),
        ([b"(EARLIER) 300:298", b"8"], [8, 298, 299, 300]),
        (["4,4,2"], [2, 4]),
        ([], []),
    ],
)
def test_parse_vanished(entries: list[bytes | str], uids: list[int]) -> None:
    assert ad.parse_vanished(entries) == uids


def test_uid_sets_round_trip() -> None:
    uids = [1, 2, 3, 7, 9, 10, 500]
    assert ad.to_uid_set(uids) == "1:3,7,9:10,500"
    assert ad.parse_uid_set(ad.to_uid_set(uids)) == uids
    assert ad.to_uid_set([]) == "" and ad.parse_uid_set("") == []


@pytest.mark.parametrize(
    ("name", "flags", "delim", "role"),
    [
        ("inbox", (), "/", spi.FolderRole.INBOX),
        ("Sent", ("\\Trash",), "/", spi.FolderRole.TRASH),  # SPECIAL-USE wins over the name
        ("[Gmail]/All Mail", ("\\AllMail", "\\HasNoChildren"), "/", spi.FolderRole.ALL),  # XLIST
        ("[Gmail]/Spam", ("\\Spam",), "/", spi.FolderRole.JUNK),
        ("Éléments envoyés", (), "/", spi.FolderRole.SENT),
        ("INBOX.Sent Items", (), ".", spi.FolderRole.SENT),
        ("Gesendet", (), "/", spi.FolderRole.SENT),
        ("Archives", (), "/", spi.FolderRole.ARCHIVE),
        ("Clients/Sent stuff", (), "/", spi.FolderRole.OTHER),
    ],
)
def test_folder_roles(name: str, flags: tuple[str, ...], delim: str, role: spi.FolderRole) -> None:
    assert ad.role_of(name, flags, delim) is role


# --------------------------------------------------------- a Gimap-like scripted server
GMAIL_CAPS = (
    "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS "
    "COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS "
    "LITERAL- SPECIAL-USE"
)
BODIES = {7: b"Subject: one\r\n\r\nfirst\r\n", 8: b"Subject: two\r\n\r\nsecond\r\n"}


class _Gimap(socketserver.StreamRequestHandler):
    def say(self, line: str | bytes) -> None:
        self.wfile.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def handle(self) -> None:
        self.say(f"* OK [CAPABILITY {GMAIL_CAPS}] Gimap ready")
        for raw in self.rfile:
            tag, _, rest = raw.decode().rstrip("\r\n").partition(" ")
            cmd = rest.upper()
            if cmd.startswith("CAPABILITY"):
                self.say(f"* CAPABILITY {GMAIL_CAPS}")
            elif cmd.startswith("ENABLE"):
                self.say("* ENABLED CONDSTORE")
            elif cmd.startswith("LIST"):
                self.say('* LIST (\\HasNoChildren) "/" "INBOX"')
                self.say('* LIST (\\HasChildren \\Noselect) "/" "[Gmail]"')
                self.say('* LIST (\\All \\HasNoChildren) "/" "[Gmail]/All Mail"')
                self.say('* LIST (\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"')
                self.say('* LIST (\\HasNoChildren) "/" "Clients"')
            elif cmd.startswith("AUTHENTICATE XOAUTH2"):
                self.say("+ ")
                answer = base64.b64decode(self.rfile.readline().strip())
                ok = answer == b"user=a@gmail.com\x01auth=Bearer tok-123\x01\x01"
                self.say(f"{tag} OK Success" if ok else f"{tag} NO [AUTHENTICATIONFAILED] No")
                continue
            elif cmd.startswith("EXAMINE"):
                self.say("* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)")
                self.say("* OK [UIDVALIDITY 11] UIDs valid.")
                self.say("* 2 EXISTS")
                self.say("* OK [UIDNEXT 9] Predicted next UID.")
                self.say("* OK [HIGHESTMODSEQ 4242]")
                self.say(f"{tag} OK [READ-ONLY] [Gmail]/All Mail selected. (Success)")
                continue
            elif cmd.startswith("UID SEARCH"):
                self.say("* SEARCH 7 8")
            elif cmd.startswith("UID FETCH") and "RFC822.SIZE" in cmd:
                for seq, (uid, body) in enumerate(BODIES.items(), 1):
                    self.say(f"* {seq} FETCH (UID {uid} RFC822.SIZE {len(body)})")
            elif cmd.startswith("UID FETCH"):
                assert "BODY.PEEK[]" in cmd and "X-GM-MSGID" in cmd
                for seq, (uid, body) in enumerate(BODIES.items(), 1):
                    self.say(
                        f"* {seq} FETCH (X-GM-THRID 99{uid} X-GM-MSGID 55{uid} X-GM-LABELS "
                        f'(\\Inbox "Clients") UID {uid} FLAGS (\\Seen) '
                        f'INTERNALDATE "26-Nov-2026 10:00:00 +0100" BODY[] {{{len(body)}}}'
                    )
                    self.wfile.write(body)
                    self.say(")")
            elif cmd.startswith("LOGOUT"):
                self.say("* BYE LOGOUT Requested")
                self.say(f"{tag} OK 73 good day (Success)")
                return
            elif not re.match(r"(LOGIN|NOOP)", cmd):
                self.say(f"{tag} BAD unexpected {cmd.split()[0]}")
                continue
            self.say(f"{tag} OK Success")


@pytest.fixture
def gimap() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Gimap)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_gmail_syncs_all_mail_with_gmail_ids(gimap: int) -> None:
    values = {"host": "127.0.0.1", "port": gimap, "security": "none", "username": "a@gmail.com",
              "password": "app-password"}  # fmt: skip
    conn = ImapConnector(spi.ConnectorConfig("gmail", values))
    try:
        folders = conn.list_folders()
        assert [(f.id, f.role) for f in folders] == [("[Gmail]/All Mail", spi.FolderRole.ALL)]
        batch = conn.fetch_changes(folders[0], None, 50)
    finally:
        conn.close()
    assert [m.provider_id for m in batch.messages] == ["557", "558"]
    assert [m.thread_hint for m in batch.messages] == ["997", "998"]
    assert [m.raw for m in batch.messages] == list(BODIES.values())
    assert batch.messages[0].labels == {"\\Inbox", "Clients"}
    assert batch.messages[0].internal_date is not None
    assert batch.messages[0].internal_date.isoformat() == "2026-11-26T09:00:00+00:00"
    assert batch.reset and not batch.more


@pytest.mark.parametrize(
    ("command", "works"),
    [([sys.executable, "-c", "print('tok-123')"], True), (["false"], False)],
)
def test_xoauth2_with_a_token_command(gimap: int, command: list[str], works: bool) -> None:
    values = {"host": "127.0.0.1", "port": gimap, "security": "none", "username": "a@gmail.com",
              "oauth2_token_command": shlex.join(command)}  # fmt: skip
    conn = ImapConnector(spi.ConnectorConfig("gmail", values))
    try:
        if works:
            assert [f.role for f in conn.list_folders()] == [spi.FolderRole.ALL]
        else:
            with pytest.raises(spi.AuthError, match="oauth2_token_command"):
                conn.list_folders()
    finally:
        conn.close()
