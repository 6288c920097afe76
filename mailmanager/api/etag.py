"""`ETag` and `If-None-Match` for every successful GET of the API (RFC 9110 §8.8.3, §13.1.2).

A plain ASGI middleware: the tag is a strong hash of the answer's body, so it changes when
anything shown changes and costs no extra query; a request whose `If-None-Match` holds the
current tag (or `*`) gets `304 Not Modified` with no body. Only `200` answers of `GET` and
`HEAD` are tagged; other methods and statuses pass through untouched.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def tag_of(body: bytes) -> str:
    digest = hashlib.sha256(body).digest()[:18]
    return '"' + base64.urlsafe_b64encode(digest).decode() + '"'


def matches(if_none_match: str, tag: str) -> bool:
    """Whether an `If-None-Match` value names `tag` (weak comparison, as RFC 9110 asks)."""
    wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in wanted or tag in wanted


class ETagMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            if start is None or start["status"] != 200:  # not ours to tag
                if start is not None:
                    await send(start)
                    start = None
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            tag = tag_of(body)
            headers = MutableHeaders(raw=list(start.get("headers", [])))
            headers["ETag"] = tag
            if matches(Headers(scope=scope).get("if-none-match", ""), tag):
                for name in ("content-length", "content-type"):
                    if name in headers:
                        del headers[name]
                await send({**start, "status": 304, "headers": headers.raw})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
