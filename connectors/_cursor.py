"""The cursors of the local-mail readers (`connectors.maildir`, `connectors._mbox`).

A cursor is a compact JSON object, `{"v": 1, "t": kind, ...}`: kind "f" for a folder of
message files, "m" for an mbox file; the other fields are the reader's own (see the
`connectors.maildir` docstring). Reading one that is not ours, or a damaged field, raises
`CursorExpiredError`, so the core re-scans the folder instead of trusting it.
"""

from __future__ import annotations

import json

from mailmanager import spi


def encode(**fields: object) -> str:
    return json.dumps({"v": 1, **fields}, separators=(",", ":"))


def decode(cursor: str, kind: str) -> dict[str, object]:
    """Raises `CursorExpiredError` when the cursor is not one of ours for this kind of folder."""
    try:
        data = json.loads(cursor)
    except ValueError as exc:
        raise spi.CursorExpiredError(f"unreadable maildir cursor: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != 1 or data.get("t") != kind:
        raise spi.CursorExpiredError("maildir cursor is for another kind of folder")
    return data


def int_field(state: dict[str, object], key: str) -> int:
    """Raises `CursorExpiredError` when the field is missing or not an integer."""
    value = state.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise spi.CursorExpiredError(f"maildir cursor field {key!r} is damaged")
    return value


def str_field(state: dict[str, object], key: str) -> str:
    """Raises `CursorExpiredError` when the field is missing or not a string."""
    value = state.get(key)
    if not isinstance(value, str):
        raise spi.CursorExpiredError(f"maildir cursor field {key!r} is damaged")
    return value
