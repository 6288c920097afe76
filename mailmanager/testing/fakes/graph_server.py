"""Microsoft Entra (login) and Microsoft Graph (mail subset) on loopback, over real HTTPS.

It speaks the documented wire formats closely enough for the real msal and httpx to run
against it unchanged (msal refuses a non-https authority, hence TLS: a private CA is
written to `ca_file`):

- Identity (`authority_url` = https://127.0.0.1:PORT): `GET /{tenant}/v2.0/.well-known/
  openid-configuration`; `POST /{tenant}/oauth2/v2.0/token` with client_credentials (a
  client secret, or a client assertion whose RS256 signature and x5t thumbprint are checked
  against the registered certificate), device_code and refresh_token;
  `POST /{tenant}/oauth2/v2.0/devicecode`. Errors carry AADSTS codes as Entra does
  (7000215 bad secret, 7000222 expired secret, 700016 unknown app, 700027 unknown
  certificate, 90002 unknown tenant, 65001 no consent, 7000218 public flows off, 700082
  refresh token expired). App-only tokens carry `roles`, delegated ones `scp`.
- Graph (`graph_url` = https://127.0.0.1:PORT/v1.0), `/me` or `/users/{upn|id}`:
  `mailFolders` (paged), `mailFolders/{id|well-known name}`, `.../childFolders`,
  `.../messages/delta` (paging by `Prefer: odata.maxpagesize`, default 10; `$select` and
  `$expand` kept inside the skip/delta tokens; `@removed` entries; 410 SyncStateNotFound
  once `reset_folder` drops the sync state), `messages` (list), `messages/{id}` and
  `messages/{id}/$value`. Without `Prefer: IdType="ImmutableId"` message ids embed the
  folder and change on a move, as Exchange's default ids do.
- Permissions: Mail.Read (or Mail.ReadWrite) reads everything, Mail.ReadBasic(.All) all
  but `$value` (403 ErrorAccessDenied), nothing else is 403; `restrict(app, upns)` plays
  an RBAC scope.

Faults: `fail(route, status, ...)` answers the next requests of a route ("token",
"folders", "delta", "value", "message", "graph" = any Graph call) with an error, with
`Retry-After` if asked; `expire_tokens()` / `expire_tokens_after(n)` make issued tokens
answer 401; `reset_folder` expires delta state; `inject` puts a raw entry in the next
delta round; `delete_on_fetch` deletes a message when its `$value` is asked (404);
`hide_content` makes `$value` 404 while the message stays. `calls` counts requests by
route; `inflight_max` records the most concurrent `$value` requests. Run as a script
(`python -m mailmanager.testing.fakes.graph_server --messages FILE`) it serves a bulk
mailbox from its own process, for the benchmark.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import re
import secrets
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

Response = tuple[int, dict[str, str], bytes]
WELL_KNOWN = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "archive": "Archive",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
}
READ_ALL = {"Mail.Read", "Mail.ReadWrite"}
READ_BASIC = {"Mail.ReadBasic", "Mail.ReadBasic.All"}
_JSON = {"Content-Type": "application/json; odata.metadata=minimal"}
_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "ErrorAccessDenied",
    404: "ErrorItemNotFound",
    410: "SyncStateNotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceNotAvailable",
    504: "GatewayTimeout",
}
_ids = itertools.count(1)
_JWT_HEAD = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"none"}').rstrip(b"=").decode()
_ID_HEAD = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()


# ----------------------------------------------------------------------------- TLS files
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("graph fake CA"))
        .issuer_name(_name("graph fake CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def make_client_certificate(directory: Path, name: str = "app") -> tuple[Path, str, bytes]:
    """An RSA key + self-signed certificate as Entra app credentials: (PEM file with key and
    certificate, SHA-1 thumbprint hex, certificate PEM to register)."""
    now = dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = directory / f"{name}.pem"
    path.write_bytes(key_pem + cert_pem)
    return path, cert.fingerprint(hashes.SHA1()).hex().upper(), cert_pem


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------- model
@dataclass
class FakeMessage:
    id: str  # the immutable id
    raw: bytes
    folder_id: str
    received: dt.datetime
    internet_message_id: str | None = None
    subject: str = ""
    read: bool = False
    flagged: bool = False
    draft: bool = False
    verb: int | None = None  # PidTagLastVerbExecuted
    categories: list[str] = field(default_factory=list)


@dataclass
class FakeFolder:
    id: str
    name: str
    parent: str | None
    well_known: str | None = None
    generation: int = 1
    members: dict[str, None] = field(default_factory=dict)  # message ids, in arrival order
    log: list[str] = field(default_factory=list)  # message id changed at seq = index + 1
    pending: list[dict[str, Any]] = field(default_factory=list)  # injected raw entries


@dataclass
class FakeMailbox:
    upn: str
    id: str
    root: str
    folders: dict[str, FakeFolder] = field(default_factory=dict)
    messages: dict[str, FakeMessage] = field(default_factory=dict)


@dataclass
class FakeApp:
    client_id: str
    secret: str | None = None
    secret_expired: bool = False
    certificates: dict[str, bytes] = field(default_factory=dict)  # thumbprint -> cert PEM
    roles: set[str] = field(default_factory=lambda: {"Mail.Read"})
    consented: bool = True
    public_client: bool = False
    mailboxes: set[str] | None = None  # RBAC scope: upns, None = all


@dataclass
class _Grant:
    client_id: str
    upn: str | None  # None: app-only
    claims: set[str]  # roles or scopes
    issued: float
    expires: float


@dataclass
class _Round:
    folder: str
    generation: int
    end: int  # log length when the round began
    entries: list[str | dict[str, Any]]
    select: str | None
    expand: str | None


@dataclass
class _Fault:
    route: str
    status: int
    times: int
    retry_after: str | None
    code: str | None
    message: str
    match: str | None


class GraphFake:
    """The server and its mailbox model; see the module docstring. Thread-safe."""

    tenant_id = "9188040d-6c67-4c5b-b112-36a304b66dad"
    tenant_domain = "contoso.onmicrosoft.com"

    def __init__(self, directory: Path | None = None, record: bool = True) -> None:
        self._tmp = tempfile.TemporaryDirectory() if directory is None else None
        self.dir = Path(self._tmp.name) if self._tmp is not None else Path(str(directory))
        self.ca_file, cert, key = make_tls(self.dir)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        self.lock = threading.RLock()
        self.apps: dict[str, FakeApp] = {}
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.grants: dict[str, _Grant] = {}
        self.refresh_tokens: dict[str, _Grant] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.rounds: dict[str, _Round] = {}
        self.faults: list[_Fault] = []
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.record = record
        self.expired_before = 0.0
        self.expire_after: int | None = None
        self.delete_on_fetch_ids: set[str] = set()
        self.hidden: set[str] = set()
        self.value_delay = 0.0
        self.inflight = 0
        self.inflight_max = 0
        self.device_interval = 1
        self.device_polls_before_approval = 1
        self.device_user: str | None = None
        self.device_decline = False
        self.token_lifetime = 3600
        self.forced_page_size: int | None = None  # ignore odata.maxpagesize, as a proxy might
        self._server: _Server | None = None

    # ------------------------------------------------------------------- lifecycle
    def start(self) -> GraphFake:
        self._server = _Server(self, self._ctx)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> GraphFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    @property
    def authority_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1.0"

    # --------------------------------------------------------------- test controls
    def add_app(self, client_id: str | None = None, **kwargs: Any) -> FakeApp:
        app = FakeApp(client_id or str(uuid.uuid4()), **kwargs)
        with self.lock:
            self.apps[app.client_id] = app
        return app

    def add_mailbox(self, upn: str) -> FakeMailbox:
        with self.lock:
            root = f"AAMkRoot{next(_ids)}"
            box = FakeMailbox(upn, str(uuid.uuid4()), root)
            for key, name in WELL_KNOWN.items():
                fid = f"AAMkF{next(_ids)}-{key}"
                box.folders[fid] = FakeFolder(fid, name, root, key)
            self.mailboxes[upn.lower()] = box
            return box

    def box(self, upn: str) -> FakeMailbox:
        return self.mailboxes[upn.lower()]

    def folder_id(self, upn: str, well_known: str) -> str:
        return next(f.id for f in self.box(upn).folders.values() if f.well_known == well_known)

    def add_folder(self, upn: str, name: str, parent: str | None = None) -> str:
        with self.lock:
            box = self.box(upn)
            fid = f"AAMkF{next(_ids)}"
            box.folders[fid] = FakeFolder(fid, name, parent or box.root)
            return fid

    def append(self, upn: str, folder_id: str, raw: bytes, **props: Any) -> str:
        """Deliver `raw` into a folder; props: read, flagged, draft, verb, categories,
        received. Returns the message's immutable id."""
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        mid = headers.get("Message-ID")
        with self.lock:
            box = self.box(upn)
            msg = FakeMessage(
                id=f"AAkALgImm{next(_ids):08d}x{secrets.token_hex(4)}",
                raw=raw,
                folder_id=folder_id,
                received=props.pop("received", None) or dt.datetime.now(dt.UTC),
                internet_message_id=str(mid).strip() if mid else None,
                subject=str(headers.get("Subject") or ""),
                **props,
            )
            box.messages[msg.id] = msg
            self._touch(box.folders[folder_id], msg.id, add=True)
            return msg.id

    def delete(self, upn: str, msg_id: str) -> None:
        with self.lock:
            box = self.box(upn)
            msg = box.messages.pop(msg_id)
            self._touch(box.folders[msg.folder_id], msg_id, add=False)

    def move(self, upn: str, msg_id: str, folder_id: str) -> None:
        with self.lock:
            box = self.box(upn)
            msg = box.messages[msg_id]
            self._touch(box.folders[msg.folder_id], msg_id, add=False)
            msg.folder_id = folder_id
            self._touch(box.folders[folder_id], msg_id, add=True)

    def set_flags(self, upn: str, msg_id: str, **props: Any) -> None:
        """Change read / flagged / draft / verb / categories of a message."""
        with self.lock:
            box = self.box(upn)
            msg = box.messages[msg_id]
            for name, value in props.items():
                setattr(msg, name, value)
            box.folders[msg.folder_id].log.append(msg_id)

    def reset_folder(self, upn: str, folder_id: str) -> None:
        """Drop the folder's sync state: its delta and skip tokens answer 410 from now on."""
        with self.lock:
            self.box(upn).folders[folder_id].generation += 1

    def inject(self, upn: str, folder_id: str, entry: dict[str, Any]) -> None:
        """Put a raw entry (malformed on purpose) into the next delta round of the folder."""
        with self.lock:
            self.box(upn).folders[folder_id].pending.append(entry)

    def fail(
        self,
        route: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        code: str | None = None,
        message: str = "injected fault",
        match: str | None = None,
    ) -> None:
        with self.lock:
            ra = None if retry_after is None else f"{retry_after:g}"
            self.faults.append(_Fault(route, status, times, ra, code, message, match))

    def clear_faults(self) -> None:
        """Forget every fault and knob set by a test (the mailboxes stay)."""
        with self.lock:
            self.faults.clear()
            self.expire_after, self.forced_page_size, self.value_delay = None, None, 0.0
            self.delete_on_fetch_ids.clear()
            self.hidden.clear()
            self.device_decline, self.device_user = False, None
            self.inflight_max = 0
            self.calls.clear()
            self.requests.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            self.expired_before = time.time()

    def expire_tokens_after(self, graph_requests: int) -> None:
        with self.lock:
            self.expire_after = graph_requests

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def delete_on_fetch(self, msg_id: str) -> None:
        with self.lock:
            self.delete_on_fetch_ids.add(msg_id)

    def hide_content(self, msg_id: str) -> None:
        with self.lock:
            self.hidden.add(msg_id)

    def _touch(self, folder: FakeFolder, msg_id: str, add: bool) -> None:
        if add:
            folder.members[msg_id] = None
        else:
            folder.members.pop(msg_id, None)
        folder.log.append(msg_id)

    # ------------------------------------------------------------------- dispatch
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        route = _route_of(path)
        with self.lock:
            self.calls[route] += 1
            if self.record:
                self.requests.append((method, target, headers))
            fault = self._fault(route, path)
        if fault is not None:
            return fault
        if path.startswith("/v1.0/"):
            return self._graph(path[5:], query, headers)
        if method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if path.endswith("/oauth2/v2.0/token"):
                return self._token(path.split("/")[1], form)
            if path.endswith("/oauth2/v2.0/devicecode"):
                return self._devicecode(path.split("/")[1], form)
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            return self._openid(path.split("/")[1])
        return _graph_error(404, "UnknownRoute", f"no route {method} {path}")

    def _fault(self, route: str, path: str) -> Response | None:
        for f in self.faults:
            graph = route not in ("token", "devicecode", "openid")
            if (f.route == route or (f.route == "graph" and graph)) and (
                f.match is None or f.match in path
            ):
                f.times -= 1
                if f.times <= 0:
                    self.faults.remove(f)
                extra = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                if not graph:
                    body = {
                        "error": f.code or "temporarily_unavailable",
                        "error_description": f"AADSTS50196: {f.message}",
                    }
                    return f.status, {**_JSON, **extra}, json.dumps(body).encode()
                status, headers, data = _graph_error(
                    f.status, f.code or _CODES.get(f.status, "Error"), f.message
                )
                return status, {**headers, **extra}, data
        return None

    # ------------------------------------------------------------------- identity
    def _tenant_ok(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id, self.tenant_domain, "organizations", "common")

    def _openid(self, tenant: str) -> Response:
        if not self._tenant_ok(tenant):
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        seg = self.tenant_id if tenant.lower() == self.tenant_domain else tenant
        base = f"{self.authority_url}/{seg}"
        return _json(
            {
                "issuer": f"{self.authority_url}/{self.tenant_id}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token"],
            }
        )

    def _token(self, tenant: str, form: dict[str, str]) -> Response:
        if not self._tenant_ok(tenant):
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        grant = form.get("grant_type", "")
        with self.lock:
            app = self.apps.get(form.get("client_id", ""))
            if app is None:
                return _aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{form.get('client_id')}' was "
                    f"not found in the directory '{self.tenant_domain}'.",
                )
            if grant == "client_credentials":
                problem = self._client_auth(app, form, tenant)
                if problem:
                    return problem
                roles = set(app.roles) if app.consented else set()
                return self._issue(app, None, roles, with_refresh=False)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                return self._poll_device(app, form.get("device_code", ""))
            if grant == "refresh_token":
                old = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
                if old is None or old.client_id != app.client_id:
                    return _aad_error(
                        400,
                        "invalid_grant",
                        700082,
                        "The refresh token has expired due to inactivity.",
                    )
                return self._issue(app, old.upn, old.claims, with_refresh=True)
        return _aad_error(400, "unsupported_grant_type", 70003, f"grant {grant!r}")

    def _client_auth(self, app: FakeApp, form: dict[str, str], tenant: str) -> Response | None:
        if "client_secret" in form:
            if app.secret is None or form["client_secret"] != app.secret:
                return _aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent "
                    "in the request is the client secret value, not the client "
                    "secret ID, for a secret added to app "
                    f"'{app.client_id}'.",
                )
            if app.secret_expired:
                return _aad_error(
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{app.client_id}' are expired.",
                )
            return None
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            thumb = _unb64(str(header.get("x5t", ""))).hex().upper()
        except (jwt.PyJWTError, ValueError):
            thumb = ""
        cert = app.certificates.get(thumb)
        if cert is None:
            return _aad_error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client "
                f"assertion is not registered on application {app.client_id}.",
            )
        key = x509.load_pem_x509_certificate(cert).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        audience = f"{self.authority_url}/{tenant}/oauth2/v2.0/token"
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=["RS256", "PS256"],
                audience=audience,
                issuer=app.client_id,
            )
        except jwt.PyJWTError as exc:
            return _aad_error(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation: {exc}",
            )
        return None

    def _issue(
        self, app: FakeApp, upn: str | None, claims: set[str], with_refresh: bool
    ) -> Response:
        now = time.time()
        grant = _Grant(app.client_id, upn, set(claims), now, now + self.token_lifetime)
        payload: dict[str, Any] = {
            "aud": f"https://127.0.0.1:{self.port}",
            "tid": self.tenant_id,
            "appid": app.client_id,
            "iat": int(now),
            "exp": int(grant.expires),
            "jti": secrets.token_hex(8),
        }
        if upn is None:
            payload["roles"] = sorted(claims)
        else:
            payload["scp"] = " ".join(sorted(claims))
            payload["upn"] = upn
        token = f"{_JWT_HEAD}.{_b64(json.dumps(payload).encode())}.x"
        self.grants[token] = grant
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        if with_refresh and upn is not None:
            refresh = secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = grant
            box = self.box(upn)
            claims_id = {
                "iss": f"{self.authority_url}/{self.tenant_id}/v2.0",
                "sub": box.id,
                "aud": app.client_id,
                "exp": int(grant.expires),
                "iat": int(now),
                "oid": box.id,
                "tid": self.tenant_id,
                "preferred_username": upn,
            }
            answer.update(
                refresh_token=refresh,
                scope=" ".join(f"https://127.0.0.1:{self.port}/{c}" for c in sorted(claims)),
                id_token=f"{_ID_HEAD}.{_b64(json.dumps(claims_id).encode())}.",
                client_info=_b64(json.dumps({"uid": box.id, "utid": self.tenant_id}).encode()),
            )
        return _json(answer)

    def _devicecode(self, tenant: str, form: dict[str, str]) -> Response:
        with self.lock:
            app = self.apps.get(form.get("client_id", ""))
            if app is None:
                return _aad_error(400, "unauthorized_client", 700016, "Application not found.")
            if not app.public_client:
                return _aad_error(
                    400,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: "
                    "'client_assertion' or 'client_secret'.",
                )
            code = secrets.token_urlsafe(16)
            user_code = secrets.token_hex(4).upper()
            scopes = {s.rsplit("/", 1)[-1] for s in form.get("scope", "").split()}
            self.devices[code] = {"app": app.client_id, "polls": 0, "scopes": scopes}
        uri = f"{self.authority_url}/devicelogin"
        return _json(
            {
                "device_code": code,
                "user_code": user_code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": self.device_interval,
                "message": f"To sign in, use a web browser to open the page {uri} and "
                f"enter the code {user_code} to authenticate.",
            }
        )

    def _poll_device(self, app: FakeApp, code: str) -> Response:
        flow = self.devices.get(code)
        if flow is None or flow["app"] != app.client_id:
            return _aad_error(400, "expired_token", 70020, "The device code has expired.")
        flow["polls"] += 1
        if flow["polls"] <= self.device_polls_before_approval:
            return _aad_error(400, "authorization_pending", 70016, "Pending user authorization.")
        del self.devices[code]
        if self.device_decline:
            return _aad_error(400, "authorization_declined", 70000, "The user declined.")
        if not app.consented:
            return _aad_error(
                400,
                "invalid_grant",
                65001,
                "The user or administrator has not consented to use the "
                f"application with ID '{app.client_id}'.",
            )
        upn = self.device_user or next(iter(self.mailboxes.values())).upn
        claims = {s for s in flow["scopes"] if s.startswith("Mail.")}
        return self._issue(app, upn, claims, with_refresh=True)

    # ---------------------------------------------------------------------- graph
    def _authorize(self, headers: dict[str, str]) -> _Grant | Response:
        auth = headers.get("authorization", "")
        grant = self.grants.get(auth[7:]) if auth.startswith("Bearer ") else None
        if self.expire_after is not None:
            self.expire_after -= 1
            if self.expire_after < 0:
                self.expire_after = None
                self.expired_before = time.time()
        now = time.time()
        if grant is None or grant.expires < now or grant.issued <= self.expired_before:
            status, hdrs, data = _graph_error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
            return status, {**hdrs, "WWW-Authenticate": 'Bearer realm=""'}, data
        return grant

    def _graph(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        with self.lock:
            grant = self._authorize(headers)
            if not isinstance(grant, _Grant):
                return grant
            m = re.match(r"^/(?:me|users/([^/]+))(/.*)?$", path)
            if m is None:
                return _graph_error(404, "UnknownRoute", path)
            box = self._mailbox(m.group(1), grant)
            if not isinstance(box, FakeMailbox):
                return box
            prefix = path[: len(path) - len(m.group(2) or "")]
            rest = m.group(2) or ""
            app = self.apps[grant.client_id]
            allowed = grant.claims & (READ_ALL | READ_BASIC | {"Mail.Read.Shared"})
            if not allowed or (app.mailboxes is not None and box.upn not in app.mailboxes):
                return _graph_error(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            if rest.endswith("/$value") and not grant.claims & (READ_ALL | {"Mail.Read.Shared"}):
                return _graph_error(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            immutable = 'idtype="immutableid"' in headers.get("prefer", "").lower()
            if rest.endswith("/$value"):
                return self._value(box, rest.split("/")[2], immutable)
        return self._graph_read(box, prefix, rest, query, headers, immutable)

    def _graph_read(
        self,
        box: FakeMailbox,
        prefix: str,
        rest: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        immutable: bool,
    ) -> Response:
        with self.lock:
            if m := re.match(r"^/mailFolders/([^/]+)/messages/delta(?:\(\))?$", rest):
                return self._delta(box, prefix, m.group(1), query, headers, immutable)
            if rest == "/mailFolders":
                return self._folder_list(box, box.root, query, prefix + rest)
            if m := re.match(r"^/mailFolders/([^/]+)/childFolders$", rest):
                folder = self._folder(box, m.group(1))
                if folder is None:
                    return _not_found()
                return self._folder_list(box, folder.id, query, prefix + rest)
            if m := re.match(r"^/mailFolders/([^/]+)$", rest):
                folder = self._folder(box, m.group(1))
                return _not_found() if folder is None else _json(self._folder_json(box, folder))
            if rest == "/messages":
                top = int(query.get("$top", ["10"])[0])
                msgs = list(box.messages.values())[:top]
                select = query.get("$select", [None])[0]
                return _json({"value": [_render(m, select, None, immutable) for m in msgs]})
            if m := re.match(r"^/messages/([^/]+)$", rest):
                msg = self._message(box, m.group(1))
                if msg is None:
                    return _not_found()
                return _json(_render(msg, query.get("$select", [None])[0], None, immutable))
            if rest == "":
                return _json({"id": box.id, "userPrincipalName": box.upn, "mail": box.upn})
        return _graph_error(400, "BadRequest", f"unsupported {rest}")

    def _mailbox(self, who: str | None, grant: _Grant) -> FakeMailbox | Response:
        if who is None:
            if grant.upn is None:
                return _graph_error(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            return self.box(grant.upn)
        for box in self.mailboxes.values():
            if who.lower() in (box.upn.lower(), box.id):
                return box
        return _graph_error(404, "ErrorInvalidUser", f"The requested user '{who}' is invalid.")

    def _folder(self, box: FakeMailbox, key: str) -> FakeFolder | None:
        if key.lower() in WELL_KNOWN:
            return next((f for f in box.folders.values() if f.well_known == key.lower()), None)
        return box.folders.get(key)

    def _folder_json(self, box: FakeMailbox, f: FakeFolder) -> dict[str, Any]:
        children = sum(1 for c in box.folders.values() if c.parent == f.id)
        unread = sum(1 for m in f.members if not box.messages[m].read)
        return {
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent,
            "childFolderCount": children,
            "unreadItemCount": unread,
            "totalItemCount": len(f.members),
            "isHidden": False,
        }

    def _folder_list(
        self, box: FakeMailbox, parent: str, query: dict[str, list[str]], path: str
    ) -> Response:
        top, skip = int(query.get("$top", ["10"])[0]), int(query.get("$skip", ["0"])[0])
        kids = [f for f in box.folders.values() if f.parent == parent]
        body: dict[str, Any] = {
            "value": [self._folder_json(box, f) for f in kids[skip : skip + top]]
        }
        if skip + top < len(kids):
            body["@odata.nextLink"] = f"{self.graph_url}{path}?$top={top}&$skip={skip + top}"
        return _json(body)

    def _message(self, box: FakeMailbox, ext_id: str) -> FakeMessage | None:
        return box.messages.get(ext_id.split(".", 1)[-1])

    def _value(self, box: FakeMailbox, ext_id: str, immutable: bool) -> Response:
        msg = self._message(box, ext_id)
        if msg is not None and not immutable and ext_id != _ext_id(msg, False):
            msg = None  # a default id names the folder the message was in
        if msg is not None and msg.id in self.delete_on_fetch_ids:
            self.delete_on_fetch_ids.discard(msg.id)
            self.delete(box.upn, msg.id)
            msg = None
        if msg is None or msg.id in self.hidden:
            return _not_found()
        self.inflight += 1
        self.inflight_max = max(self.inflight_max, self.inflight)
        raw = msg.raw
        self.lock.release()
        try:
            if self.value_delay:
                time.sleep(self.value_delay)
        finally:
            self.lock.acquire()
            self.inflight -= 1
        return 200, {"Content-Type": "text/plain"}, raw

    def _delta(
        self,
        box: FakeMailbox,
        prefix: str,
        key: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        immutable: bool,
    ) -> Response:
        folder = self._folder(box, key)
        if folder is None:
            return _not_found()
        if "$skiptoken" in query:
            rid, _, offset_text = query["$skiptoken"][0].partition("~")
            rnd, offset = self.rounds.get(rid), int(offset_text or 0)
            if rnd is None or rnd.generation != folder.generation or rnd.folder != folder.id:
                return _graph_error(410, "SyncStateNotFound", "The sync state is not found.")
        else:
            if "$deltatoken" in query:
                try:
                    state = json.loads(_unb64(query["$deltatoken"][0]))
                except ValueError:
                    return _graph_error(400, "BadRequest", "malformed delta token")
                if state["g"] != folder.generation or state["f"] != folder.id:
                    return _graph_error(410, "SyncStateNotFound", "The sync state is not found.")
                start, select, expand = state["s"], state["sel"], state["x"]
                entries: list[str | dict[str, Any]] = list(dict.fromkeys(folder.log[start:]))
            else:
                select = query.get("$select", [None])[0]
                expand = query.get("$expand", [None])[0]
                entries = list(folder.members)
            entries = [*folder.pending, *entries]
            folder.pending = []
            rid = secrets.token_hex(6)
            rnd = _Round(folder.id, folder.generation, len(folder.log), entries, select, expand)
            self.rounds[rid] = rnd
            offset = 0
        size = 10
        for pref in headers.get("prefer", "").split(","):
            name, _, value = pref.strip().partition("=")
            if name.lower() == "odata.maxpagesize" and value.isdigit():
                size = max(int(value), 1)
        size = self.forced_page_size or size
        page = rnd.entries[offset : offset + size]
        items: list[dict[str, Any]] = []
        for entry in page:
            if isinstance(entry, dict):
                items.append(entry)
            elif entry in folder.members:
                items.append(_render(box.messages[entry], rnd.select, rnd.expand, immutable))
            else:
                items.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": entry,
                        "@removed": {"reason": "deleted"},
                    }
                )
        base = f"{self.graph_url}{prefix}/mailFolders/{quote(folder.id)}/messages/delta"
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection(message)",
            "value": items,
        }
        if offset + size < len(rnd.entries):
            body["@odata.nextLink"] = f"{base}?$skiptoken={rid}~{offset + size}"
        else:
            state = {
                "f": folder.id,
                "g": folder.generation,
                "s": rnd.end,
                "sel": rnd.select,
                "x": rnd.expand,
            }
            body["@odata.deltaLink"] = f"{base}?$deltatoken={_b64(json.dumps(state).encode())}"
        status, hdrs, data = _json(body)
        return status, {**hdrs, "Preference-Applied": f"odata.maxpagesize={size}"}, data


def _ext_id(msg: FakeMessage, immutable: bool) -> str:
    return msg.id if immutable else f"{msg.folder_id}.{msg.id}"


def _render(
    msg: FakeMessage, select: str | None, expand: str | None, immutable: bool
) -> dict[str, Any]:
    full: dict[str, Any] = {
        "id": _ext_id(msg, immutable),
        "receivedDateTime": _iso(msg.received),
        "internetMessageId": msg.internet_message_id,
        "subject": msg.subject,
        "isRead": msg.read,
        "isDraft": msg.draft,
        "flag": {"flagStatus": "flagged" if msg.flagged else "notFlagged"},
        "categories": list(msg.categories),
        "parentFolderId": msg.folder_id,
        "conversationId": "AAQk" + hashlib.sha1(msg.subject.encode()).hexdigest()[:16],
        "bodyPreview": "",
    }
    if msg.internet_message_id is None:
        del full["internetMessageId"]  # as Graph does for items that have none
    if select:
        wanted = {s.strip() for s in select.split(",")} | {"id"}
        full = {k: v for k, v in full.items() if k in wanted}
        if "internetMessageHeaders" in wanted:  # only when selected, as Graph does
            head = msg.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
            full["internetMessageHeaders"] = [
                {"name": k, "value": str(v).replace("\r\n", "").replace("\n", "")}
                for k, v in parsed.items()
            ]
    props: list[dict[str, str]] = []
    if expand and "0x1081" in expand.lower() and msg.verb is not None:
        props.append({"id": "Integer 0x1081", "value": str(msg.verb)})
    if expand and "0x0e08" in expand.lower():  # PidTagMessageSize
        props.append({"id": "Integer 0xe08", "value": str(len(msg.raw))})
    if props:
        full["singleValueExtendedProperties"] = props
    return {"@odata.type": "#microsoft.graph.message", **full}


def _route_of(path: str) -> str:
    if path.endswith("/token"):
        return "token"
    if path.endswith("/devicecode"):
        return "devicecode"
    if path.endswith("openid-configuration"):
        return "openid"
    if "/messages/delta" in path:
        return "delta"
    if path.endswith("/$value"):
        return "value"
    if "/messages/" in path or path.endswith("/messages"):
        return "message"
    if "/mailFolders" in path:
        return "folders"
    return "other"


def _json(data: object, status: int = 200) -> Response:
    return status, dict(_JSON), json.dumps(data).encode()


def _graph_error(status: int, code: str, message: str) -> Response:
    inner = {"date": _iso(dt.datetime.now(dt.UTC)), "request-id": str(uuid.uuid4())}
    return _json({"error": {"code": code, "message": message, "innerError": inner}}, status)


def _not_found() -> Response:
    return _graph_error(
        404, "ErrorItemNotFound", "The specified object was not found in the store."
    )


def _aad_error(status: int, error: str, code: int, text: str) -> Response:
    trace = str(uuid.uuid4())
    return _json(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text} Trace ID: {trace}",
            "error_codes": [code],
            "timestamp": _iso(dt.datetime.now(dt.UTC)),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
        status,
    )


# ---------------------------------------------------------------------------- HTTP layer
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Graph clients expect
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): ", ".join(self.headers.get_all(k) or []) for k in self.headers}
        try:
            status, extra, data = self.server.fake.handle(method, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: answer 500 rather than hang the client
            status, extra, data = _graph_error(500, "FakeBug", repr(exc))
        reason = self.responses.get(status, ("Error",))[0]
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(data)}"]
        head += [f"{name}: {value}" for name, value in extra.items()]
        # One write for head and body: two small TLS records would meet Nagle's algorithm
        # and the client's delayed ACK (40 ms per response).
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, fake: GraphFake, ctx: ssl.SSLContext) -> None:
        self.fake, self.ctx = fake, ctx
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake in the connection's own thread, never in the accept loop.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except (ssl.SSLError, OSError):
            pass
        finally:
            conn.close()


_SHARED: GraphFake | None = None
_SHARED_LOCK = threading.Lock()


def shared_fake() -> GraphFake:
    """One fake for the whole test process, started on first use and stopped at exit."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = GraphFake(record=False).start()
            atexit.register(_SHARED.stop)
        return _SHARED


# ---------------------------------------------------------------------- script (benchmark)
def write_messages(path: Path, items: list[tuple[str, bytes]]) -> None:
    """Store (well-known folder, raw) pairs as 8-byte big-endian length + `folder\0raw`."""
    with path.open("wb") as fh:
        for folder, raw in items:
            record = folder.encode() + b"\0" + raw
            fh.write(len(record).to_bytes(8, "big") + record)


def read_messages(path: Path) -> list[tuple[str, bytes]]:
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 8], "big")
        folder, _, raw = data[pos + 8 : pos + 8 + size].partition(b"\0")
        out.append((folder.decode(), raw))
        pos += 8 + size
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=Path, required=True, help="from write_messages")
    ap.add_argument("--info", type=Path, required=True, help="JSON written once serving")
    args = ap.parse_args(argv)
    fake = GraphFake(Path(tempfile.mkdtemp()), record=False).start()
    app = fake.add_app(secret="bench-secret")
    upn = "bench@contoso.example"
    fake.add_mailbox(upn)
    for folder, raw in read_messages(args.messages):
        fake.append(upn, fake.folder_id(upn, folder), raw)
    info = {
        "authority_url": fake.authority_url,
        "graph_url": fake.graph_url,
        "ca_file": str(fake.ca_file),
        "tenant_id": fake.tenant_id,
        "client_id": app.client_id,
        "client_secret": "bench-secret",
        "user": upn,
    }
    tmp = args.info.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.rename(args.info)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
