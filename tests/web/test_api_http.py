"""The REST API's first routes over HTTP against a real `mailmanager web` process: tokens made
by `mailmanager tokens create` (under the server's pinned clock), `/api/v1/me`,
`/api/v1/reminders` with its visibility rule and cursor pages, 401/403/404/422 as RFC 9457
problem details, the API's own OpenAPI 3.1 schema, tokens stored hashed, and each token's
rate limit (429 with Retry-After)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.web import browser
from tests.web.apisupport import PROBLEM, api, assert_problem, make_token
from tests.web.support import NOW, WebServer


def reminder_ids(client: httpx.Client, **params: Any) -> list[int]:
    response = client.get("/reminders", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_me_and_reminders_follow_the_visibility_rules(web_server: WebServer) -> None:
    server = web_server
    _, alice_token = make_token(server, "alice@example.com")
    _, bob_token = make_token(server, "bob@example.com", "--scope", "read", "--scope", "write")
    _, carol_token = make_token(server, "carol@example.com")
    with api(server, alice_token) as alice, api(server, bob_token) as bob:
        me = alice.get("/me")
        assert me.status_code == 200 and me.headers["content-type"] == "application/json"
        assert me.json()["email"] == "alice@example.com"
        assert me.json()["token"]["scopes"] == ["read"]
        assert bob.get("/me").json()["token"]["scopes"] == ["read", "write"]

        alices = reminder_ids(alice, limit=200)
        assert set(server.template.alice_reminders) <= set(alices)
        assert server.template.bob_reminder not in alices
        assert reminder_ids(bob) == [server.template.bob_reminder]
        assert_problem(alice.get("/reminders", params={"user": "bob@example.com"}), 403)
        assert alice.get("/reminders").json()["items"][0]["user"] == "alice@example.com"
    with api(server, carol_token) as carol:  # alice's manager sees hers, not bob's
        assert reminder_ids(carol, user="alice@example.com", limit=200) == alices
        assert server.template.bob_reminder not in reminder_ids(carol, limit=200)


def test_reminders_in_cursor_pages(web_server: WebServer) -> None:
    _, token = make_token(web_server, "alice@example.com")
    with api(web_server, token) as alice:
        everything = reminder_ids(alice, limit=200)
        assert len(everything) >= 3
        paged: list[int] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            page = alice.get("/reminders", params=params).json()
            paged += [item["id"] for item in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert paged == everything
        assert_problem(alice.get("/reminders", params={"limit": 201}), 422)
        assert_problem(alice.get("/reminders", params={"cursor": "nonsense"}), 422)


def test_refused_tokens_get_problem_details(web_server: WebServer) -> None:
    server = web_server
    revoked_id, revoked = make_token(server, "alice@example.com")
    expired_id, expired = make_token(server, "alice@example.com", "--expires-days", "1")
    _, write_only = make_token(server, "alice@example.com", "--scope", "write")
    with api(server, expired) as client:
        assert client.get("/me").status_code == 200  # works until it expires
    with server.session() as s, s.begin():
        s.get(models.ApiToken, expired_id).expires_at = NOW - timedelta(days=1)  # type: ignore[union-attr]
    assert "is revoked" in server.cli("tokens", "revoke", str(revoked_id)).stdout
    for token in (None, "mm_wrong", "not-even-ours", revoked, expired):
        with api(server, token) as client:
            refused = client.get("/reminders")
            body = assert_problem(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert body["title"] == "Unauthorized"
    with api(server, write_only) as client:
        assert_problem(client.get("/me"), 403)
        assert_problem(client.get("/reminders"), 403)
        assert_problem(client.get("/nothing-here"), 404)
    # The pages' CSRF check does not apply to the API (it answers 405, not the pages' 403).
    with api(server, write_only) as client:
        assert_problem(client.post("/me"), 405)


def test_admin_scope_is_for_admins_only(web_server: WebServer) -> None:
    refused = web_server.cli(
        "tokens",
        "create",
        "--user",
        "bob@example.com",
        "--name",
        "x",
        "--scope",
        "admin",
        check=False,
    )
    assert refused.returncode == 2 and "admin" in refused.stderr
    _, token = make_token(web_server, "dave@example.com", "--scope", "read", "--scope", "admin")
    with api(web_server, token) as dave:
        assert dave.get("/me").json()["token"]["scopes"] == ["read", "admin"]


def test_schema_describes_the_api_alone(web_server: WebServer) -> None:
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        schema = client.get("/api/v1/openapi.json").json()
        docs = client.get("/api/v1/docs")
    assert schema["openapi"].startswith("3.1")
    paths = set(schema["paths"])
    assert {"/api/v1/me", "/api/v1/reminders", "/api/v1/contacts/bulk"} <= paths
    assert all(p.startswith("/api/v1/") for p in paths)  # no page of the workspace
    assert not any(p.startswith(("/api/v1/docs", "/api/v1/static")) for p in paths)
    for operations in schema["paths"].values():  # every operation documents its errors
        for operation in operations.values():
            refused = operation["responses"]["401"]["content"]
            assert refused == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "servers" not in schema
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text
    assert "'sha256-" in docs.headers["content-security-policy"]
    policy = docs.headers["content-security-policy"]
    assert "unsafe-inline" not in policy.split("style-src")[0]
    assert "https:" not in policy  # the docs load nothing from another site (no CDN)
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        script = client.get("/api/v1/static/swagger-ui-bundle.js")
    assert "/api/v1/static/swagger-ui-bundle.js" in docs.text
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text


def test_tokens_are_stored_hashed_and_never_listed(web_server: WebServer) -> None:
    token_id, token = make_token(web_server, "carol@example.com", "--expires-days", "30")
    with web_server.session() as s:
        row = s.get(models.ApiToken, token_id)
        assert row is not None
        values = [str(v) for v in s.execute(sa.select(models.ApiToken.__table__)).all()]
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in v or token[3:] in v for v in values)
    listed = web_server.cli("tokens", "list").stdout
    as_json = web_server.cli("tokens", "list", "--user", "carol@example.com", "--json").stdout
    assert token[3:] not in listed and token[3:] not in as_json
    mine = [t for t in json.loads(as_json) if t["id"] == token_id]
    assert mine[0]["state"] == "active" and mine[0]["scopes"] == ["read"]
    assert "carol@example.com CRM" in listed


@pytest.mark.parametrize("path", ["/me", "/reminders"])
def test_the_pages_session_cookie_is_not_a_token(
    signed_in: Callable[[str], httpx.Client], path: str
) -> None:
    browser = signed_in("alice@example.com")
    assert browser.get("/followups").status_code == 200  # signed in, for the pages
    assert_problem(browser.get(f"/api/v1{path}"), 401)


def test_reminders_on_postgresql(web_server_pg: WebServer) -> None:
    server = web_server_pg
    assert server.config.read_text().count("postgresql") == 1
    _, alice_token = make_token(server, "alice@example.com")
    _, bob_token = make_token(server, "bob@example.com")
    with api(server, alice_token) as alice, api(server, bob_token) as bob:
        alices = reminder_ids(alice, limit=200)
        assert set(server.template.alice_reminders) <= set(alices)
        assert server.template.bob_reminder not in alices
        assert reminder_ids(bob) == [server.template.bob_reminder]
        first = alice.get("/reminders", params={"limit": 2}).json()
        second = alice.get("/reminders", params={"limit": 2, "cursor": first["next"]}).json()
        assert [i["id"] for i in first["items"] + second["items"]] == alices[:4]


def test_the_interactive_docs_render_offline_in_chromium(
    web_server: WebServer, chromium: Any, watch: browser.Watch
) -> None:
    """Swagger UI comes from the server (no CDN, so it works without internet access), reads
    the 3.1 schema (Swagger UI 4 refused it) and breaks no rule of the page's CSP."""
    page = watch.page(chromium)
    page.goto(web_server.url + "/api/v1/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 40  # every operation, each its own block
    assert "OAS 3.1" in page.inner_text("body")
    page.screenshot(path=str(watch.artifacts / "api-docs.png"), full_page=True)
    watch.assert_no_console_errors()


def test_each_token_has_its_own_rate_limit(start_web_server: Callable[..., WebServer]) -> None:
    server = start_web_server(edit=lambda text: text + "\n[api]\nrequests_per_minute = 3\n")
    _, alice_token = make_token(server, "alice@example.com")
    _, bob_token = make_token(server, "bob@example.com")
    with api(server, alice_token) as alice, api(server, bob_token) as bob:
        for _ in range(3):
            assert alice.get("/me").status_code == 200
        refused = alice.get("/me")
        body = assert_problem(refused, 429)
        assert "requests_per_minute" in body["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert_problem(alice.get("/reminders"), 429)  # every route counts, refused or not
        assert bob.get("/me").status_code == 200  # another token is not affected
        assert bob.get("/reminders").status_code == 200


def test_gets_carry_an_etag_and_answer_304_when_unchanged(web_server: WebServer) -> None:
    _, token = make_token(web_server, "alice@example.com")
    with api(web_server, token) as alice:
        first = alice.get("/reminders", params={"limit": 3})
        tag = first.headers["ETag"]
        assert first.status_code == 200 and tag.startswith('"')
        same = alice.get("/reminders", params={"limit": 3}, headers={"If-None-Match": tag})
        assert same.status_code == 304 and same.content == b"" and same.headers["ETag"] == tag
        weak = alice.get("/reminders", params={"limit": 3}, headers={"If-None-Match": f"W/{tag}"})
        assert weak.status_code == 304
        other = alice.get("/reminders", params={"limit": 2}, headers={"If-None-Match": tag})
        assert other.status_code == 200 and other.headers["ETag"] != tag
        refused = alice.get("/reminders", params={"user": "bob@example.com"})
        assert refused.status_code == 403 and "ETag" not in refused.headers
