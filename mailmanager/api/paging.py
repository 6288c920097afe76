"""Opaque cursors for the API's lists, and the shared `limit`/`cursor` parameters.

A cursor is the keyset of the last item of a page (for example its `(updated_at, id)`),
as URL-safe base64 of JSON: a client passes back `next` unchanged. Keyset pages are stable
while rows are added: a row inserted before the cursor is never shown twice and none after
it is skipped. `decode` answers 422 for a cursor this API did not give.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Query

MAX_LIMIT = 200
DEFAULT_LIMIT = 50

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (at most 200).")]
Cursor = Annotated[
    str | None, Query(max_length=500, description="`next` of the previous page, unchanged.")
]


def encode(*values: object) -> str:
    """The cursor of a keyset: datetimes as ISO 8601, the rest as JSON."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, *kinds: type) -> tuple[Any, ...] | None:
    """The keyset in `cursor`, each value of the kind given (`datetime`, `int`, `str`), or
    None when there is no cursor; 422 when the cursor is not one this API gave."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError
        out: list[Any] = []
        for value, kind in zip(values, kinds, strict=True):
            if kind is datetime:
                out.append(datetime.fromisoformat(value) if value is not None else None)
            elif (kind is int and type(value) is int) or (kind is str and type(value) is str):
                out.append(value)
            else:
                raise ValueError
        return tuple(out)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPException(422, "the cursor is not one this API gave") from exc
