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

import copy
import email.message
import http.client
import json
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.feedparser import FeedParser
from typing import Any, TypeVar
from urllib.parse import urlsplit

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
import tenacity
from google.auth import credentials as ga_credentials
from googleapiclient import discovery, errors  # type: ignore[import-untyped]
from googleapiclient import http as gapi_http

from connectors.gmail import auth as gmail_auth
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
# messages.get requests are copies of one discovery-built request with the id swapped in;
# only for ids that need no URL escaping (Gmail's are hex), the rest go through discovery.
_PLACEHOLDER = "MailmanagerIdPlaceholder0"
_PLAIN_ID = re.compile(r"[A-Za-z0-9]+")
_TOKEN_WIDTH = len(repr(sys.maxsize - 1))
_PART_HEAD = (
    "Content-Type: application/http\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n"
)


def _boundary(text: str) -> str:
    """A multipart boundary as `email.generator` makes them, found nowhere in `text`
    (the generator's own check compiles a new regular expression per batch)."""
    while True:
        token = random.randrange(sys.maxsize)
        boundary = f"==============={token:0{_TOKEN_WIDTH}d}=="
        if boundary not in text:
            return boundary


class _Irregular(Exception):
    """A batch answer the quick reader leaves to the library's own parser."""


def _fields(head: bytes) -> list[tuple[str, str]]:
    """Header fields of a CRLF header block, when every line is a plain `Name: value`."""
    fields: list[tuple[str, str]] = []
    if not head:
        return fields
    for line in head.decode("utf-8").split("\r\n"):
        name, colon, value = line.partition(":")
        if (
            not colon
            or not name
            or not name.isascii()
            or not name.isprintable()
            or " " in name
            or "\r" in line
            or "\n" in line
        ):
            raise _Irregular(line)
        fields.append((name, value.lstrip(" \t")))
    return fields


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

    def _execute(self, http: Any, order: list[str], requests: dict[str, Any]) -> None:
        """The library's `_execute` without `email.generator` and `FeedParser` on the hot path.

        The request is the text the library's generator writes (parts with "\n" line ends, a
        boundary found in none of them). The answer is read directly when it has the plain
        shape Google (and the fake) send: CRLF lines, `--boundary` lines, simple header
        fields; anything else goes through the library's own parser, so odd answers give
        the same result or error as before.
        """
        parts = []
        for request_id in order:
            text = self._serialize_request(requests[request_id])
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            parts.append(f"{_PART_HEAD}Content-ID: {self._id_to_header(request_id)}\n\n{text}")
        boundary = _boundary("\n".join(parts))
        body = f"--{boundary}\n" + f"\n--{boundary}\n".join(parts) + f"\n--{boundary}--\n"
        headers = {"content-type": f'multipart/mixed; boundary="{boundary}"'}
        resp, content = http.request(self._batch_uri, method="POST", body=body, headers=headers)
        if resp.status >= 300:
            raise errors.HttpError(resp, content, uri=self._batch_uri)
        content_type = resp["content-type"]
        text = content.decode("utf-8")  # as the library does: a non-UTF-8 answer raises here
        try:
            answers = self._read_plain(content_type, content)
        except Exception:  # the library's parser decides, and raises
            answers = self._read_generic(resp, content_type, text)
        self._responses.update(answers)

    def _read_plain(self, content_type: str, content: bytes) -> dict[str, tuple[Any, bytes]]:
        """The answers of a plainly shaped multipart reply; raises on any other shape."""
        if "\r" in content_type or "\n" in content_type:
            raise _Irregular(content_type)
        envelope = email.message.Message()
        envelope["content-type"] = content_type
        boundary = envelope.get_boundary()
        if envelope.get_content_type() != "multipart/mixed" or not boundary:
            raise _Irregular(content_type)
        delim = b"--" + boundary.encode("ascii")
        sep = b"\r\n" + delim
        if (
            not content.startswith(delim + b"\r\n")
            or b"\r" + delim in content
            or content.count(b"\n" + delim) != content.count(sep)
        ):
            raise _Irregular("boundary lines")
        answers: dict[str, tuple[Any, bytes]] = {}
        for piece in content[len(delim) :].split(sep):
            if piece.startswith(b"\r\n"):
                request_id, answer = self._read_part(piece, 2)
                answers[request_id] = answer
            elif piece == b"--" or piece.startswith(b"--\r\n"):
                return answers  # the close delimiter; what follows is the epilogue
            else:
                raise _Irregular("boundary line")
        raise _Irregular("no close delimiter")

    def _read_part(self, piece: bytes, start: int) -> tuple[str, tuple[Any, bytes]]:
        if piece.startswith(b"\r\n", start):
            head, payload = b"", piece[start + 2 :]
        else:
            end = piece.find(b"\r\n\r\n", start)
            if end < 0:
                raise _Irregular("part headers")
            head, payload = piece[start:end], piece[end + 4 :]
        content_id = part_type = None
        for name, value in _fields(head):
            key = name.lower()
            if key == "content-id" and content_id is None:
                content_id = value
            elif key == "content-type" and part_type is None:
                part_type = value
        if content_id is None:
            raise _Irregular("no Content-ID")
        if part_type and part_type.lower().lstrip().startswith(("multipart/", "message/")):
            raise _Irregular(part_type)
        request_id = self._header_to_id(content_id)
        # The embedded HTTP answer, read as `_deserialize_response` does.
        newline = payload.find(b"\n")
        body_at = payload.find(b"\r\n\r\n")
        if newline < 0 or body_at < 0:
            raise _Irregular("HTTP answer")
        protocol, status, reason = payload[:newline].decode("utf-8").split(" ", 2)
        info = {k.lower(): v for k, v in _fields(payload[newline + 1 : body_at])}
        info["status"] = status
        response = httplib2.Response(info)
        response.reason = reason
        response.version = int(protocol.split("/", 1)[1].replace(".", ""))
        return request_id, (response, payload[body_at + 4 :])

    def _read_generic(
        self, resp: Any, content_type: str, content: str
    ) -> dict[str, tuple[Any, bytes]]:
        """The library's own reading of a batch answer (googleapiclient.http)."""
        parser = FeedParser()
        parser.feed(f"content-type: {content_type}\r\n\r\n" + content)
        mime_response = parser.close()
        if not mime_response.is_multipart():
            raise errors.BatchError(
                "Response not in multipart/mixed format.", resp=resp, content=content
            )
        answers: dict[str, tuple[Any, bytes]] = {}
        parts: list[Any] = mime_response.get_payload()  # type: ignore[assignment]
        for part in parts:
            request_id = self._header_to_id(part["Content-ID"])
            response, body = self._deserialize_response(part.get_payload())
            answers[request_id] = (
                response,
                body.encode("utf-8") if isinstance(body, str) else body,
            )
        return answers


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
        self._templates: dict[str, Any] = {}  # messages.get request by format, id placeholder

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
        # Building each request through discovery costs ~140 us (uritemplate, parameter
        # checks); the requests differ only by the id in the URI, so copy one template.
        template = self._templates.get(fmt)
        if template is None:
            template = self._messages.get(userId="me", id=_PLACEHOLDER, format=fmt)
            self._templates[fmt] = template
        if not _PLAIN_ID.fullmatch(mid) or template.uri.count(_PLACEHOLDER) != 1:
            return self._messages.get(userId="me", id=mid, format=fmt)
        request = copy.copy(template)
        request.uri = template.uri.replace(_PLACEHOLDER, mid)
        request.headers = dict(template.headers)
        request.response_callbacks = []
        return request

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
