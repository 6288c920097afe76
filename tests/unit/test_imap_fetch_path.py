"""The adapter's FETCH fast path reads and parses exactly as imaplib + imapclient do.

`ad._fetch_complete` (the response reader) is compared with imaplib's `_command_complete`
on scripted server output: same result or same exception, same untagged responses kept,
same bytes left unread. Then `ImapSession.fetch_messages` / `fetch_flags` / `sizes` are
compared with the fast path on and off (imaplib's reader, imapclient's parser).
"""

from __future__ import annotations

import dataclasses
import imaplib
import io
import re
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.imap import adapter as ad
from connectors.imap import wire as imap_wire
from mailmanager import spi


class ScriptedIMAP(imaplib.IMAP4):
    """imaplib on a byte string instead of a socket: `feed()` what the server says next."""

    def __init__(self) -> None:
        self._script = b"* OK ready\r\n"
        super().__init__("scripted", 143)
        self.state = "SELECTED"
        # imaplib draws the tag prefix at random: fixed here, so runs compare equal (bytes at
        # run time, whatever typeshed says)
        vars(self).update(
            tagpre=b"ABCD",
            tagre=re.compile(rb"(?P<tag>ABCD\d+) (?P<type>[A-Z]+) (?P<data>.*)", re.ASCII),
        )

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.file = io.BufferedReader(io.BytesIO(self._script), buffer_size=64)

    def _get_capabilities(self) -> None:
        self.capabilities = ("IMAP4REV1",)

    def send(self, data: object) -> None:
        pass

    def next_tag(self) -> bytes:
        return b"ABCD" + str(self.tagnum).encode()

    def feed(self, script: bytes, buffer_size: int = 64) -> None:
        """The server's output from now on; "{tag}" is the next command's tag."""
        script = script.replace(b"{tag}", self.next_tag())
        self.file = io.BufferedReader(io.BytesIO(script), buffer_size=buffer_size)


Complete = Callable[[imaplib.IMAP4, bytes], tuple[str, list[Any]]]


def imaplib_complete(imap: imaplib.IMAP4, tag: bytes) -> tuple[str, list[Any]]:
    done: tuple[str, list[Any]] = imap._command_complete("FETCH", tag)
    return done


def run_reader(complete: Complete, script: bytes, buffer_size: int) -> tuple[object, ...]:
    imap = ScriptedIMAP()
    imap.untagged_responses.clear()
    imap.untagged_responses["FETCH"] = [b"1 (UID 1 FLAGS ())"]  # stale, from before
    imap.feed(script, buffer_size)
    tag = imap._command("UID", "FETCH", "1:*", "(UID FLAGS)")
    try:
        outcome: object = complete(imap, tag)
    except imaplib.IMAP4.error as exc:
        outcome = (type(exc).__name__, str(exc))
    return outcome, imap.untagged_responses, imap.file.read(), imap.tagged_commands


def same_as_imaplib(script: bytes) -> tuple[object, ...]:
    results = []
    for buffer_size in (7, 64, 8192):
        ours = run_reader(ad._fetch_complete, script, buffer_size)
        assert ours == run_reader(imaplib_complete, script, buffer_size)
        results.append(ours)
    return results[-1]


LITERAL = b"Subject: a)\r\n* 3 FETCH (UID 3 FLAGS (\\Deleted))\r\n{tag} OK fake\r\n)((\r\n"
BODY_LINE = b'* 1 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE "26-Nov-2026 06:48:44 +0100" BODY[] '


def fetch_with_literal(seq: int, uid: int, raw: bytes) -> bytes:
    return b"* %d FETCH (UID %d FLAGS () BODY[] {%d}\r\n%s)\r\n" % (seq, uid, len(raw), raw)


SCRIPTS = {
    "plain": BODY_LINE + b"{5}\r\nhello)\r\n{tag} OK Fetch completed.\r\n",
    "literal with fetch text": fetch_with_literal(1, 7, LITERAL) + b"{tag} OK done\r\n",
    "interleaved": (
        b"* 4 EXISTS\r\n* VANISHED (EARLIER) 1:3,9\r\n"
        + fetch_with_literal(1, 7, b"one")
        + b"* OK [HIGHESTMODSEQ 9] x\r\n* 2 FETCH (UID 8 FLAGS (\\Seen) MODSEQ (9))\r\n"
        + b"* 1 EXPUNGE\r\n"
        + fetch_with_literal(2, 8, b"two")
        + b"{tag} OK done\r\n"
    ),
    "two literals": b"* 1 FETCH (BODY[] {3}\r\nabc BODY[HEADER] {2}\r\nde UID 5)\r\n{tag} OK x\r\n",
    "empty data": b"* 1 FETCH \r\n* 2 FETCH\r\n* 3 FETCH ()\r\n{tag} OK x\r\n",
    "left unread": fetch_with_literal(1, 7, b"x") + b"{tag} OK x\r\n* 9 EXISTS\r\n",
    "expungeissued": fetch_with_literal(1, 7, b"x") + b"{tag} NO [EXPUNGEISSUED] gone\r\n",
    "bad": b"{tag} BAD [CLIENTBUG] no\r\n",
    "bye": fetch_with_literal(1, 7, b"x") + b"* BYE shutting down\r\n" + b"* 2 FETCH (UID 8)\r\n",
    "bye then tag": b"* BYE going\r\n{tag} OK x\r\n",
    "eof": fetch_with_literal(1, 7, b"x"),
    "eof in literal": BODY_LINE + b"{50}\r\nshort",
    "eof after literal": BODY_LINE + b"{5}\r\nhello",
    "unterminated": b"* 1 FETCH (UID 7 FLAGS ()",
    "unterminated trailer": BODY_LINE + b"{5}\r\nhello)",
    "continuation": b"+ go on\r\n" + fetch_with_literal(1, 7, b"x") + b"{tag} OK x\r\n",
    "unknown tag": b"ZZZZ9 OK who\r\n{tag} OK x\r\n",
    "garbage": b"hello there\r\n{tag} OK x\r\n",
    "long line": b"* 1 FETCH (UID 7 FLAGS (" + b"x" * 1_000_010 + b"))\r\n{tag} OK x\r\n",
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_reader_does_what_imaplib_does(name: str) -> None:
    same_as_imaplib(SCRIPTS[name])


def test_where_imaplib_differs_it_reads_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ad, "_FAST_READ", False)  # Python 3.14 and later
    outcome, *_ = same_as_imaplib(SCRIPTS["interleaved"])
    assert outcome == ("OK", [b"done"])


def test_the_reader_keeps_order_and_records() -> None:
    outcome, untagged, _, _ = same_as_imaplib(SCRIPTS["interleaved"])
    assert outcome == ("OK", [b"done"])
    assert isinstance(untagged, dict)
    assert untagged["FETCH"] == [
        b"1 (UID 1 FLAGS ())",
        (b"1 (UID 7 FLAGS () BODY[] {3}", b"one"),
        b")",
        b"2 (UID 8 FLAGS (\\Seen) MODSEQ (9))",
        (b"2 (UID 8 FLAGS () BODY[] {3}", b"two"),
        b")",
    ]
    assert untagged["VANISHED"] == [b"(EARLIER) 1:3,9"]


_LINES = [
    fetch_with_literal(1, 7, b"x"),
    fetch_with_literal(2, 8, LITERAL),
    b"* 3 FETCH (UID 9 FLAGS (\\Seen))\r\n",
    b"* 3 FETCH (UID 9 BODY[] {4}\r\nab",  # cut short: the script ends there
    b"* 5 EXISTS\r\n",
    b"* VANISHED 4\r\n",
    b"* OK [HIGHESTMODSEQ 9] x\r\n",
    b"* BYE bye\r\n",
    b"* 1 FETCH (UID 7)",
    b"+ more\r\n",
    b"\r\n",
    b"{tag} OK done\r\n",
    b"{tag} NO [EXPUNGEISSUED] x\r\n",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_LINES), max_size=8), st.sampled_from([5, 40, 8192]))
def test_generated_scripts_read_as_imaplib_does(lines: list[bytes], buffer_size: int) -> None:
    script = b"".join(lines)
    ours = run_reader(ad._fetch_complete, script, buffer_size)
    assert ours == run_reader(imaplib_complete, script, buffer_size)


# ------------------------------------------------------------------- the session level
def session(script: bytes) -> tuple[ad.ImapSession, ScriptedIMAP]:
    s = ad.ImapSession(ad.ServerSettings("scripted", 143, "none", "u", "p"))
    imap = ScriptedIMAP()
    imap.untagged_responses.clear()
    imap.feed(script)
    s.client = types.SimpleNamespace(_imap=imap)  # duck-typed: _uid_fetch only uses _imap
    return s, imap


def slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """imaplib's reader and imapclient's parser, as before the fast path."""
    monkeypatch.setattr(ad, "_fetch_complete", imaplib_complete)
    monkeypatch.setattr(imap_wire, "parse_fetch", lambda records: None)


def outcome(call: Callable[[ad.ImapSession], object], script: bytes, gmail: bool) -> object:
    s, _ = session(script)
    if gmail:
        s.capabilities = frozenset({"X-GM-EXT-1"})
    try:
        got = call(s)
    except spi.ConnectorError as exc:
        return (type(exc).__name__, str(exc))
    if isinstance(got, list):
        return [dataclasses.astuple(m) for m in got]
    return got


SESSION_SCRIPTS = {
    **SCRIPTS,
    "dovecot": b"".join(
        b'* %d FETCH (UID %d FLAGS (%s) INTERNALDATE "%s" BODY[] {%d}\r\n%s)\r\n'
        % (n, n + 10, flags, date, len(raw), raw)
        for n, (flags, date, raw) in enumerate(
            [
                (b"\\Seen \\Recent", b"26-Nov-2026 06:48:44 +0100", b"a"),
                (b"", b"01-Jan-2026 00:00:00 -0000", b"b)"),
                (b"$Label1 2024", b" 1-Jan-2026 00:00:00 +0000", b"\r\n* 3 FETCH (UID 3)\r\n"),
                (b"\\Answered", b"31-Feb-2026 00:00:00 +0000", b""),
            ],
            1,
        )
    )
    + b"* 2 FETCH (UID 12 FLAGS (\\Flagged) MODSEQ (7))\r\n* 9 FETCH (UID 99 FLAGS ())\r\n"
    + b"{tag} OK done\r\n",
    "flags": b"* 1 FETCH (UID 11 FLAGS (\\Seen) MODSEQ (5))\r\n* 2 FETCH (UID 12 FLAGS ())\r\n"
    b"* 3 FETCH (UID 13 MODSEQ (6))\r\n* VANISHED (EARLIER) 1:3\r\n{tag} OK done\r\n",
    "sizes": b"* 1 FETCH (UID 11 RFC822.SIZE 120)\r\n* 2 FETCH (UID 12 RFC822.SIZE 0)\r\n"
    b"{tag} OK done\r\n",
    "gmail": (
        b'* 1 FETCH (X-GM-THRID 99 X-GM-MSGID 55 X-GM-LABELS (\\Inbox "Muy Importante" 2024)'
        b' UID 11 FLAGS (\\Seen) INTERNALDATE "26-Nov-2026 10:00:00 +0100" BODY[] {3}\r\nabc)\r\n'
        b"{tag} OK done\r\n"
    ),
    "nil body": b"* 1 FETCH (UID 11 FLAGS () BODY[] NIL)\r\n{tag} OK done\r\n",
}

CALLS: dict[str, Callable[[ad.ImapSession], object]] = {
    "fetch_messages": lambda s: s.fetch_messages([11, 12, 13, 14, 7, 8]),
    "fetch_flags": lambda s: s.fetch_flags("1:20", changed_since=4),
    "sizes": lambda s: s.sizes([11, 12]),
}


@pytest.mark.parametrize("gmail", [False, True])
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name", SESSION_SCRIPTS)
def test_session_results_are_the_same_either_way(
    monkeypatch: pytest.MonkeyPatch, name: str, call: str, gmail: bool
) -> None:
    fast = outcome(CALLS[call], SESSION_SCRIPTS[name], gmail)
    slow_path(monkeypatch)
    assert fast == outcome(CALLS[call], SESSION_SCRIPTS[name], gmail)


def test_the_fast_path_is_taken_and_right(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(*args: object) -> None:
        raise AssertionError("imapclient's parser was called")

    monkeypatch.setattr(ad, "parse_fetch_response", no_fallback)
    s, _ = session(SESSION_SCRIPTS["flags"])
    flags, vanished = s.fetch_flags("1:20", changed_since=4)
    assert flags == {11: (frozenset({"\\Seen"}), None), 12: (frozenset(), None)}
    assert vanished == [1, 2, 3]
    s, _ = session(SCRIPTS["interleaved"])
    got = s.fetch_messages([7, 8])
    assert [(m.uid, m.raw, m.flags) for m in got] == [
        (7, b"one", frozenset()),
        (8, b"two", frozenset()),
    ]


def test_flag_sets_are_shared_and_drop_recent() -> None:
    a = ad.flag_set((b"\\Seen", b"\\Recent", b"$Label1"))
    assert a == {"\\Seen", "$Label1"}
    assert ad.flag_set((b"\\Seen", b"\\Recent", b"$Label1")) is a
    assert ad.flag_set([b"\\RECENT", 2024, None]) == {"2024", "None"}
    assert ad.flag_set(None) == frozenset()


def test_expungeissued_returns_the_messages_that_came_back() -> None:
    # RFC 5530: NO [EXPUNGEISSUED] means some asked-for messages were expunged meanwhile;
    # the FETCH responses that did come are the answer, and none is left for later.
    s, imap = session(
        fetch_with_literal(1, 7, b"seven") + b"{tag} NO [EXPUNGEISSUED] Some gone\r\n"
    )
    got = s.fetch_messages([7, 8])
    assert [(m.uid, m.raw) for m in got] == [(7, b"seven")]
    assert "FETCH" not in imap.untagged_responses
