"""The shared real-mail corpus, read with the stdlib alone, and replicated to any size.

`corpus_messages` is the tests' independent oracle (it shares no code with the `maildir`
connector or the parser) and the benchmarks' input. `replicate` makes a corpus of any size
for the benchmarks: each copy rewrites Message-ID, In-Reply-To and References with a
per-copy suffix, so copies are distinct messages with the same thread shapes (otherwise
de-duplication would make the replicas free).
"""

from __future__ import annotations

import mailbox
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
_ID = re.compile(rb"<([^<>\s]+)>")
_HEADER = re.compile(rb"^(message-id|in-reply-to|references):", re.I | re.M)


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


def corpus_messages(root: Path = CORPUS) -> list[bytes]:
    """Every message below `root`: mbox files split, every other file one message."""
    out: list[bytes] = []
    for path in _files(root):
        head = path.read_bytes()[:8]
        if head.startswith((b"From ", b"\xef\xbb\xbfFrom ")) or path.suffix == ".mbox":
            out.extend(_mbox_messages(path))
        else:
            out.append(path.read_bytes())
    return out


def _rewrite(raw: bytes, suffix: bytes) -> bytes:
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    cut = min(x for x in (end, end2, len(raw)) if x >= 0)
    head, body = raw[:cut], raw[cut:]
    lines = head.split(b"\n")
    out = []
    in_id_header = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            pass
        else:
            in_id_header = bool(_HEADER.match(line))
        if in_id_header:
            line = _ID.sub(lambda m: b"<" + m.group(1) + suffix + b">", line)
        out.append(line)
    return b"X-Bench-Copy: " + suffix + b"\n" + b"\n".join(out) + body


def replicate(messages: list[bytes], n: int) -> Iterator[bytes]:
    """`n` messages: the corpus again and again, each copy with its own ids."""
    copy = 0
    produced = 0
    while produced < n:
        suffix = f".r{copy}".encode()
        for raw in messages:
            if produced >= n:
                return
            yield raw if copy == 0 else _rewrite(raw, suffix)
            produced += 1
        copy += 1
