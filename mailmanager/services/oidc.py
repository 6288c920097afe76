"""Signing in with OpenID Connect: the authorization code flow with PKCE, state and nonce.

`begin` makes a pending login (random `state`, `nonce` and PKCE verifier) and the provider's
authorization URL; the web layer keeps the pending login in a signed, short-lived cookie
(`seal` / `unseal`). `finish` exchanges the code (with the client secret and the verifier)
through authlib's httpx client, then validates the ID token with joserfc: its signature
against the provider's JWKS, `iss`, `aud`, `exp` and `nonce`; the `email` claim must come
with `email_verified` true (or, when that claim is absent, Microsoft's `xms_edov` true). It
answers the email; who that is (a configured user or nobody) is the caller's question.
Discovery documents and key sets are cached for an hour, the key set fetched again once
when a token names a key it lacks (key rotation).

TLS certificates are verified; `http` is accepted only for loopback providers (see
`mailmanager.config.oidc`). Nothing here logs a token, a code or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from mailmanager.config.oidc import LOOPBACK, OidcProvider
from mailmanager.config.schema import ConfigFileError
from mailmanager.errors import MailmanagerError

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
    """A login under way: what the callback must match. `expires` is a Unix time."""

    provider: str
    state: str
    nonce: str
    verifier: str
    next: str
    expires: int


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


def seal(key: bytes, pending: Pending) -> str:
    """The pending login as a cookie value: JSON, base64url, and its HMAC-SHA256."""
    body = _b64(json.dumps(asdict(pending), separators=(",", ":")).encode())
    mac = _b64(hmac.new(key, b"oidc:" + body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def unseal(key: bytes, text: str, now: datetime) -> Pending | None:
    """The pending login of a cookie value; None when forged, malformed or expired."""
    body, _, mac = text.partition(".")
    want = _b64(hmac.new(key, b"oidc:" + body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac, want):
        return None
    try:
        pending = Pending(**json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))
    except (ValueError, TypeError):
        return None
    return pending if pending.expires > now.timestamp() else None


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
    provider: OidcProvider, redirect_uri: str, next: str, now: datetime
) -> tuple[str, Pending]:
    """(the provider's authorization URL to send the browser to, the pending login)."""
    meta, _ = _discover(provider)
    pending = Pending(
        provider=provider.slug,
        state=secrets.token_urlsafe(24),
        nonce=secrets.token_urlsafe(24),
        verifier=secrets.token_urlsafe(48),
        next=next,
        expires=int((now + PENDING_LIFETIME).timestamp()),
    )
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
