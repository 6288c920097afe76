"""Reading the shared corpus with the stdlib alone: an independent oracle for the tests."""

from __future__ import annotations

import mailbox
import tempfile
from pathlib import Path


def _files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".md":
            continue
        if "tmp" in path.relative_to(root).parts or path.stat().st_size == 0:
            continue
        out.append(path)
    return out


def _mbox_messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # mailbox.mbox does not skip a byte-order mark
        with tempfile.NamedTemporaryFile(suffix=".mbox", delete=False) as fh:
            fh.write(data[3:])
        path = Path(fh.name)
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(k) for k in box.iterkeys()]
    finally:
        box.close()


def corpus_messages(root: Path) -> list[bytes]:
    """Every message below `root`: mbox files split, every other file one message."""
    out: list[bytes] = []
    for path in _files(root):
        head = path.read_bytes()[:8]
        if head.startswith((b"From ", b"\xef\xbb\xbfFrom ")) or path.suffix == ".mbox":
            out.extend(_mbox_messages(path))
        else:
            out.append(path.read_bytes())
    return out
