"""The Gmail connector's quick paths give what the slow generic ones gave.

- `_Batch._execute` writes the same multipart request as googleapiclient's generator and
  reads plain answers directly; odd answers go through the library's parser, same result.
- `decode_raw` accepts and refuses exactly what `b64decode(altchars, validate=True)` did.
"""

from __future__ import annotations

import base64
import binascii
import random
import uuid
from email.generator import Generator
from typing import Any
from unittest import mock

import httplib2  # type: ignore[import-untyped]
import pytest
from googleapiclient import http as gapi_http

from connectors.gmail import api as gmail_api
from connectors.gmail.changes import decode_raw

URI = "https://gmail.example/batch/gmail/v1"
BOUNDARY = "===============123=="


class _Http:
    """Answers every request with one canned multipart reply; keeps what was sent."""

    def __init__(self, content_type: str, content: bytes) -> None:
        self.content_type, self.content = content_type, content
        self.sent: list[tuple[str, dict[str, str]]] = []

    def request(self, uri: str, method: str, body: str, headers: dict[str, str]) -> Any:
        self.sent.append((body, headers))
        resp = httplib2.Response({"status": "200", "content-type": self.content_type})
        return resp, self.content


def _request(mid: str) -> gapi_http.HttpRequest:
    return gapi_http.HttpRequest(
        None,
        lambda resp, content: {"status": resp.status, "body": content},
        f"https://gmail.example/gmail/v1/users/me/messages/{mid}?format=raw&alt=json",
        headers={"accept": "application/json", "user-agent": "x"},
    )


class _Library(gmail_api._Batch):
    _execute = gapi_http.BatchHttpRequest._execute


def _run(cls: type, http: _Http, ids: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    out: dict[str, Any] = {}
    batch = cls(callback=lambda rid, r, e: out.__setitem__(rid, (r, repr(e))), batch_uri=URI)
    batch._base_id = uuid.UUID(int=7)
    for mid in ids:
        batch.add(_request(mid), request_id=mid)
    fixed = classmethod(lambda c, text=None: BOUNDARY)
    with (
        mock.patch.object(Generator, "_make_boundary", fixed),
        mock.patch.object(gmail_api, "_boundary", lambda text: BOUNDARY),
    ):
        batch.execute(http=http)
    return out, batch._responses


def _reply(ids: list[str], nl: str = "\r\n", close: str = "--b--\r\n") -> bytes:
    parts = [
        f"--b{nl}Content-Type: application/http{nl}Content-ID: <response-x + {mid}>{nl}{nl}"
        f"HTTP/1.1 {404 if mid == 'gone' else 200} OK{nl}Content-Type: application/json"
        f'{nl}X-Two:  spaced \r\n\r\n{{"id": "{mid}"}}{nl}'
        for mid in ids
    ]
    return ("".join(parts) + close).encode()


IDS = ["a1", "gone", "c3"]
ABC = _reply(IDS)


def _outcome(cls: type, http: _Http, ids: list[str]) -> Any:
    try:
        got, answers = _run(cls, http, ids)
    except Exception as exc:
        return type(exc), str(exc)
    return got, {
        key: (dict(resp), resp.status, resp.reason, resp.version, body)
        for key, (resp, body) in answers.items()
    }


def _same(ids: list[str], content_type: str, content: bytes) -> Any:
    fast, slow = _Http(content_type, content), _Http(content_type, content)
    got, want = _outcome(gmail_api._Batch, fast, ids), _outcome(_Library, slow, ids)
    assert fast.sent == slow.sent
    assert got == want
    return got


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("multipart/mixed; boundary=b", ABC),
        ('multipart/mixed; boundary="b"', _reply(IDS, close="--b--")),
        ("multipart/mixed; boundary=b", _reply(IDS, close="--b--\r\nepilogue\r\n")),
        ("multipart/mixed; boundary=b", _reply(IDS, nl="\n")),  # the generic parser
        ("multipart/mixed; boundary=b", ABC.replace(b"--b--", b"")),
        ("multipart/mixed; boundary=b", b"preamble\r\n" + ABC),
        ("multipart/mixed; boundary=b", ABC.replace(b"--b--", b"--b  \r\n--b--")),
        ("multipart/mixed; boundary=b", ABC.replace(b"X-Two", b"X Two")),
        ("multipart/mixed; boundary=b", ABC.replace(b"X-Two:  spaced ", b"X-Two: a\r\n b")),
    ],
)
def test_batch_matches_the_library(content_type: str, content: bytes) -> None:
    _same(IDS, content_type, content)


def test_plain_answer_read_directly() -> None:
    with mock.patch.object(gmail_api._Batch, "_read_generic", side_effect=AssertionError):
        got, answers = _same(IDS, "multipart/mixed; boundary=b", ABC)
    assert got["a1"] == ({"status": 200, "body": b'{"id": "a1"}'}, "None")
    assert got["gone"][0] is None and "HttpError 404" in got["gone"][1]
    assert answers["c3"][0] == {
        "content-type": "application/json",
        "x-two": "spaced ",
        "status": "200",
    }


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("multipart/mixed; boundary=b", _reply(["a1", "c3"])),  # a part missing: KeyError
        ("text/plain", b"hello"),
        ("multipart/mixed", b"hello"),
        ("multipart/mixed; boundary=b", ABC.replace(b"<response-x + a1>", b"nope")),
        ("multipart/mixed; boundary=b", ABC.replace(b"Content-ID: <response-x + a1>", b"A: b")),
        ("multipart/mixed; boundary=b", ABC.replace(b"HTTP/1.1 200 OK", b"HTTP/1.1")),
    ],
)
def test_odd_answers_fail_as_before(content_type: str, content: bytes) -> None:
    got = _same(IDS, content_type, content)
    assert isinstance(got[0], type) and issubclass(got[0], Exception)


def _old_decode(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    for alt in (b"-_", b"+/"):
        try:
            return base64.b64decode(padded, altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def test_decode_raw_matches_b64decode() -> None:
    rng = random.Random(3)
    cases = ["", "=", "ab", "abc", "ab==", "ab=", "a===", "ab-_", "a-+/", "é", "ab\n", "=abc"]
    cases += [
        "".join(rng.choice("Ab0+/-_= \n.") for _ in range(rng.randrange(9))) for _ in range(5000)
    ]
    for _ in range(50):
        encoded = base64.urlsafe_b64encode(rng.randbytes(rng.randrange(300))).decode()
        cases += [encoded, encoded.rstrip("=")]
    for text in cases:
        assert decode_raw(text) == _old_decode(text), text
