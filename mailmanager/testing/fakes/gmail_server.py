"""A Gmail API on loopback: REST v1 JSON, the batch endpoint and Google's OAuth endpoints.

It speaks the documented wire formats closely enough for the real google-api-python-client
and google-auth to run against it unchanged:

- `/gmail/v1/users/{me|email}/profile|labels|messages|messages/{id}|history` (JSON). Listing
  is newest first with opaque page tokens, `labelIds`, `includeSpamTrash` and a small `q`
  subset (`[-]in:inbox|sent|spam|trash`, `[-]category:x`, `[-]label:name`). As at Google,
  an empty list or history answer has no `messages` / `history` key at all.
- `POST /batch/gmail/v1`: multipart/mixed of application/http parts, answered part by part
  with `Content-ID: <response-...>` (https://developers.google.com/gmail/api/guides/batch).
- `POST /token`: refresh_token, jwt-bearer (the RS256 signature is checked against the
  registered service-account key; domain-wide delegation per scope), authorization_code
  (PKCE S256 checked), device_code. `GET /o/oauth2/auth` consents at once (or as
  `consent` says) and redirects; `POST /device/code` refuses Gmail scopes with invalid_scope,
  as Google's device flow does, unless `device_allows_gmail`.
- History ids increase but not contiguously; a start id older than `expire_history()`
  answers 404, as an expired historyId does.

Faults: `fail(match, status, ...)` answers the next requests whose path contains `match`
with an error (inside a batch too, part by part); `expire_tokens()` makes every access
token answer 401; `corrupt_raw` and `omit_from_batch` produce malformed items. `calls`
counts requests by route. Run as a script
(`python -m mailmanager.testing.fakes.gmail_server --bulk N`) it serves a synthetic mailbox
(`bulkmail.synthetic_message`) from its own process, for the benchmark.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import functools
import hashlib
import json
import random
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser, Parser
from email.policy import compat32
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailmanager.testing import bulkmail

READONLY = "https://www.googleapis.com/auth/gmail.readonly"
METADATA = "https://www.googleapis.com/auth/gmail.metadata"
BODY_SCOPES = frozenset(
    {READONLY, "https://www.googleapis.com/auth/gmail.modify", "https://mail.google.com/"}
)
READ_SCOPES = BODY_SCOPES | {METADATA}
SYSTEM_LABELS = (
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)
HISTORY_KINDS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_JSON = {"Content-Type": "application/json; charset=UTF-8"}

Response = tuple[int, dict[str, str], bytes]


def _json(data: object, status: int = 200) -> Response:
    return status, dict(_JSON), json.dumps(data).encode()


def api_error(
    status: int, message: str, reason: str, extra: dict[str, str] | None = None
) -> Response:
    """A Google API error body (https://developers.google.com/gmail/api/guides/handle-errors)."""
    err = {"message": message, "domain": "global", "reason": reason}
    body = {"code": status, "message": message, "errors": [err], "status": _STATUS.get(status, "")}
    code, headers, data = _json({"error": body}, status)
    return code, {**headers, **(extra or {})}, data


def oauth_error(status: int, error: str, description: str) -> Response:
    """An OAuth 2 token-endpoint error (RFC 6749 §5.2), as Google words them."""
    return _json({"error": error, "error_description": description}, status)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class FakeMessage:
    id: str
    thread_id: str
    raw: bytes | Callable[[], bytes]
    labels: set[str]
    internal_ms: int
    history_id: int

    def data(self) -> bytes:
        return self.raw() if callable(self.raw) else self.raw


@dataclass
class Fault:
    match: str
    status: int
    times: int
    retry_after: str | None
    reason: str


class GmailFake:
    """One Gmail mailbox (`email`) and its OAuth server, on 127.0.0.1:<free port>."""

    def __init__(self, email: str = "alice@example.com") -> None:
        self.email = email
        self.lock = threading.RLock()
        self.rng = random.Random(6)
        self._next_id = 0x18F0000000000000
        self._hist = 4000
        self._clock_ms = 1_780_000_000_000
        self.min_history = 0
        self.messages: dict[str, FakeMessage] = {}
        self._order: list[tuple[int, str]] | None = None
        self.user_labels: dict[str, str] = {}
        self.history: list[dict[str, Any]] = []
        self.access: dict[str, tuple[frozenset[str], str | None]] = {}
        self.refresh: dict[str, tuple[str, frozenset[str]]] = {}
        self.clients: dict[str, str] = {}
        self.service_accounts: dict[str, tuple[rsa.RSAPublicKey, frozenset[str]]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.consent = "grant"  # "grant", "deny", or the scopes the user leaves ticked
        self.device_allows_gmail = False
        self.rotate_refresh = False
        self.device_interval = 1.0
        self.faults: list[Fault] = []
        self.corrupt: set[str] = set()
        self.omitted: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- mailbox model
    def _new_history(self) -> int:
        self._hist += self.rng.randint(1, 3)  # increasing, not contiguous (Gmail sync guide)
        return self._hist

    def _record(self, kind: str, msg: FakeMessage, changed: Iterable[str] = ()) -> None:
        hid = self._new_history()
        msg.history_id = hid
        ref = {"id": msg.id, "threadId": msg.thread_id}
        entry: dict[str, Any] = {"message": {**ref, "labelIds": sorted(msg.labels)}}
        if kind in ("labelsAdded", "labelsRemoved"):
            entry["labelIds"] = sorted(changed)
        self.history.append({"id": str(hid), "messages": [ref], kind: [entry]})

    def add_label(self, name: str) -> str:
        with self.lock:
            lid = f"Label_{len(self.user_labels) + 1}"
            self.user_labels[lid] = name
            return lid

    def append(
        self,
        raw: bytes | Callable[[], bytes],
        labels: Iterable[str] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
        internal_ms: int | None = None,
    ) -> str:
        with self.lock:
            self._next_id += self.rng.randint(1, 9)
            mid = f"{self._next_id:016x}"
            self._clock_ms += 1000
            msg = FakeMessage(
                mid, thread_id or mid, raw, set(labels), internal_ms or self._clock_ms, 0
            )
            self.messages[mid] = msg
            self._order = None
            self._record("messagesAdded", msg)
            return mid

    def delete(self, mid: str) -> None:
        with self.lock:
            msg = self.messages.pop(mid)
            self._order = None
            self._record("messagesDeleted", msg)

    def vanish(self, mid: str) -> None:
        """Drop a message without a history record (a get then answers 404)."""
        with self.lock:
            del self.messages[mid]
            self._order = None

    def modify(self, mid: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        with self.lock:
            msg = self.messages[mid]
            added, removed = set(add) - msg.labels, set(remove) & msg.labels
            msg.labels = (msg.labels | added) - removed
            if added:
                self._record("labelsAdded", msg, added)
            if removed:
                self._record("labelsRemoved", msg, removed)

    def expire_history(self) -> None:
        """Every historyId handed out so far becomes too old (history.list answers 404)."""
        with self.lock:
            self.min_history = self._new_history()

    def expire_tokens(self) -> None:
        """Every access token handed out so far answers 401 from now on."""
        with self.lock:
            self.access.clear()

    def fail(
        self,
        match: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        reason: str = "",
    ) -> None:
        default = {429: "rateLimitExceeded", 403: "userRateLimitExceeded"}.get(
            status, "backendError"
        )
        with self.lock:
            self.faults.append(Fault(match, status, times, retry_after, reason or default))

    def corrupt_raw(self, mid: str) -> None:
        self.corrupt.add(mid)

    def omit_from_batch(self, mid: str) -> None:
        self.omitted.add(mid)

    # ------------------------------------------------------------------- OAuth model
    def register_client(self) -> tuple[str, str]:
        client_id = f"{secrets.token_hex(6)}.apps.googleusercontent.com"
        self.clients[client_id] = secrets.token_urlsafe(18)
        return client_id, self.clients[client_id]

    def client_json(self, client_id: str, kind: str = "installed") -> str:
        """The JSON the Cloud console lets one download for an OAuth client."""
        return json.dumps(
            {
                kind: {
                    "client_id": client_id,
                    "client_secret": self.clients[client_id],
                    "auth_uri": self.url + "o/oauth2/auth",
                    "token_uri": self.url + "token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )

    def issue_refresh_token(self, client_id: str, scopes: Iterable[str] = (READONLY,)) -> str:
        token = "1//" + secrets.token_urlsafe(24)
        self.refresh[token] = (client_id, frozenset(scopes))
        return token

    def revoke(self, refresh_token: str) -> None:
        self.refresh.pop(refresh_token, None)

    def register_service_account(
        self, key: rsa.RSAPrivateKey, delegated_scopes: Iterable[str] = (READONLY,)
    ) -> str:
        """A service-account key file (JSON) whose token_uri is this fake."""
        email = f"sync-{secrets.token_hex(3)}@project.iam.gserviceaccount.com"
        self.service_accounts[email] = (key.public_key(), frozenset(delegated_scopes))
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": "project",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": email,
            "client_id": "1234567890",
            "token_uri": self.url + "token",
        }
        return json.dumps(info)

    def approve_device(self, user_code: str, grant: bool = True) -> None:
        for device in self.devices.values():
            if device["user_code"] == user_code:
                device["state"] = "approved" if grant else "denied"

    # ---------------------------------------------------------------------- dispatch
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query)
        with self.lock:
            self.calls[_route(method, path)] += 1
            for fault in self.faults:
                if fault.match in path and fault.times > 0:
                    fault.times -= 1
                    extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return api_error(fault.status, "injected fault", fault.reason, extra)
            if path == "/token":
                return self._token({k: v[0] for k, v in parse_qs(body.decode()).items()})
            if path == "/device/code":
                return self._device_code({k: v[0] for k, v in parse_qs(body.decode()).items()})
            if path == "/o/oauth2/auth":
                return self._authorize({k: v[0] for k, v in query.items()})
            if path == "/batch/gmail/v1" and method == "POST":
                return self._batch(headers, body)
            if path.startswith("/gmail/v1/users/") and method == "GET":
                return self._api(path, query, headers)
            return api_error(404, f"no route {method} {path}", "notFound")

    def _api(self, path: str, q: dict[str, list[str]], headers: Mapping[str, str]) -> Response:
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        grant = self.access.get(token)
        if grant is None:
            return api_error(
                401,
                "Request had invalid authentication credentials.",
                "authError",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        scopes, user = grant
        parts = path.split("/")[4:]
        if user is None:  # a service account's own token: it has no mailbox
            return api_error(400, "Precondition check failed.", "failedPrecondition")
        if parts[0] not in ("me", self.email) or user != self.email:
            return api_error(403, "Delegation denied", "forbidden")
        if not scopes & READ_SCOPES:
            return api_error(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )
        match parts[1:]:
            case ["profile"]:
                total = len(self.messages)
                return _json(
                    {
                        "emailAddress": self.email,
                        "messagesTotal": total,
                        "threadsTotal": total,
                        "historyId": str(self._hist),
                    }
                )
            case ["labels"]:
                labels = [{"id": x, "name": x, "type": "system"} for x in SYSTEM_LABELS]
                labels += [
                    {"id": k, "name": v, "type": "user"} for k, v in self.user_labels.items()
                ]
                return _json({"labels": labels})
            case ["messages"]:
                return self._list(q)
            case ["messages", mid]:
                return self._get(mid, q, scopes)
            case ["history"]:
                return self._history(q)
        return api_error(404, "Not Found", "notFound")

    def _query(self, text: str) -> Callable[[set[str]], bool]:
        """The `q` subset documented in the module docstring. Raises ValueError otherwise."""
        tests: list[tuple[bool, str]] = []
        names = {v.lower(): k for k, v in self.user_labels.items()}
        for token in text.split():
            negate = token.startswith("-")
            op, _, value = token.lstrip("-").partition(":")
            value = value.lower()
            if op == "in" and value in ("inbox", "sent", "spam", "trash"):
                tests.append((negate, value.upper()))
            elif op == "category" and value in (
                "personal",
                "social",
                "promotions",
                "updates",
                "forums",
            ):
                tests.append((negate, f"CATEGORY_{value.upper()}"))
            elif op == "label" and (value in names or value.upper() in SYSTEM_LABELS):
                tests.append((negate, names.get(value, value.upper())))
            else:
                raise ValueError(token)
        return lambda labels: all((label in labels) != negate for negate, label in tests)

    def _list(self, q: dict[str, list[str]]) -> Response:
        wanted = set(q.get("labelIds", []))
        spam_trash = q.get("includeSpamTrash", ["false"])[0] == "true"
        size = min(int(q.get("maxResults", ["100"])[0]), 500)
        try:
            matches = self._query(q.get("q", [""])[0])
        except ValueError as exc:
            return api_error(400, f"Invalid search query: {exc}", "invalidArgument")
        if self._order is None:
            self._order = sorted((m.internal_ms, m.id) for m in self.messages.values())
        index = len(self._order)
        if "pageToken" in q:
            try:
                ms, mid = json.loads(_unb64(q["pageToken"][0]))
                index = bisect.bisect_left(self._order, (int(ms), str(mid)))
            except (ValueError, TypeError):
                return api_error(400, "Invalid pageToken", "invalidArgument")
        found: list[FakeMessage] = []
        more = False
        for _, mid in reversed(self._order[:index]):
            m = self.messages[mid]
            visible = spam_trash or not m.labels & {"SPAM", "TRASH"}
            if visible and wanted <= m.labels and matches(m.labels):
                if len(found) == size:
                    more = True
                    break
                found.append(m)
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if found:
            answer["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in found]
        if more:
            answer["nextPageToken"] = b64url(
                json.dumps([found[-1].internal_ms, found[-1].id]).encode()
            )
        return _json(answer)

    def _get(self, mid: str, q: dict[str, list[str]], scopes: frozenset[str]) -> Response:
        m = self.messages.get(mid)
        if m is None:
            return api_error(404, "Requested entity was not found.", "notFound")
        fmt = q.get("format", ["full"])[0]
        if fmt in ("raw", "full") and not scopes & BODY_SCOPES:
            return api_error(403, f"Metadata scope doesn't allow format {fmt.upper()}", "forbidden")
        data = m.data()
        out: dict[str, Any] = {
            "id": m.id,
            "threadId": m.thread_id,
            "labelIds": sorted(m.labels),
            "snippet": "",
            "sizeEstimate": len(data),
            "historyId": str(m.history_id),
            "internalDate": str(m.internal_ms),
        }
        if fmt == "raw":
            out["raw"] = "#not base64url#" if mid in self.corrupt else b64url(data)
        elif fmt in ("metadata", "full"):
            parsed = HeaderParser(policy=compat32).parsestr(data.decode("utf-8", "replace"))
            only = {h.lower() for h in q.get("metadataHeaders", [])}
            headers = [
                {"name": k, "value": str(v).replace("\r\n", "").replace("\n", "")}
                for k, v in parsed.items()
                if not only or k.lower() in only
            ]
            out["payload"] = {"mimeType": parsed.get_content_type(), "headers": headers}
        return _json(out)

    def _history(self, q: dict[str, list[str]]) -> Response:
        if "startHistoryId" not in q:
            return api_error(400, "Missing startHistoryId", "invalidArgument")
        start = int(q["startHistoryId"][0])
        if start < self.min_history:
            return api_error(404, "Requested entity was not found.", "notFound")
        kinds = {HISTORY_KINDS[t] for t in q.get("historyTypes", [])} or set(HISTORY_KINDS.values())
        size = min(int(q.get("maxResults", ["100"])[0]), 500)
        offset = int(q.get("pageToken", ["0"])[0])
        records = []
        for rec in self.history:
            if int(rec["id"]) > start and kinds & rec.keys():
                records.append(
                    {k: v for k, v in rec.items() if k in kinds or k in ("id", "messages")}
                )
        answer: dict[str, Any] = {"historyId": str(self._hist)}
        if records[offset : offset + size]:
            answer["history"] = records[offset : offset + size]
        if offset + size < len(records):
            answer["nextPageToken"] = str(offset + size)
        return _json(answer)

    def _batch(self, headers: Mapping[str, str], body: bytes) -> Response:
        envelope = f"Content-Type: {headers.get('content-type', '')}\r\n\r\n"
        outer = Parser(policy=compat32).parsestr(envelope + body.decode())
        if not outer.is_multipart():
            return api_error(400, "batch body is not multipart/mixed", "badRequest")
        parts: list[Message] = list(outer.get_payload())  # type: ignore[arg-type]
        if len(parts) > 100:
            return api_error(400, "A batch holds at most 100 calls", "badRequest")
        boundary = f"batch_{secrets.token_hex(8)}"
        chunks: list[bytes] = []
        for part in parts:
            request_line, _, rest = str(part.get_payload()).partition("\n")
            method, target, _ = request_line.split(" ", 2)
            inner = HeaderParser(policy=compat32).parsestr(rest)
            if any(f"/messages/{mid}?" in target for mid in self.omitted):
                continue
            status, rheaders, data = self.handle(
                method, target, {k.lower(): v for k, v in inner.items()}, b""
            )
            head = "".join(f"{k}: {v}\r\n" for k, v in rheaders.items())
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{str(part['Content-ID'])[1:-1]}>\r\n\r\n"
                f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\n{head}"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
        chunks.append(f"--{boundary}--\r\n".encode())
        return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, b"".join(chunks)

    # ----------------------------------------------------------------- OAuth endpoints
    def _issue(
        self, scopes: frozenset[str], user: str | None, refresh: str | None = None
    ) -> Response:
        token = "ya29." + secrets.token_urlsafe(24)
        self.access[token] = (scopes, user)
        out = {
            "access_token": token,
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": " ".join(sorted(scopes)),
        }
        return _json({**out, "refresh_token": refresh} if refresh else out)

    def _client_ok(self, form: Mapping[str, str]) -> bool:
        return self.clients.get(form.get("client_id", "")) == form.get("client_secret")

    def _token(self, form: dict[str, str]) -> Response:
        grant = form.get("grant_type", "")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt(form.get("assertion", ""))
        if not self._client_ok(form):
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if grant == "refresh_token":
            held = self.refresh.get(form.get("refresh_token", ""))
            if held is None or held[0] != form["client_id"]:
                return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            if self.rotate_refresh:  # hand out a new refresh token, the old one dies
                del self.refresh[form["refresh_token"]]
                return self._issue(held[1], self.email, self.issue_refresh_token(*held))
            return self._issue(held[1], self.email)
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if code is None or code["redirect_uri"] != form.get("redirect_uri"):
                return oauth_error(400, "invalid_grant", "Malformed auth code.")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != code["challenge"]:
                return oauth_error(400, "invalid_grant", "Invalid code verifier.")
            return self._issue(
                code["scopes"],
                self.email,
                self.issue_refresh_token(form["client_id"], code["scopes"]),
            )
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            device = self.devices.get(form.get("device_code", ""))
            if device is None:
                return oauth_error(400, "invalid_grant", "Malformed device code.")
            if device["state"] == "pending":  # Google answers 428 while the user has not acted
                return oauth_error(428, "authorization_pending", "Precondition Required")
            if device["state"] == "denied":
                return oauth_error(403, "access_denied", "Forbidden")
            rt = self.issue_refresh_token(form["client_id"], device["scopes"])
            return self._issue(device["scopes"], self.email, rt)
        return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _jwt(self, assertion: str) -> Response:
        try:
            head, payload, signature = assertion.split(".")
            claims = json.loads(_unb64(payload))
        except ValueError:
            return oauth_error(400, "invalid_grant", "Invalid JWT.")
        account = self.service_accounts.get(claims.get("iss", ""))
        if account is None:
            return oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        try:
            account[0].verify(
                _unb64(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        # google-auth always addresses the assertion to Google's endpoint, whatever token_uri.
        audiences = ("https://oauth2.googleapis.com/token", self.url + "token")
        if claims.get("aud") not in audiences or claims.get("exp", 0) < time.time():
            return oauth_error(
                400, "invalid_grant", "Invalid JWT: Token must be a short-lived token"
            )
        scopes, subject = frozenset(claims.get("scope", "").split()), claims.get("sub")
        if subject is not None:
            if not scopes <= account[1]:
                return oauth_error(
                    401,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this "
                    "method, or client not authorized for any of the scopes "
                    "requested.",
                )
            if subject != self.email:
                return oauth_error(400, "invalid_grant", "Invalid email or User ID")
        return self._issue(scopes, subject)

    def _authorize(self, q: dict[str, str]) -> Response:
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") not in self.clients or not redirect.startswith("http://127.0.0.1:"):
            return 400, {"Content-Type": "text/plain"}, b"Error 400: invalid_request"
        if q.get("code_challenge_method") != "S256" or q.get("response_type") != "code":
            return 400, {"Content-Type": "text/plain"}, b"Error 400: invalid_request (PKCE)"
        if self.consent == "deny":
            answer = {"error": "access_denied", "state": q.get("state", "")}
        else:
            asked = frozenset(q.get("scope", "").split())
            scopes = asked if self.consent == "grant" else frozenset(self.consent.split())
            code = "4/" + secrets.token_urlsafe(16)
            self.codes[code] = {
                "redirect_uri": redirect,
                "challenge": q.get("code_challenge"),
                "scopes": scopes,
            }
            answer = {"code": code, "state": q.get("state", ""), "scope": " ".join(sorted(scopes))}
        return 302, {"Location": f"{redirect}?{urlencode(answer)}"}, b""

    def _device_code(self, form: dict[str, str]) -> Response:
        if form.get("client_id") not in self.clients:
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        scopes = frozenset(form.get("scope", "").split())
        gmail = sorted(s for s in scopes if "gmail" in s or s == "https://mail.google.com/")
        if gmail and not self.device_allows_gmail:
            return oauth_error(400, "invalid_scope", f"Invalid device flow scope: {gmail[0]}")
        device_code, user_code = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
        self.devices[device_code] = {"user_code": user_code, "scopes": scopes, "state": "pending"}
        return _json(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_url": self.url + "device",
                "expires_in": 1800,
                "interval": self.device_interval,
            }
        )


def _route(method: str, path: str) -> str:
    if path.startswith("/gmail/v1/users/"):
        parts = path.split("/")[5:]
        return "messages.get" if parts[:1] == ["messages"] and len(parts) == 2 else ".".join(parts)
    return path.strip("/").replace("/", ".") or method


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle plus the client's
        # delayed ACK would add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake: GmailFake = self.server.fake  # type: ignore[attr-defined]
        status, out_headers, data = fake.handle(self.command, self.path, headers, body)
        self.send_response(status)
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    """Serve a synthetic mailbox from this process; print its credentials as one JSON line,
    then serve until stdin closes (the benchmark's way to run the fake on its own core)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bulk", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=15_000, help="average message size in bytes")
    args = ap.parse_args()
    fake = GmailFake()
    for i in range(args.bulk):
        labels = ("SENT",) if i % 4 == 0 else ("INBOX", "UNREAD") if i % 3 else ("INBOX",)
        raw = functools.partial(bulkmail.synthetic_message, i, args.size)
        fake.append(raw, labels, thread_id=f"t{i // 3:015x}")
    client_id, _ = fake.register_client()
    creds = {
        "url": fake.url,
        "client_json": fake.client_json(client_id),
        "refresh_token": fake.issue_refresh_token(client_id),
    }
    print(json.dumps(creds), flush=True)
    sys.stdin.read()
    fake.close()


if __name__ == "__main__":
    main()
