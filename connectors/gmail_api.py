"""Gmail REST plumbing for `connectors.gmail`: credentials, the client, retries, batches, errors.

- The client is google-api-python-client built from the discovery document shipped inside the
  package (`static_discovery=True`: no network), over httplib2 with google-auth
  (`google_auth_httplib2.AuthorizedHttp`). An expired access token (401) is refreshed and the
  request replayed by that layer; in a batch, googleapiclient re-sends the parts that
  answered 401 after a refresh.
- `api_endpoint` may point elsewhere (a proxy, a test server), but batches do not follow it
  on their own: `new_batch_http_request()` keeps https://gmail.googleapis.com/batch. So each
  `BatchHttpRequest` gets an explicit `batch_uri` derived from the endpoint.
- Retries (https://developers.google.com/gmail/api/guides/handle-errors): 429, 5xx and 403
  with reason rateLimitExceeded / userRateLimitExceeded are retried with exponential backoff
  (tenacity), honouring Retry-After. A Retry-After longer than `max_wait` is not slept
  through: it is raised at once as `TransientError(retry_after)` for the scheduler. The
  library's own `num_retries` stays 0: it ignores Retry-After and never retries batch parts.
- Batch parts that fail transiently are re-queued into the next batch after a backoff; a 404
  part is a message deleted since it was listed. A batch answer the library cannot read (a
  missing part makes googleapiclient raise KeyError; a malformed multipart, BatchError) is
  retried as single requests. Batching saves HTTP round trips, not quota: a batch of n gets
  costs n x 5 units (https://developers.google.com/gmail/api/guides/batch).
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
import tenacity
from google.auth import credentials as ga_credentials
from googleapiclient import discovery, errors  # type: ignore[import-untyped]
from googleapiclient import http as gapi_http

from connectors import gmail_auth
from mailmanager import spi

log = logging.getLogger(__name__)
T = TypeVar("T")

READONLY = "https://www.googleapis.com/auth/gmail.readonly"
METADATA = "https://www.googleapis.com/auth/gmail.metadata"
DEFAULT_ENDPOINT = "https://gmail.googleapis.com/"
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_NETWORK_ERRORS = (
    google.auth.exceptions.TransportError,
    httplib2.HttpLib2Error,
    http.client.HTTPException,
    OSError,  # refused, reset, timed out
)
Credentials = ga_credentials.Credentials


class RequestError(spi.ConnectorError):
    """Raised when Gmail refuses a request for good (a 4xx other than auth and throttling).

    `status` is the HTTP status, `reason` Google's error reason (e.g. "invalidArgument").
    """

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


class NotFoundError(RequestError):
    """Raised on HTTP 404: an expired historyId, or a message deleted meanwhile."""


@dataclass(frozen=True)
class ApiSettings:
    """How hard to try: HTTP timeout (s), tries per call, longest Retry-After slept through
    (s), gets per batch (Google advises at most 50, allows 100)."""

    timeout: float = 60
    attempts: int = 5
    max_wait: float = 60
    batch_size: int = 50


def _details(exc: errors.HttpError) -> tuple[int, str, str]:
    status = int(exc.resp.status)
    try:
        err = json.loads(exc.content)["error"]
        reason = str((err.get("errors") or [{}])[0].get("reason", "") or err.get("status", ""))
        return status, reason, str(err.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return status, "", str(exc.content[:200])


def _retry_after(resp: Any) -> float | None:
    value = resp.get("retry-after") if resp is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:  # an HTTP-date: rare from Google; fall back to our backoff
        return None


class _Batch(gapi_http.BatchHttpRequest):  # type: ignore[misc]
    """`BatchHttpRequest` writing each part with plain string formatting.

    The library writes every part through `email.generator`, folding each header line with
    `email.header` (about 1 ms per part: most of a batch's client-side cost). The part is
    the same application/http text: request line, the request's headers with the
    credentials applied, Host, then the body (https://developers.google.com/gmail/api/guides/batch).
    """

    def _serialize_request(self, request: Any) -> str:
        url = urlsplit(request.uri)
        headers = dict(request.headers)
        creds = getattr(request.http, "credentials", None)
        if creds is not None:
            creds.apply(headers)
        content_type = headers.pop("content-type", "application/json")
        lines = [f"{request.method} {url.path}{'?' + url.query if url.query else ''} HTTP/1.1"]
        lines += [f"Content-Type: {content_type}", "MIME-Version: 1.0"]
        lines += [f"{k}: {v}" for k, v in headers.items()] + [f"Host: {url.netloc}"]
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        if body is not None:
            lines.append(f"content-length: {len(body)}")
        return "\n".join(lines) + "\n\n" + (body or "")


class GmailApi:
    """One authorised Gmail client for one mailbox; not thread-safe (one per connector).

    `auth_hint(code)` turns an OAuth error code (invalid_grant, unauthorized_client...) into
    the fix to print; `sleep` is replaceable for tests.
    """

    def __init__(
        self,
        credentials: Credentials,
        endpoint: str,
        settings: ApiSettings = ApiSettings(),
        *,
        auth_hint: Callable[[str], str] = lambda code: "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.credentials = credentials
        self.endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self.batch_uri = self.endpoint + "batch/gmail/v1"
        self.http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=settings.timeout)
        )
        self.attempts, self.max_wait = max(settings.attempts, 1), settings.max_wait
        self.batch_size = min(max(settings.batch_size, 1), 100)
        self.auth_hint, self.sleep = auth_hint, sleep
        self._users: Any = None
        self._messages: Any = None

    @property
    def users(self) -> Any:
        """The discovery-built `users()` resource (built on first use)."""
        if self._users is None:
            service = discovery.build(
                "gmail",
                "v1",
                http=self.http,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self.endpoint},
            )
            self._users = service.users()
        return self._users

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ errors
    def translate(self, exc: BaseException, what: str) -> spi.ConnectorError:
        """The spi error for a library error raised while doing `what`."""
        if isinstance(exc, errors.HttpError):
            status, reason, message = _details(exc)
            text = f"Gmail {what}: HTTP {status} {reason}: {message}".replace("  ", " ")
            if status == 429 or status >= 500 or (status == 403 and reason in _RATE_REASONS):
                return spi.TransientError(text, _retry_after(exc.resp))
            if status == 401:
                return spi.AuthError(f"{text}; the access token was refused even after a refresh")
            if status == 403 and reason == "insufficientPermissions":
                return spi.AuthError(f"{text}; {self.auth_hint('insufficientPermissions')}")
            if status == 400 and reason == "failedPrecondition":
                return spi.AuthError(f"{text}; {self.auth_hint('failedPrecondition')}")
            if status == 403:
                return spi.AuthError(f"{text}; {self.auth_hint(reason) or 'access refused'}")
            if status == 404:
                return NotFoundError(text, status, reason)
            return RequestError(text, status, reason)
        if isinstance(exc, google.auth.exceptions.RefreshError):
            code, desc = gmail_auth.oauth_error(exc)
            if getattr(exc, "retryable", False):
                return spi.TransientError(f"Gmail token refresh: {code}: {desc}")
            hint = self.auth_hint(code)
            return spi.AuthError(
                f"token refused: {code or 'error'}: {desc}" + (f"; {hint}" if hint else "")
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return spi.TransientError(f"Gmail {what}: {type(exc).__name__}: {exc}")
        return spi.ConnectorError(f"Gmail {what}: {type(exc).__name__}: {exc}")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, spi.TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return float(min(0.5 * 2 ** (state.attempt_number - 1), 30))

    def _retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, spi.TransientError) and (exc.retry_after or 0) <= self.max_wait

    def run(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` (one HTTP exchange), retrying transient failures (module docstring).

        Raises `spi.TransientError` once retries are spent, `spi.AuthError`, `NotFoundError`,
        `RequestError`. Errors that are not the library's (KeyError...) pass through.
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._retryable),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda s: log.info(
                "gmail retry",
                extra={"action": "gmail_retry", "what": what, "attempt": s.attempt_number},
            ),
        )
        for attempt in retrying:
            with attempt:
                try:
                    return fn()
                except (errors.HttpError, google.auth.exceptions.GoogleAuthError) as exc:
                    raise self.translate(exc, what) from exc
                except _NETWORK_ERRORS as exc:
                    raise self.translate(exc, what) from exc
        raise AssertionError("unreachable")

    def call(self, what: str, build: Callable[[Any], Any]) -> dict[str, Any]:
        """`build(users)` returns a request; execute it with retries (see `run`)."""
        result: dict[str, Any] = self.run(what, lambda: build(self.users).execute(num_retries=0))
        return result

    # ------------------------------------------------------------------ batched gets
    def _get_request(self, mid: str, fmt: str) -> Any:
        # users().messages() builds every method of the resource anew (~7 ms): build it once.
        if self._messages is None:
            self._messages = self.users.messages()
        return self._messages.get(userId="me", id=mid, format=fmt)

    def get_one(self, mid: str, fmt: str) -> dict[str, Any]:
        """One messages.get, not batched (see `run` for what it raises)."""
        return self.call("messages.get", lambda u: self._get_request(mid, fmt))

    def get_many(self, ids: Sequence[str], fmt: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """messages.get(format=fmt) for every id, in batches: (answers by id, ids gone).

        Raises `spi.TransientError` when some still fail after the retries, `spi.AuthError`.
        """
        found: dict[str, dict[str, Any]] = {}
        gone: set[str] = set()
        pending = list(dict.fromkeys(ids))
        for attempt in range(self.attempts):
            failed: dict[str, spi.TransientError] = {}
            for start in range(0, len(pending), self.batch_size):
                self._batch(pending[start : start + self.batch_size], fmt, found, gone, failed)
            if not failed:
                return found, gone
            pending = list(failed)
            waits = [e.retry_after for e in failed.values() if e.retry_after is not None]
            wait = max(waits) if waits else min(0.5 * 2**attempt, 30)
            first = next(iter(failed.values()))
            if wait > self.max_wait or attempt == self.attempts - 1:
                raise spi.TransientError(
                    f"{len(pending)} message(s) still failing after {attempt + 1} tries: {first}",
                    first.retry_after,
                )
            log.info(
                "gmail batch retry",
                extra={"action": "gmail_batch_retry", "failed": len(failed), "wait": wait},
            )
            self.sleep(wait)
        return found, gone

    def _batch(
        self,
        group: Sequence[str],
        fmt: str,
        found: dict[str, dict[str, Any]],
        gone: set[str],
        failed: dict[str, spi.TransientError],
    ) -> None:
        problems: dict[str, BaseException] = {}

        def callback(request_id: str, response: Any, exception: BaseException | None) -> None:
            if exception is None:
                found[request_id] = response
            else:
                problems[request_id] = exception

        batch = _Batch(callback=callback, batch_uri=self.batch_uri)
        for mid in group:
            batch.add(self._get_request(mid, fmt), request_id=mid)
        try:
            self.run("batch messages.get", lambda: batch.execute(http=self.http))
        except (KeyError, errors.BatchError) as exc:
            log.warning(
                "gmail batch answer unreadable; fetching one by one",
                extra={"action": "gmail_batch_malformed", "error": type(exc).__name__},
            )
            for mid in group:
                if mid in found or mid in problems:
                    continue
                try:
                    found[mid] = self.get_one(mid, fmt)
                except NotFoundError:
                    gone.add(mid)
                except spi.TransientError as err:
                    failed[mid] = err
        for mid, problem in problems.items():
            error = self.translate(problem, "messages.get")
            if isinstance(error, NotFoundError):
                gone.add(mid)
            elif isinstance(error, spi.TransientError):
                failed[mid] = error
            else:
                raise error from problem
