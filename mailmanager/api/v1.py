"""The routes of `/api/v1` and what they need: the caller (`caller`: the request's bearer
token, checked by `services.apitokens`, and within its rate limit: `api.ratelimit`) and the
scope a route requires (`scope`).

Each route opens one transaction, calls `services/` with the caller's `Viewer`, and
answers with a pydantic model (which the OpenAPI schema describes). Lists are paged by an
opaque `cursor` (keyset: stable when rows are added before it), `limit` at most 200.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.api.ratelimit import RateLimiter
from mailmanager.db import store
from mailmanager.services import apitokens, followups

MAX_LIMIT = 200


@dataclass
class ApiState:
    """The API's configuration and database, at `request.app.state.api`."""

    cfg: config_mod.Config
    factory: sessionmaker[Session]
    clock: Callable[[], datetime]
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.cfg.api.requests_per_minute)


def api(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


@contextmanager
def transaction(request: Request) -> Iterator[Session]:
    """One database transaction: committed when the block ends, rolled back on error. For
    a request that changes things (not GET or HEAD) it takes SQLite's write lock first
    (`store.write_first`): its reads and then writes never fail with "database is locked"
    because another request wrote meanwhile; it waits its turn instead."""
    with store.session_scope(api(request).factory) as s:
        if request.method not in ("GET", "HEAD"):
            store.write_first(s)
        yield s


class Unauthorized(HTTPException):
    """401 with the `WWW-Authenticate: Bearer` challenge (RFC 6750)."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": 'Bearer realm="mailmanager"'})


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `mailmanager tokens create`: `Authorization: Bearer mm_...`.",
)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> apitokens.Caller:
    """Who the request's bearer token is (401 when there is none, or it is unknown,
    revoked, expired or its user gone: the same answer, so as not to tell which; 429 with
    `Retry-After` when the token has made `[api] requests_per_minute` requests already)."""
    if credentials is None:
        raise Unauthorized("send a token: Authorization: Bearer mm_...")
    state = api(request)
    now = state.clock()
    with store.session_scope(state.factory) as s:
        found = apitokens.authenticate(s, state.cfg, credentials.credentials, now)
    if found is None:
        raise Unauthorized("the token is unknown, revoked or expired")
    if found.touch_due:  # a write of its own, never an upgrade of the read above
        with store.session_scope(state.factory) as s:
            apitokens.touch(s, found.token.id, now)
    wait = state.limiter.hit(found.token.id)
    if wait:
        limit = state.cfg.api.requests_per_minute
        raise HTTPException(
            429,
            f"this token made {limit} requests within a minute ([api] requests_per_minute); "
            f"try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    return found


def scope(name: str) -> Callable[[apitokens.Caller], Awaitable[apitokens.Caller]]:
    """A dependency: the caller, when their token holds scope `name` (else 403)."""

    # async: no work to move off the event loop, so no trip through the thread pool
    async def check(who: Annotated[apitokens.Caller, Depends(caller)]) -> apitokens.Caller:
        if name not in who.scopes:
            raise HTTPException(403, f"this route needs a token with the {name!r} scope")
        return who

    return check


Reader = Annotated[apitokens.Caller, Depends(scope("read"))]
Writer = Annotated[apitokens.Caller, Depends(scope("write"))]
Admin = Annotated[apitokens.Caller, Depends(scope("admin"))]

router = APIRouter()


class TokenOut(BaseModel):
    id: int
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


class Me(BaseModel):
    """The user a token acts as, and the token."""

    email: str
    name: str
    role: str
    locale: str
    timezone: str
    sees_content_of: list[str]
    token: TokenOut


@router.get("/me", summary="Who the token is")
def me(who: Reader) -> Me:
    """The token's user (their role, and whose mail content they may read) and the token
    (its scopes and expiry)."""
    v, t = who.viewer, who.token
    return Me(
        email=v.email,
        name=v.name,
        role=v.role,
        locale=v.locale,
        timezone=v.timezone,
        sees_content_of=sorted(v.sees_content_of),
        token=TokenOut(
            id=t.id,
            name=t.name,
            scopes=sorted(who.scopes, key=apitokens.SCOPES.index),
            created_at=t.created_at,
            expires_at=t.expires_at,
        ),
    )


class ReminderPage(BaseModel):
    """A page of reminders; `next` is the cursor of the next page (null on the last). Each
    item is `services.followups.Followup`, as "My follow-ups" shows it."""

    items: list[followups.Followup]
    next: str | None


@router.get("/reminders", summary="Open follow-ups")
def reminders(
    request: Request,
    who: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = followups.PAGE,
    cursor: Annotated[str | None, Query(description="`next` of the previous page.")] = None,
    user: Annotated[
        str | None, Query(description="Only this user's (yourself or a user you manage).")
    ] = None,
) -> ReminderPage:
    """The caller's open follow-ups, and those of the users they manage, soonest due first
    (the ones due now come first)."""
    after = followups.After.parse(cursor) if cursor is not None else None
    if cursor is not None and after is None:
        raise HTTPException(422, "the cursor is not one this API gave")
    if user is not None and user not in who.viewer.sees_content_of:
        raise HTTPException(403, "you may list only your own follow-ups and your reports'")
    state = api(request)
    with transaction(request) as s:
        found = followups.list_followups(
            s, state.cfg, who.viewer, state.clock(), user, limit + 1, after
        )
    page = found[:limit]
    last = page[-1] if len(found) > limit else None
    return ReminderPage(
        items=page,
        next=followups.After(last.due_at, last.id).token if last else None,
    )
