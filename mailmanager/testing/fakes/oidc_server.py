"""An OpenID Connect provider on loopback, for the web sign-in tests.

It serves what a relying party reads: the discovery document
(`/.well-known/openid-configuration`), the key set (`/jwks`, one RSA key generated at start),
`/authorize`, which signs in `identity` at once (no page) and redirects back with a code and
the `state`, and `POST /token`, which checks the client (HTTP Basic or form secret), the
code (single use, same `redirect_uri`) and the PKCE verifier (S256), then answers an ID
token signed RS256 carrying `iss`, `aud`, `sub`, `iat`, `exp`, `nonce`, `email` and
`email_verified`.

Faults for tests: `identity` may be changed between logins; `audience` overrides the `aud`
claim; `tamper_signature` alters the signature of the tokens it returns. `codes` lists the
codes issued (to replay one); `calls` counts requests by path. The clock is the real one
unless `clock` says otherwise (the web tests align it with the server's faked time).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey


@dataclass
class Identity:
    """Who the provider signs in."""

    email: str
    email_verified: bool | None = True  # None: the claim is left out (as Microsoft does)
    sub: str = field(default_factory=lambda: secrets.token_hex(8))
    xms_edov: bool | None = None  # Microsoft's "email domain owner verified", when given


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    identity: Identity


class OidcFake:
    """The provider; `with OidcFake(...) as idp:` serves it at `idp.issuer`."""

    def __init__(
        self,
        identity: Identity,
        client_id: str = "mailmanager-test",
        client_secret: str = "test-client-secret",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.client_id, self.client_secret = client_id, client_secret
        self.clock = clock
        self.audience: str | None = None
        self.tamper_signature = False
        self.codes: list[str] = []
        self.calls: Counter[str] = Counter()
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"})
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self  # type: ignore[attr-defined]
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> OidcFake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "nonce"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """(status, Location or error text) for an authorization request."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect:
            return 400, "unknown client or no redirect_uri"
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
            return 400, "response_type=code and scope openid are required"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, "PKCE S256 is required"
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                self.client_id,
                redirect,
                query["code_challenge"],
                query.get("nonce", ""),
                dataclasses.replace(self.identity),
            )
            self.codes.append(code)
        back = urlencode({"code": code, "state": query.get("state", "")})
        return 302, f"{redirect}{'&' if '?' in redirect else '?'}{back}"

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        """(status, JSON) for a token request."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        if client_id != self.client_id or not hmac.compare_digest(secret, self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "aud": self.audience or self.client_id,
            "sub": grant.identity.sub,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": grant.identity.email,
        }
        for name in ("email_verified", "xms_edov"):
            if getattr(grant.identity, name) is not None:
                claims[name] = getattr(grant.identity, name)
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key-1"}, claims, self.key)
        if self.tamper_signature:
            head, body, sig = id_token.split(".")
            id_token = f"{head}.{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    @property
    def fake(self) -> OidcFake:
        fake: OidcFake = self.server.fake  # type: ignore[attr-defined]
        return fake

    def _json(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.fake.calls[parts.path] += 1
        if parts.path == "/.well-known/openid-configuration":
            self._json(200, self.fake.discovery())
        elif parts.path == "/jwks":
            self._json(200, {"keys": [self.fake.key.as_dict(private=False)]})
        elif parts.path == "/authorize":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, where = self.fake.authorize(query)
            if status == 302:
                self.send_response(302)
                self.send_header("Location", where)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(status, {"error": "invalid_request", "error_description": where})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        self.fake.calls[parts.path] += 1
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if parts.path != "/token":
            self._json(404, {"error": "not_found"})
            return
        status, data = self.fake.token(form, self.headers.get("Authorization", ""))
        self._json(status, data)
