"""Printing mail text on a terminal: `safe` is applied to everything the CLI prints that
came from a message (subjects, names, addresses, snippets, file names, ids).

A subject is written by whoever sends the mail. Printed as it is, an escape sequence in it
is obeyed by the terminal: ESC [ 2 J clears the screen, an OSC 8 sequence plants a
hyperlink (https://gist.github.com/egmontkob/eb114294efbcd5adb1944c9f3cb5feda), others set
the window title or, on some terminals, answer back. Bidirectional overrides (U+202E...)
reorder what is shown (CVE-2021-42574). `safe` drops the whole sequence, not only its ESC,
so nothing of it shows, and turns line breaks and tabs into spaces so a one-line field
stays on one line.
"""

from __future__ import annotations

import re

__all__ = ["safe"]

# ECMA-48: CSI (ESC [ or 0x9B) params, intermediates, final byte; OSC (ESC ] or 0x9D) up to
# BEL or ST; DCS, SOS, PM, APC (ESC P X ^ _) up to ST; any other two-character ESC sequence.
_SEQUENCE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
_SPACE_RE = re.compile(r"[\t\n\r\v\f\x85\u2028\u2029]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(value: object, lines: bool = False) -> str:
    """`value` as text fit for a terminal: escape sequences and control characters removed,
    line breaks and tabs made spaces (with `lines`, line breaks are kept: for a block of
    text such as a digest). `None` gives ""."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    text = _SEQUENCE_RE.sub("", text)
    if lines:
        return "\n".join(safe(line) for line in text.split("\n"))
    text = _SPACE_RE.sub(" ", text)
    return _CONTROL_RE.sub("", text)
