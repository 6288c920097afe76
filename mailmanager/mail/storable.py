"""Text every database accepts: what the parser hands out is passed through here, once.

Decoded mail can hold what no database stores: lone surrogates (a UTF-7 encoded word such
as `=?utf-7?Q?+2D0-?=` decodes to '\\ud83d', which cannot be encoded as UTF-8) and NUL
characters (PostgreSQL refuses them in text). `text` replaces the first with U+FFFD and drops
the second; `value` does that to every string inside a frozen dataclass (a
`parsing.ParsedMessage`), rebuilding only what changed.

Identifiers are indexed: PostgreSQL's btree refuses an index row over ~2,700 bytes (a
Message-ID of 900 CJK characters is 2,700 bytes of UTF-8), and `models.Message.key` adds a
"#hash" suffix to the Message-ID. `identifier` keeps an id of at most `MAX_ID_BYTES` UTF-8
bytes as it is and writes a longer one as a readable prefix plus the SHA-256 of the whole:
the same long id always gives the same stored id, so a References header that quotes it
still threads with it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from typing import Any, TypeVar

__all__ = ["MAX_ID_BYTES", "identifier", "text", "value"]

T = TypeVar("T")

# models: Message.key/message_id and ThreadNode.node are String(1000), indexed; 900 bytes
# leaves room for the "#" + 16 hex key suffix, and for any character width, well under
# PostgreSQL's btree limit (2,704 bytes for a row).
MAX_ID_BYTES = 900
_ID_PREFIX_CHARS = 64
_HASH_MARK = "~sha256-"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_ATOMS = frozenset({bool, int, float, type(None), datetime.date, datetime.datetime})


def text(s: str) -> str:
    """`s` with lone surrogates replaced by U+FFFD and NUL characters removed."""
    if "\x00" in s:
        s = s.replace("\x00", "")
    if s.isascii():
        return s
    return _SURROGATE_RE.sub("\ufffd", s)


def identifier(s: str) -> str:
    """`text(s)`, and when longer than `MAX_ID_BYTES` bytes of UTF-8, a readable prefix plus
    the SHA-256 of the whole (the same long id always gives the same result)."""
    s = text(s)
    if len(s) * 4 <= MAX_ID_BYTES or len(s.encode("utf-8")) <= MAX_ID_BYTES:
        return s
    digest = hashlib.sha256(s.encode("utf-8")).hexdigest()
    return f"{s[:_ID_PREFIX_CHARS]}{_HASH_MARK}{digest}"


def value(v: T) -> T:
    """`v` with `text` applied to every string in it: strings, tuples and frozen dataclasses
    are walked; anything else is returned as it is. Unchanged parts are returned as they are
    (no copy when nothing needed cleaning)."""
    return _walk(v) if _dirty(v) else v


def _dirty(v: Any) -> bool:
    """True when some string in `v` needs `text` (a fast first look: most mail needs none)."""
    kind = type(v)
    if kind is str:
        return "\x00" in v or (not v.isascii() and _SURROGATE_RE.search(v) is not None)
    if kind in _ATOMS:
        return False
    if kind is tuple:
        return any(_dirty(item) for item in v)
    fields = getattr(v, "__dict__", None)
    if fields is not None and dataclasses.is_dataclass(v):
        return any(_dirty(item) for item in fields.values())
    return False


def _walk(v: Any) -> Any:
    if isinstance(v, str):
        return text(v)
    if isinstance(v, tuple):
        items = tuple(_walk(item) for item in v)
        return v if all(a is b for a, b in zip(items, v, strict=True)) else items
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        changes = {}
        for f in dataclasses.fields(v):
            old = getattr(v, f.name)
            new = _walk(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(v, **changes) if changes else v
    return v
