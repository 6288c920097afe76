"""What the API's tests share: tokens made by the CLI, a client holding one, and the check
that an error is an RFC 9457 problem detail."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web.support import WebServer

PROBLEM = "application/problem+json"


def make_token(server: WebServer, user: str, *args: str) -> tuple[int, str]:
    """(id, token) of a new token of `user` made by the CLI."""
    out = server.cli("tokens", "create", "--user", user, "--name", f"{user} CRM", *args).stdout
    first, token = out.splitlines()[:2]
    assert first.startswith("token ") and token.startswith("mm_")
    return int(first.split()[1]), token


def api(server: WebServer, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=30)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    return body
