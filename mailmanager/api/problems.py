"""What the data-out routes share about refusals: a path id out of the range of database ids
is refused before any query (422), and a refusal of `services.access` is answered as the
pages answer it (`refused`). Every error is an RFC 9457 problem detail (`api.app.problem`),
and the schema documents them on every operation (`api.app.document_problems`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import HTTPException, Path
from pydantic import AfterValidator, BeforeValidator

from mailmanager.api import paging
from mailmanager.services.access import AccessError

MAX_ID = 2**31 - 1  # ids are 32-bit integers (`services.access.MAX_ID`)

Id = Annotated[int, Path(ge=1, le=MAX_ID, description="A database id.")]


def refused(exc: AccessError) -> HTTPException:
    """The answer to a refusal of `services.access`, as the pages give it: 404 when the
    caller may not know the thing exists, else 403."""
    return HTTPException(403 if exc.exists else 404, str(exc))


def cursor_id(cursor: str | None) -> int | None:
    """The row id a cursor of `paging.encode(id)` holds (None without a cursor); 422 for
    one this API did not give, or whose id is not a row's (it would not bind in SQL)."""
    (found,) = paging.decode(cursor, int) or (None,)
    if found is None:
        return None
    if not 0 <= found <= MAX_ID:
        raise HTTPException(422, "the cursor is not one this API gave")
    return int(found)


def _iso(value: object) -> object:
    """An ISO 8601 text as a datetime; pydantic alone would take a number for a Unix time,
    which the schema (`format: date-time`) does not allow."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("write an ISO 8601 date-time, e.g. 2026-11-02T09:00:00Z") from None
    if value is not None and not isinstance(value, datetime):
        raise ValueError("write an ISO 8601 date-time, e.g. 2026-11-02T09:00:00Z")
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2026-11-02T09:00:00Z)")
    return value


# An instant in a query or a body: ISO 8601 with its time zone, else 422.
Instant = Annotated[datetime | None, BeforeValidator(_iso), AfterValidator(_aware)]


# A route reading a JSON body answers 400 when the body is not JSON at all (FastAPI's
# "error parsing the body"); `api.app.document_problems` documents the other statuses.
BAD_BODY: dict[int | str, dict[str, object]] = {
    400: {
        "description": "The body is not JSON.",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
}
