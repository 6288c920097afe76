"""HTTP to Microsoft Graph for the graph connector: retries, throttling, errors translated.

- Every request carries `Prefer: IdType="ImmutableId"`, so message ids survive moves between
  folders (https://learn.microsoft.com/graph/outlook-immutable-id).
- Throttling: Outlook allows 4 concurrent requests per app and mailbox and about 10,000 per
  10 minutes (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits).
  A process-wide semaphore per (Graph host, mailbox) keeps at most `MAX_CONCURRENCY`
  requests in flight, whatever the number of connector instances. 429 and 503 answers carry
  `Retry-After` (seconds): we sleep that long (tenacity) when it is at most `max_retry_wait`,
  else give up at once with `spi.TransientError(retry_after)` so the daemon reschedules.
  Other 5xx and dropped connections back off exponentially.
- 401 (token expired or revoked mid-sync): drop the cached token, get a new one, retry once.
- Other errors become `GraphError` (status, Graph error code) for the caller to interpret;
  403 ErrorAccessDenied becomes `GraphAuthError` (missing Mail.Read, consent or RBAC scope).
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

from connectors.graph.auth import GraphAuthError, TokenSource
from mailmanager import spi

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 4
IMMUTABLE_IDS = 'IdType="ImmutableId"'
_SLOTS: dict[tuple[str, str], threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()
_RETRYABLE = {429, 500, 502, 503, 504}
_DENIED = {"erroraccessdenied", "authorization_requestdenied", "accessdenied"}


class GraphError(spi.ConnectorError):
    """Raised when Graph answers an error retrying will not fix (4xx other than 401/429).

    `status` is the HTTP status, `code` Graph's error code ("ErrorItemNotFound", ...).
    """

    def __init__(self, status: int, code: str, message: str, url: str = "") -> None:
        super().__init__(f"Graph {status} {code}: {message}" + (f" ({url})" if url else ""))
        self.status = status
        self.code = code


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a Graph error body: {"error": {"code": ..., "message": ...}}."""
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return str(err.get("code") or ""), str(err.get("message") or "")[:300]
        if isinstance(err, str):
            return err, str(body.get("error_description") or "")[:300]
    except ValueError:
        pass
    return "", response.text[:200]


def retry_after(response: httpx.Response) -> float | None:
    """Seconds asked by `Retry-After` (delay-seconds or HTTP-date, RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000" in the date: UTC, RFC 5322 §3.3
            when = when.replace(tzinfo=UTC)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def slot(graph_url: str, user: str) -> threading.BoundedSemaphore:
    """The process-wide concurrency slot of one mailbox."""
    key = (urlsplit(graph_url).netloc.lower(), user.lower())
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(key, threading.BoundedSemaphore(MAX_CONCURRENCY))


class _StopOnLongWait(tenacity.stop.stop_base):
    """Stop retrying when the server asks to wait longer than we will wait in place."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        asked = exc.retry_after if isinstance(exc, spi.TransientError) else None
        return asked is not None and asked > self.limit


class _Connections:
    """Keep-alive HTTP/1.1 connections to one origin through `http.client`: the hot path
    (one `$value` GET per message) costs a fraction of the CPU of httpx + h11. Answers are
    handed back as `httpx.Response` (content decoded as httpx would), errors raised as
    OSError / http.client.HTTPException. Used only when no proxy is configured in the
    environment (httpx honours those). A reused connection the server has closed is
    retried once on a new one (GETs only, as httpcore drops expired connections)."""

    def __init__(self, origin: str, context: ssl.SSLContext, timeout: float) -> None:
        parts = urlsplit(origin)
        self.tls, self.host, self.port = parts.scheme == "https", parts.hostname or "", parts.port
        self.context, self.timeout = context, timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def get(self, target: str, headers: Mapping[str, str]) -> httpx.Response:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._connect()
            try:
                conn.request("GET", target, headers=dict(headers))
                answer = conn.getresponse()
                body = answer.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                conn = None
                if not reused:
                    raise
                reused = False
                continue
            except BaseException:
                conn.close()
                raise
            break
        if answer.will_close:
            conn.close()
        else:
            with self._lock:
                if len(self._idle) < MAX_CONCURRENCY:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=body)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class GraphClient:
    """Authenticated GETs against one Graph base URL (module docstring). Thread-safe."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        user: str,
        verify: str | bool = True,
        timeout: float = 60.0,
        max_retry_wait: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base_url))
        self.tokens = tokens
        self.timeout = timeout
        self.max_retry_wait = max_retry_wait
        self.retry_attempts, self.retry_wait = 5, 0.5  # backoff 0.5, 1, 2, 4 s without Retry-After
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._slot = slot(self.base_url, user)
        self._http: httpx.Client | None = None
        self._fast: _Connections | None = None
        if not urllib.request.getproxies():  # else httpx, which applies them
            context = httpx.create_ssl_context(self._verify)  # httpx's own trust (certifi)
            self._verify = context
            self._fast = _Connections(self.origin, context, timeout)
        self._headers = {
            "Accept": "*/*",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "mailmanager-graph/0.1",
        }
        self._lock = threading.Lock()
        self._token: str | None = None

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    verify=self._verify,
                    timeout=httpx.Timeout(self.timeout),
                    limits=httpx.Limits(
                        max_connections=MAX_CONCURRENCY, max_keepalive_connections=MAX_CONCURRENCY
                    ),
                    headers={"User-Agent": "mailmanager-graph/0.1"},
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None
        if self._fast is not None:
            self._fast.close()

    def _send(
        self, url: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        fast = self._fast
        if fast is None:
            return self._client().get(url, params=params, headers=headers)
        parsed = httpx.URL(url)  # the request target exactly as httpx would send it
        if params:
            parsed = parsed.copy_merge_params(params)
        target = parsed.raw_path.decode("ascii")
        return fast.get(target, {**self._headers, **headers})

    def url(self, path_or_url: str) -> str:
        """An absolute URL; links handed back by Graph must stay on its origin (no token
        is ever sent elsewhere). Raises GraphError otherwise."""
        if path_or_url.startswith("/"):
            return self.base_url + path_or_url
        if not path_or_url.startswith(self.origin + "/"):
            raise GraphError(0, "ForeignLink", "link outside graph_url", path_or_url[:100])
        return path_or_url

    def _bearer(self, refused: str | None) -> str:
        """The token to send; `refused` is one Graph just answered 401 to."""
        with self._lock:
            token = self._token
            if token is not None and token != refused:
                return token
            if refused is not None:
                self.tokens.invalidate()
            self._token = token = self.tokens.token()
            return token

    def _once(
        self, url: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        """One GET, re-authenticating once on 401. Raises TransientError to be retried."""
        refused: str | None = None
        prefer = ", ".join(filter(None, [IMMUTABLE_IDS, headers.get("Prefer")]))
        for renew in (False, True):
            token = self._bearer(refused)
            sent = {**headers, "Prefer": prefer, "Authorization": f"Bearer {token}"}
            try:
                with self._slot:
                    response = self._send(url, params, sent)
            except (httpx.TransportError, OSError, http.client.HTTPException) as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise spi.ConnectorError(
                        f"TLS to {self.origin}: certificate not trusted ({exc}); "
                        "set ssl_ca_file for a private CA"
                    ) from exc
                raise spi.TransientError(f"Graph unreachable: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 401:
                break
            refused = token
            code, message = error_of(response)
            log.info(
                "graph token refused, renewing",
                extra={"action": "graph_token_renew", "code": code, "mailbox": self.tokens.mailbox},
            )
            if renew:
                raise GraphAuthError(
                    f"Graph refused a fresh token: {code} {message}",
                    error=code,
                    fix="check tenant_id and that the app is allowed to read this mailbox",
                )
        status = response.status_code
        if status in _RETRYABLE:
            code, message = error_of(response)
            raise spi.TransientError(
                f"Graph {status} {code}: {message}".strip(), retry_after(response)
            )
        if status >= 400:
            code, message = error_of(response)
            if status == 403 and code.lower() in _DENIED:
                raise GraphAuthError(
                    f"Graph 403 {code}: {message}",
                    error=code,
                    fix="the app needs the Mail.Read permission with admin consent, and an "
                    "RBAC scope (or access policy) that covers this mailbox",
                )
            raise GraphError(status, code, message, url.split("?")[0][-120:])
        return response

    def get(
        self,
        path_or_url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET with retries (module docstring).

        Raises TransientError after the last try or when Retry-After is too long,
        GraphAuthError, GraphError, ConnectorError (TLS).
        """
        url = self.url(path_or_url)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            asked = exc.retry_after if isinstance(exc, spi.TransientError) else None
            if asked is not None:
                return asked
            return float(min(self.retry_wait * 2 ** (state.attempt_number - 1), 30.0))

        def sleep_log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "graph retry",
                extra={"action": "graph_retry", "attempt": state.attempt_number, "error": str(exc)},
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry_attempts)
            | _StopOnLongWait(self.max_retry_wait),
            wait=wait,
            retry=tenacity.retry_if_exception_type(spi.TransientError),
            before_sleep=sleep_log,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._once(url, params, headers or {})
        raise AssertionError("unreachable")

    def get_json(
        self,
        path_or_url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET a JSON object. Raises as `get`, and TransientError on a body that is not JSON
        (a proxy's error page)."""
        response = self.get(path_or_url, params, headers)
        try:
            body = response.json()
        except ValueError as exc:
            raise spi.TransientError(f"Graph answered non-JSON: {response.text[:100]!r}") from exc
        if not isinstance(body, dict):
            raise spi.TransientError("Graph answered JSON that is not an object")
        return body
