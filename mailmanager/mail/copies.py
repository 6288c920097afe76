"""When two items fetched with one Message-ID are the same message (issue #16, finding 6).

A Message-ID is chosen by the sender, so anyone can reuse one: a forged message with the
Message-ID, From, Date and Subject of a real one must not be taken for it (it would hide the
real one, whichever came first). What a copy of one message keeps, from mailbox to mailbox
and store to store, is its body; what differs is its transport headers (Received,
Delivered-To, X-Spam-*...) and, from one store to another, its line ends (CRLF over IMAP,
LF in a Maildir) and trailing blank lines. `body_digest` hashes the body with those
differences taken out; `same_message` decides with it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable

__all__ = ["body_digest", "same_message"]

_CHUNK = 1 << 20  # hashed in 1 MiB steps: no copy of a large body is ever made whole
_TRAILING = b" \t\r\n"
_BLANK_LINE = re.compile(rb"\n\r?\n")  # stops at the end of the headers: one short scan


def _body_start(raw: bytes) -> int:
    """Where the body starts: after the first empty line (LF or CRLF); `len(raw)` when
    there is none (a message of headers only)."""
    found = _BLANK_LINE.search(raw)
    return found.end() if found else len(raw)


def _body_end(raw: bytes, start: int) -> int:
    """Where the body ends once trailing spaces and empty lines are dropped."""
    end = len(raw)
    while end > start:
        chunk = raw[max(start, end - _CHUNK) : end]
        kept = len(chunk.rstrip(_TRAILING))
        end -= len(chunk) - kept
        if kept:
            break
    return end


def body_digest(raw: bytes) -> str:
    """The SHA-256 (hex) of the body of `raw`, carriage returns dropped (CRLF and LF line
    ends read alike) and trailing white space dropped: the same for every copy of one
    message, whatever headers were added on the way or how its store ends lines."""
    start = _body_start(raw)
    end = _body_end(raw, start)
    digest = hashlib.sha256()
    for pos in range(start, end, _CHUNK):
        chunk = raw[pos : min(end, pos + _CHUNK)]
        digest.update(chunk.translate(None, b"\r") if b"\r" in chunk else chunk)
    return digest.hexdigest()


def same_message(
    sha256: tuple[str, str],
    fingerprint: tuple[tuple[Hashable, Hashable, Hashable], tuple[Hashable, Hashable, Hashable]],
    body: tuple[str | None, str | None],
) -> bool:
    """Two items with one Message-ID are one message when their raw bytes are the same, or
    when their sender and subject agree and so do their bodies. `fingerprint` is each
    item's (sender, date, subject). The date decides only when a body digest is None (a
    message stored before bodies were hashed, whose raw bytes were not kept): a copy's date
    can be its own, when the Date header is missing or absurd (in the future) and the
    arrival time stands in for it, different in each mailbox."""
    if sha256[0] == sha256[1]:
        return True
    (sender, date, subject), (sender_b, date_b, subject_b) = fingerprint
    if (sender, subject) != (sender_b, subject_b):
        return False
    if body[0] is None or body[1] is None:
        return date == date_b
    return body[0] == body[1]
