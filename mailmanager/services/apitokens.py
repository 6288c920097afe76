"""Bearer tokens of the REST API (`/api/v1`): created, listed and revoked by `mailmanager
tokens` and by the workspace's "API tokens" page (`web.apitokens`), checked on every API
request by `authenticate`.

A token is `mm_` followed by 32 random bytes (URL-safe base64); it is shown once, when it
is created, and only its SHA-256 is stored, like a web session's cookie
(`services.signin`): reading the database does not give anyone a working token. A token
acts as its user (a `Viewer`, with the same visibility rules as the web pages) within its
scopes: `read`, `write`, and `admin`, which only a user whose role is admin may hold (and
loses when they stop being admin). It is refused once revoked, after its optional expiry,
or when its user leaves the configuration. Its last use is recorded at most once a minute,
so that a busy integration does not write a row on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db.models import ApiToken
from mailmanager.errors import MailmanagerError
from mailmanager.services.access import Viewer, viewer_for

PREFIX = "mm_"
SCOPES = ("read", "write", "admin")
TOUCH_EVERY = timedelta(minutes=1)  # how stale `last_used_at` may get before it is written


class TokenError(MailmanagerError):
    """Raised for a token that cannot be created (unknown user, bad scope, admin scope
    for a user who is not admin) or revoked (no such token). `reason` names the case
    (`no_user`, `no_name`, `bad_scope`, `admin_only`, `bad_days`, `unknown`), so that a page
    can say it in its user's language; the message is the English one."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TokenInfo:
    """A token as `tokens list` shows it: never the token itself."""

    id: int
    user: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """ "revoked", "expired" or "active" at `now`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Caller:
    """Who an API request's token is: its user (as the web pages see them) and the scopes
    it holds now."""

    token: TokenInfo
    viewer: Viewer
    scopes: frozenset[str]
    touch_due: bool = False  # its last use is a minute old or more: `touch` it


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=row.user_email,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def create(
    session: Session,
    cfg: config_mod.Config,
    user: str,
    name: str,
    scopes: Collection[str],
    now: datetime,
    expires_days: int | None = None,
) -> tuple[TokenInfo, str]:
    """A new token for `user` (a configured user or one of their aliases) named `name`,
    with `scopes` (default `read`), expiring `expires_days` after `now` when given: its
    description and the token itself, which is never shown again."""
    viewer = viewer_for(cfg, user)
    if viewer is None:
        raise TokenError(f"no user {user!r} in the configuration ([[users]])", "no_user")
    if not name.strip():
        raise TokenError("a token needs a name (what it is for, e.g. the CRM's name)", "no_name")
    if not all(s in SCOPES for s in scopes):
        raise TokenError(f"unknown scope; scopes are {', '.join(SCOPES)}", "bad_scope")
    wanted = sorted(set(scopes) or {"read"}, key=SCOPES.index)
    if "admin" in wanted and not viewer.is_admin:
        raise TokenError(
            f"the admin scope is for admins only; {viewer.email} is not one", "admin_only"
        )
    if expires_days is not None and expires_days < 1:
        raise TokenError("--expires-days must be 1 or more", "bad_days")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=token_hash(token),
        user_email=viewer.email,
        name=name.strip(),
        scopes=" ".join(wanted),
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days is not None else None,
    )
    session.add(row)
    session.flush()
    return _info(row), token


def list_tokens(session: Session, user: str | None = None) -> list[TokenInfo]:
    """Every token (or `user`'s), oldest first, revoked and expired ones included."""
    stmt = sa.select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        stmt = stmt.where(ApiToken.user_email == user)
    return [_info(row) for row in session.scalars(stmt)]


def revoke(session: Session, token_id: int, now: datetime, owner: str | None = None) -> TokenInfo:
    """Revoke token `token_id` at `now` (again: no change). Raises TokenError if none, or
    if `owner` is given and the token is not theirs (the same answer: a user revoking their
    own tokens on the web page learns nothing of other people's)."""
    row = session.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
    if row is None or (owner is not None and row.user_email != owner):
        raise TokenError(f"no API token {token_id}", "unknown")
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return _info(row)


def authenticate(
    session: Session, cfg: config_mod.Config, token: str, now: datetime
) -> Caller | None:
    """Who `token` is at `now`, None when it is unknown, revoked, expired or its user gone.
    Only reads: `Caller.touch_due` says whether to record its use (`touch`), which the API
    does in a transaction of its own (a read transaction that then writes fails at once on
    SQLite when another connection wrote meanwhile; see `store.write_first`)."""
    if not token.startswith(PREFIX):
        return None
    digest = token_hash(token)
    row = session.scalars(sa.select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    info = _info(row)
    viewer = viewer_for(cfg, row.user_email)
    if info.state(now) != "active" or viewer is None:
        return None
    due = row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY
    scopes = frozenset(info.scopes) - (set() if viewer.is_admin else {"admin"})
    return Caller(token=info, viewer=viewer, scopes=scopes, touch_due=due)


def touch(session: Session, token_id: int, now: datetime) -> None:
    """Record a use of token `token_id` at `now`, unless one was recorded within the last
    minute (by this request's process or another: the condition is in the UPDATE)."""
    session.execute(
        sa.update(ApiToken)
        .where(ApiToken.id == token_id)
        .where(sa.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_EVERY))
        .values(last_used_at=now)
    )
