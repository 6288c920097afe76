"""Signing in with OpenID Connect: the authorization code flow with PKCE, state and nonce.

`begin` makes a pending login and the provider's authorization URL; `remember` records it
and `claim` takes it back, once, when the provider sends the browser back. `finish`
exchanges the code (with the client secret and the PKCE verifier)
through authlib's httpx client, then validates the ID token with joserfc: its signature
against the provider's JWKS, `iss`, `aud`, `exp` and `nonce`; the `email` claim must come
with `email_verified` true (or, when that claim is absent, Microsoft's `xms_edov` true). It
answers the email; who that is (a configured user or nobody) is the caller's question.
Discovery documents and key sets are cached for an hour, the key set fetched again once
when a token names a key it lacks (key rotation).

Where a pending login lives. The browser that starts it holds a random *browser key* in a
cookie; the `state` sent to the provider is random too. The database (`oidc_states`) keeps
only their SHA-256, the provider, where to go next, the expiry and when the state was used:
so a state works once whichever web process the callback reaches, after a restart too
(`claim` is one UPDATE guarded by `used_at IS NULL`, the compare-and-set that decides a
race), and only from the browser that started it. The nonce and the PKCE verifier are not
stored anywhere: each is an HMAC of (server key, provider, browser key, state), computed
again at the callback. Neither the cookie alone nor a copy of the database gives them, and
nothing secret sits in the database for a backup to leak. (A signed cookie holding the
verifier, as before, shows the verifier to whoever reads the cookie and cannot tell a used
state from a fresh one in another process or after a restart; authlib's framework
integrations keep the same data, verifier included, in a signed session cookie: the same
two faults, and a session middleware this app does not otherwise need.)

TLS certificates are verified; `http` is accepted only for loopback providers (see
`mailmanager.config.oidc`). Nothing here logs a token, a code or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from mailmanager.config.oidc import LOOPBACK, OidcProvider
from mailmanager.config.schema import ConfigFileError
from mailmanager.db import store
from mailmanager.db.models import OidcState
from mailmanager.errors import MailmanagerError
from mailmanager.services import signin

with warnings.catch_warnings():
    # authlib warns at import that it would rather use the `httpx2` package: httpx is the
    # HTTP client this project uses (and authlib's fallback), so the warning says nothing.
    warnings.simplefilter("ignore")
    from authlib.integrations.base_client.errors import OAuthError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

PENDING_LIFETIME = timedelta(minutes=10)
CACHE_SECONDS = 3600.0
TIMEOUT = 10.0
LEEWAY = 120  # seconds of clock difference tolerated on exp/iat
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")


class Refused(MailmanagerError):
    """The provider's answer does not sign anyone in. `reason`: "failed" (state, code,
    token or signature wrong, provider unreachable), "unverified" (no verified email),
    "unavailable" (this site's client secret cannot be read)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Pending:
    """A login under way: what the callback must match. `browser` is the browser key (the
    starting browser's cookie); `nonce` and `verifier` are derived (see the module)."""

    provider: str
    state: str
    browser: str
    nonce: str
    verifier: str
    next: str
    expires: datetime


@dataclass(frozen=True)
class _Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_method: str


_cache: dict[str, tuple[float, _Metadata, KeySet]] = {}
_lock = threading.Lock()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_browser_key() -> str:
    """A random browser key, for the cookie of a browser that starts a login."""
    return secrets.token_urlsafe(32)


def _derive(key: bytes, purpose: str, provider: str, browser: str, state: str) -> str:
    """43 characters of base64url (a valid PKCE verifier, RFC 7636 §4.1): an HMAC-SHA256
    of the pending login's random parts under the server's key."""
    message = "\0".join(("mailmanager oidc", purpose, provider, browser, state)).encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _pending(
    key: bytes, provider: str, browser: str, state: str, next: str, expires: datetime
) -> Pending:
    return Pending(
        provider=provider,
        state=state,
        browser=browser,
        nonce=_derive(key, "nonce", provider, browser, state),
        verifier=_derive(key, "pkce", provider, browser, state),
        next=next,
        expires=expires,
    )


def remember(session: Session, pending: Pending, now: datetime) -> None:
    """Record a pending login (its hashes, see the module), and forget the expired ones."""
    t = store.table(OidcState)
    session.execute(sa.delete(t).where(t.c.expires_at <= now))
    session.add(
        OidcState(
            state_hash=signin.digest(pending.state),
            browser_hash=signin.digest(pending.browser),
            provider=pending.provider,
            next=pending.next,
            created_at=now,
            expires_at=pending.expires,
        )
    )
    session.flush()


def claim(
    session: Session, key: bytes, provider: str, state: str, browser: str, now: datetime
) -> Pending | None:
    """Use the pending login of `state` for `provider`, started by the browser whose key is
    `browser`: it, or None when there is none, it expired, it was used already (by anyone,
    in any process), or another browser or provider started it. A refused claim does not use
    the state (a stranger holding the callback URL cannot spoil the real login)."""
    if not state or not browser:
        return None
    t = store.table(OidcState)
    mine = sa.and_(
        t.c.state_hash == signin.digest(state),
        t.c.browser_hash == signin.digest(browser),
        t.c.provider == provider,
    )
    won = session.execute(
        sa.update(t).where(mine, t.c.used_at.is_(None), t.c.expires_at > now).values(used_at=now)
    ).rowcount  # type: ignore[attr-defined]
    if won != 1:
        return None
    row = session.execute(sa.select(t.c.next, t.c.expires_at).where(mine)).one()
    return _pending(key, provider, browser, state, row.next, row.expires_at)


def _allowed(url: object, what: str) -> str:
    parts = urlsplit(str(url))
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return str(url)
    raise Refused("failed", f"the provider's {what} is not an https URL")


def _get(url: str) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=TIMEOUT, follow_redirects=False)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Refused("failed", f"cannot read {url}: {exc.__class__.__name__}") from exc
    if not isinstance(data, dict):
        raise Refused("failed", f"{url} is not a JSON object")
    return data


def _discover(provider: OidcProvider) -> tuple[_Metadata, KeySet]:
    with _lock:
        cached = _cache.get(provider.issuer)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1], cached[2]
    doc = _get(provider.issuer + "/.well-known/openid-configuration")
    if doc.get("issuer") != provider.issuer:
        raise Refused("failed", "the discovery document names another issuer")
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    meta = _Metadata(
        issuer=provider.issuer,
        authorization_endpoint=_allowed(doc.get("authorization_endpoint"), "authorization URL"),
        token_endpoint=_allowed(doc.get("token_endpoint"), "token URL"),
        jwks_uri=_allowed(doc.get("jwks_uri"), "key set URL"),
        auth_method="client_secret_basic"
        if "client_secret_basic" in methods
        else "client_secret_post",
    )
    keys = _key_set(meta)
    with _lock:
        _cache[provider.issuer] = (time.monotonic(), meta, keys)
    return meta, keys


def _key_set(meta: _Metadata) -> KeySet:
    try:
        return KeySet.import_key_set(_get(meta.jwks_uri))  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise Refused("failed", "the provider's key set is not valid") from exc


def begin(
    provider: OidcProvider, key: bytes, browser: str, redirect_uri: str, next: str, now: datetime
) -> tuple[str, Pending]:
    """(the provider's authorization URL to send the browser to, the pending login for
    `remember`). `key` is the server's secret, `browser` the starting browser's key."""
    meta, _ = _discover(provider)
    state = secrets.token_urlsafe(24)
    pending = _pending(key, provider.slug, browser, state, next, now + PENDING_LIFETIME)
    with _client(provider, meta, redirect_uri, secret="") as client:
        url, _ = client.create_authorization_url(
            meta.authorization_endpoint,
            state=pending.state,
            code_verifier=pending.verifier,
            nonce=pending.nonce,
        )
    return str(url), pending


def _client(provider: OidcProvider, meta: _Metadata, redirect_uri: str, secret: str) -> Any:
    return OAuth2Client(
        client_id=provider.client_id,
        client_secret=secret or None,
        token_endpoint_auth_method=meta.auth_method,
        scope=" ".join(provider.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=TIMEOUT,
    )


def finish(
    provider: OidcProvider, pending: Pending, code: str, redirect_uri: str, now: datetime
) -> str:
    """The verified email of the person the provider signed in with `code`.

    Raises `Refused` when the code, the ID token or the email does not hold.
    """
    meta, keys = _discover(provider)
    try:
        secret = provider.client_secret()
    except ConfigFileError as exc:
        raise Refused("unavailable", f"the client secret cannot be read: {exc}") from exc
    try:
        with _client(provider, meta, redirect_uri, secret) as client:
            token = client.fetch_token(
                meta.token_endpoint, code=code, code_verifier=pending.verifier
            )
    except (OAuthError, httpx.HTTPError, ValueError) as exc:
        raise Refused(
            "failed", f"the provider refused the code ({exc.__class__.__name__})"
        ) from exc
    id_token = token.get("id_token") if isinstance(token, dict) else None
    if not isinstance(id_token, str):
        raise Refused("failed", "the provider returned no ID token")
    claims = _validate(provider, meta, keys, id_token, pending.nonce, now)
    email = claims.get("email")
    # Microsoft Entra ID sends no email_verified for work accounts: its optional claim
    # xms_edov ("email domain owner verified") stands in, only when email_verified is absent.
    verified = claims.get("email_verified", claims.get("xms_edov"))
    if not isinstance(email, str) or "@" not in email:
        raise Refused("unverified", "the ID token has no email")
    if verified is not True and verified != "true":
        raise Refused("unverified", "the provider has not verified this email")
    return email.strip().lower()


def _validate(
    provider: OidcProvider,
    meta: _Metadata,
    keys: KeySet,
    id_token: str,
    nonce: str,
    now: datetime,
) -> dict[str, Any]:
    try:
        try:
            decoded = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError):  # perhaps a rotated key: read the key set again
            keys = _key_set(meta)
            with _lock:
                _cache[provider.issuer] = (time.monotonic(), meta, keys)
            decoded = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=LEEWAY,
            iss={"essential": True, "value": meta.issuer},
            aud={"essential": True, "value": provider.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise Refused("failed", f"the ID token is not valid ({exc.__class__.__name__})") from exc
    return dict(decoded.claims)
