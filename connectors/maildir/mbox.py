"""mbox files for `connectors.maildir`: reading their messages from a byte offset, counting them.

`connectors.maildir` decides which files are mbox files (`starts_mbox`, or the extension) and
makes each its own folder; this module reads one, without locks and never writing it.
Messages are split as `mailbox.mbox` splits them (see `_read_mbox`); a message's provider id
is the byte offset of its `From ` line.

The cursor (see `connectors._cursor`, kind "m") is (inode, bytes scanned, hash of the last
4 KiB scanned): when the file only grew, reading resumes at that offset. A replaced or
truncated file, a changed tail, or bytes after the offset that do not open a new message
(the file was rewritten) expire it.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import BinaryIO

from connectors import _cursor
from mailmanager import spi

BOM = b"\xef\xbb\xbf"
_ESCAPED_FROM = re.compile(rb">+From ")
_TAIL = 4096


def starts_mbox(head: bytes) -> bool:
    return head.startswith(b"From ") or head.startswith(BOM + b"From ")


def _tail_hash(fh: BinaryIO, offset: int) -> str:
    start = max(0, offset - _TAIL)
    fh.seek(start)
    return hashlib.blake2b(fh.read(offset - start), digest_size=8).hexdigest()


def fetch_mbox(path: str, cursor: str | None, limit: int) -> spi.ChangeBatch:
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        offset = 0
        if cursor is not None:
            state = _cursor.decode(cursor, "m")
            offset = _cursor.int_field(state, "o")
            if _cursor.int_field(state, "i") != st.st_ino or not 0 <= offset <= st.st_size:
                raise spi.CursorExpiredError(f"{path} was replaced or truncated")
            tail = _tail_hash(fh, offset)
            if tail != _cursor.str_field(state, "h") or not _resumes_cleanly(fh, offset):
                raise spi.CursorExpiredError(f"{path} was rewritten")
        found, end, eof = _read_mbox(fh, offset, limit)
        new_cursor = _cursor.encode(t="m", i=st.st_ino, o=end, h=_tail_hash(fh, end))
    messages = [spi.RawMessage(str(at), raw) for at, raw in found]
    return spi.ChangeBatch(messages, new_cursor, more=not eof, reset=cursor is None)


def _resumes_cleanly(fh: BinaryIO, offset: int) -> bool:
    """Whether the bytes after `offset` are blank lines then a `From ` line (or nothing)."""
    fh.seek(offset)
    for line in fh:
        if line not in (b"\n", b"\r\n"):
            return line.startswith(b"From ")
    return True


def _read_mbox(fh: BinaryIO, offset: int, limit: int) -> tuple[list[tuple[int, bytes]], int, bool]:
    """Read up to `limit` messages from `offset`: ((From-line offset, raw) list, end, at EOF).

    Like `mailbox.mbox`, every line starting with `From ` opens a message, and one blank line
    before it is the separator. Lines quoted as `>From ` (mboxrd, and mboxo's single level)
    lose one `>`: https://www.loc.gov/preservation/digital/formats/fdd/fdd000385.shtml.
    """
    found: list[tuple[int, bytes]] = []
    lines: list[bytes] = []
    start = -1
    pos = offset
    fh.seek(offset)
    for line in fh:
        if line.startswith(b"From ") or (pos == 0 and line.startswith(BOM + b"From ")):
            if start >= 0:
                found.append((start, _finish(lines)))
                if len(found) == limit:
                    return found, pos, False
            start, lines = pos, []
        elif start >= 0:
            lines.append(line[1:] if line[:1] == b">" and _ESCAPED_FROM.match(line) else line)
        pos += len(line)
    if start >= 0:
        found.append((start, _finish(lines)))
    return found, pos, True


def _finish(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines.pop()
    return b"".join(lines)


def count_mbox(path: str) -> int:
    with open(path, "rb") as fh:
        return sum(
            1
            for n, line in enumerate(fh)
            if line.startswith(b"From ") or (n == 0 and starts_mbox(line))
        )
