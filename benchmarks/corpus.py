"""Reads the shared corpus and replicates it to any size, for benchmarks.

Each copy rewrites Message-ID, In-Reply-To and References with a per-copy suffix, so copies
are distinct messages with the same thread shapes (otherwise de-duplication would make the
replicas free).
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
_ID = re.compile(rb"<([^<>\s]+)>")
_HEADER = re.compile(rb"^(message-id|in-reply-to|references):", re.I | re.M)


def corpus_messages(root: Path = CORPUS) -> list[bytes]:
    """Every message of the corpus: mbox files are split, other files are one message."""
    out: list[bytes] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".md"):
        data = path.read_bytes()
        if data.startswith(b"From "):
            box = mailbox.mbox(str(path), create=False)
            out.extend(box.get_bytes(key) for key in box.iterkeys())
            box.close()
        elif data.strip():
            out.append(data)
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
