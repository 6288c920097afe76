"""Reading files under a configured root without ever leaving it (issue #16).

A Maildir belongs to whoever can write into it: a symlink planted in `cur/` that points at
`/etc/passwd` (or at a 0600 file of the mailmanager user) must not become a stored, printable
message, and a directory symlink out of the root must not become a folder.

The rule (documented in `connectors.maildir`): a symlink, file or directory, is followed
only when what it resolves to lies inside the root (the root itself resolved, so a root
that is a symlink works). A file outside is not read: the connector hands the core an empty
item with a `problem`, which the core quarantines with that reason; a directory outside is
skipped with a warning.

Time of check and time of use: the check is made on what was *opened*. `read_inside` opens
with O_NOFOLLOW (a symlink as the last component fails with ELOOP and is resolved and
checked first) and O_NONBLOCK (a FIFO swapped in never blocks), then asks the kernel where
the open file really is (`/proc/self/fd`, on Linux) and refuses it when that is outside the
root, whatever was swapped between the listing and the open, intermediate directories
included. Where `/proc` is missing the resolved-path check before the open is all there is.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_HEAD_CHUNK = 65536
MAX_HEADER_BYTES = 1_048_576


class OutsideRoot(Exception):
    """The file is, or resolves to, a path outside the root: `target` says where."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class Root:
    """The configured root, resolved once."""

    def __init__(self, path: str) -> None:
        self.real = os.path.realpath(path)

    def holds(self, path: str) -> bool:
        """True when `path`, resolved (symlinks followed), lies at or under the root."""
        return self._under(os.path.realpath(path))

    def _under(self, real: str) -> bool:
        """True when the canonical path `real` lies at or under the root."""
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def read(self, path: str, max_size: int | None = None) -> tuple[bytes, int, bool]:
        """(bytes, whole size, truncated) of the regular file at `path`, read only when it
        lies inside the root. Over `max_size` bytes only its header block is read (at most
        `MAX_HEADER_BYTES`) and `truncated` is true.

        Raises `OutsideRoot`, `IsADirectoryError` (or `PermissionError`) for what is not a
        readable regular file, and the `OSError`s of `open`.
        """
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            target = os.path.realpath(path)  # a symlink: follow it only into the root
            if not self.holds(target):
                raise OutsideRoot(target) from None
            fd = os.open(target, _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as fh:
            opened = _opened_path(fd)
            if opened is not None and not self._under(opened):  # the kernel's: canonical
                raise OutsideRoot(opened)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
            if max_size is None or st.st_size <= max_size:
                return fh.read(), st.st_size, False
            return _read_head(fh), st.st_size, True


def _opened_path(fd: int) -> str | None:
    """Where the kernel says the open file `fd` is, or None where it cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _read_head(fh: BinaryIO) -> bytes:
    """The header block at the start of the open file `fh` (up to the first blank line, at
    most `MAX_HEADER_BYTES`)."""
    data = b""
    while len(data) < MAX_HEADER_BYTES:
        chunk = fh.read(_HEAD_CHUNK)
        if not chunk:
            break
        start = max(0, len(data) - 3)
        data += chunk
        for sep in (b"\r\n\r\n", b"\n\n"):
            at = data.find(sep, start)
            if at >= 0:
                return data[: at + len(sep)]
    return data[:MAX_HEADER_BYTES]
