"""Signing in to the web workspace: one-time emailed links, rate limits, server-side sessions.

- `request_link` records every request (for the limits of `[web] login_limit_*`, per address
  and per IP, whether or not the address is a user's) and, for a configured user, makes a
  one-time token valid `LINK_LIFETIME` (15 minutes); only its SHA-256 is stored.
  `send_link` queues the email through the outbox, in the user's language.
- `consume_link` uses a token once (one UPDATE guarded by `used_at IS NULL`), then
  `start_session` makes a session: the browser's cookie holds a random token, the row its
  SHA-256, a CSRF token, and its idle and absolute expiry (`[web] session_*`).
- `session_for` answers "who is this cookie?" at each request: nobody once the session is
  revoked (`end_session`, sign-out), idle or too old, or its user left the configuration.

Every function takes a Session and writes in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import html
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import store
from mailmanager.db.models import OutboxEmail, WebSession, WebSignInRequest
from mailmanager.errors import MailmanagerError
from mailmanager.notify import outbox

log = logging.getLogger(__name__)

LINK_LIFETIME = timedelta(minutes=15)
KEEP = timedelta(days=2)  # sign-in requests and ended sessions are deleted after this
MAIL_KEY = "signin:"  # idempotency key prefix of sign-in emails in the outbox
SCRUBBED = "(sign-in link removed once sent / lien de connexion effacé après envoi)"
_TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often

_MAIL = {
    "fr": (
        "[mailmanager] Votre lien de connexion",
        "Bonjour {name},\n\nPour vous connecter à mailmanager, ouvrez ce lien dans les "
        "15 minutes :\n\n{url}\n\nIl ne sert qu'une fois. Si vous n'avez rien demandé, "
        "ignorez ce message.\n",
    ),
    "en": (
        "[mailmanager] Your sign-in link",
        "Hello {name},\n\nTo sign in to mailmanager, open this link within 15 minutes:\n\n"
        "{url}\n\nIt works once. If you did not ask for it, ignore this email.\n",
    ),
}


class RateLimited(MailmanagerError):
    """Raised by `request_link` when an address or an IP asked too often; `scope` is
    "address" or "ip", `minutes` the length of the window."""

    def __init__(self, scope: str, minutes: int) -> None:
        super().__init__(f"too many sign-in requests for this {scope}")
        self.scope = scope
        self.minutes = minutes


@dataclass(frozen=True)
class SessionInfo:
    """A live session: whose, the CSRF token its forms carry, and whether its last-seen
    time is worth writing again (`touch`)."""

    id: int
    email: str
    csrf: str
    stale: bool = False


def digest(token: str) -> str:
    """The SHA-256 (hex) a token is stored under."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _count(session: Session, where: sa.ColumnElement[bool], since: datetime) -> int:
    r = WebSignInRequest
    stmt = sa.select(sa.func.count()).select_from(r).where(where, r.created_at > since)
    return int(session.scalar(stmt) or 0)


def request_link(
    session: Session, cfg: config_mod.Config, email: str, ip: str, now: datetime
) -> tuple[str, str] | None:
    """Record a request for a sign-in link to `email` from `ip`; (user email, one-time token)
    when `email` is a configured user's address (or alias), None otherwise.

    Raises RateLimited when the address or the IP made `[web] login_limit_per_*` requests
    within `login_limit_minutes` (the request is then not recorded).
    """
    store.write_first(session)  # read, then write: take SQLite's write lock first
    web = cfg.web
    user = cfg.user(email)
    address = user.email if user else email.strip().lower()[:320]
    since = now - timedelta(minutes=web.login_limit_minutes)
    r = WebSignInRequest
    if _count(session, r.email == address, since) >= web.login_limit_per_address:
        raise RateLimited("address", web.login_limit_minutes)
    if _count(session, r.ip == ip[:64], since) >= web.login_limit_per_ip:
        raise RateLimited("ip", web.login_limit_minutes)
    session.execute(sa.delete(store.table(r)).where(store.table(r).c.created_at < now - KEEP))
    row = WebSignInRequest(email=address, ip=ip[:64], created_at=now)
    token = None
    if user is not None:
        token = secrets.token_urlsafe(32)
        row.token_hash, row.expires_at = digest(token), now + LINK_LIFETIME
    session.add(row)
    session.flush()
    log.info(
        "sign-in link requested",
        extra={"action": "web_signin_request", "known": user is not None, "request": row.id},
    )
    return (address, token) if token else None


def send_link(
    session: Session, cfg: config_mod.Config, email: str, url: str, now: datetime
) -> None:
    """Queue the sign-in email with `url` to user `email`, in their language."""
    user = cfg.user(email)
    if user is None:
        return
    subject, body = _MAIL["fr" if user.locale.startswith("fr") else "en"]
    text = body.format(name=user.name or user.email, url=url)
    parts = [
        f'<p><a href="{html.escape(url)}">{html.escape(url)}</a></p>'
        if p.strip() == url
        else f"<p>{html.escape(p)}</p>"
        for p in text.split("\n\n")
    ]
    body_html = f"<!DOCTYPE html><html><body>{''.join(parts)}</body></html>"
    key = f"{MAIL_KEY}{digest(url)[:32]}"
    outbox.enqueue(
        session,
        key=key,
        message_id_header=outbox.message_id(key, outbox.default_sender(cfg)),
        recipient=user.email,
        recipient_name=user.name,
        subject=subject,
        body_text=text,
        body_html=body_html,
        now=now,
    )


def scrub_sent_links(session: Session) -> int:
    """Blank the bodies of sign-in emails the outbox has sent, so the database does not
    keep usable links longer than needed; how many. (Pending ones still need theirs.)"""
    t = store.table(OutboxEmail)
    done = session.execute(
        sa.update(t)
        .where(
            t.c.idempotency_key.like(f"{MAIL_KEY}%"),
            t.c.status == "sent",
            t.c.body_text != SCRUBBED,
        )
        .values(body_text=SCRUBBED, body_html="")
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


def _live_link(token: str, now: datetime) -> sa.ColumnElement[bool]:
    r = WebSignInRequest
    return sa.and_(r.token_hash == digest(token), r.used_at.is_(None), r.expires_at > now)


def peek_link(session: Session, token: str, now: datetime) -> str | None:
    """The address a sign-in token was sent to, while it is unused and unexpired."""
    email = session.scalar(sa.select(WebSignInRequest.email).where(_live_link(token, now)))
    return email


def consume_link(session: Session, cfg: config_mod.Config, token: str, now: datetime) -> str | None:
    """Use a sign-in token: its user's email, or None when it is unknown, used, expired, or
    its user is no longer configured. A token works once, whoever races for it."""
    store.write_first(session)
    scrub_sent_links(session)
    email = peek_link(session, token, now)
    if email is None or cfg.user(email) is None:
        return None
    t = store.table(WebSignInRequest)
    done = session.execute(
        sa.update(t)
        .where(t.c.token_hash == digest(token), t.c.used_at.is_(None), t.c.expires_at > now)
        .values(used_at=now)
    ).rowcount  # type: ignore[attr-defined]
    return email if done == 1 else None


def start_session(
    session: Session, cfg: config_mod.Config, email: str, now: datetime
) -> tuple[str, SessionInfo]:
    """A new session for user `email`: (the cookie's token, the session)."""
    t = store.table(WebSession)
    session.execute(sa.delete(t).where(t.c.expires_at < now - KEEP))
    token = secrets.token_urlsafe(32)
    row = WebSession(
        token_hash=digest(token),
        user_email=email,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=cfg.web.session_max_hours),
    )
    session.add(row)
    session.flush()
    log.info("signed in", extra={"action": "web_signin", "session": row.id})
    return token, SessionInfo(row.id, email, row.csrf_token)


def session_for(
    session: Session, cfg: config_mod.Config, token: str, now: datetime
) -> SessionInfo | None:
    """The live session of a cookie's token, else None. Reads only: when `stale`, the
    caller restarts its idle time with `touch` (in a transaction of its own, so that a
    page's reads never have to become a write)."""
    if not token:
        return None
    row = session.scalars(
        sa.select(WebSession).where(WebSession.token_hash == digest(token))
    ).first()
    if row is None or row.revoked_at is not None or now >= row.expires_at:
        return None
    if now - row.last_seen_at >= timedelta(minutes=cfg.web.session_idle_minutes):
        return None
    if cfg.user(row.user_email) is None:
        return None
    stale = now - row.last_seen_at >= _TOUCH_EVERY
    return SessionInfo(row.id, row.user_email, row.csrf_token, stale)


def touch(session: Session, session_id: int, now: datetime) -> None:
    """Restart a session's idle time at `now`."""
    t = store.table(WebSession)
    session.execute(sa.update(t).where(t.c.id == session_id).values(last_seen_at=now))


def end_session(session: Session, token: str, now: datetime) -> None:
    """Revoke the session of a cookie's token (sign-out); nothing when there is none."""
    t = store.table(WebSession)
    session.execute(
        sa.update(t)
        .where(t.c.token_hash == digest(token), t.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def end_sessions_of(session: Session, email: str, now: datetime) -> int:
    """Revoke every session of user `email` (e.g. their role changed); how many."""
    t = store.table(WebSession)
    return int(
        session.execute(
            sa.update(t)
            .where(t.c.user_email == email, t.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount  # type: ignore[attr-defined]
    )
