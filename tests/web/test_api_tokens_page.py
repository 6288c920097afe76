"""The "API tokens / Jetons d'API" page over HTTP against a real `mailmanager web` process:
a token created on the page is shown once and works on `/api/v1/me`, the list never shows
it, revoking it makes the API answer 401, another user's token cannot be revoked, every POST
needs the CSRF token, the admin scope is offered (and given) to admins only, and the page
speaks French and English."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from mailmanager.db import models
from tests.web.support import WebServer, csrf_of

TOKEN = re.compile(r"mm_[A-Za-z0-9_-]{20,}")


def create(client: httpx.Client, name: str, *scopes: str, days: str = "") -> tuple[int, str]:
    """(id, token) of a token made on the page by `client`'s user."""
    page = client.get("/tokens")
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page.text), "name": name, "scope": list(scopes), "expires_days": days}
    made = client.post("/tokens", data=data)
    assert made.status_code == 200, made.text
    found = TOKEN.findall(made.text)
    assert len(found) == 1
    listed = client.get("/tokens").text
    ids = re.findall(r'id="token-(\d+)"', listed)
    return max(int(i) for i in ids), found[0]


def me(server: WebServer, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers, timeout=30) as api:
        return api.get("/me")


def test_create_use_list_and_revoke(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    bob = signed_in("bob@example.com")  # English
    made = bob.get("/tokens")
    assert 'href="/tokens"' in made.text and "API tokens" in made.text  # in the navigation
    token_id, token = create(bob, "Bob's CRM", "read", "write", days="30")
    shown = bob.post("/tokens", data={"csrf": csrf_of(made.text), "name": "Other"})
    assert "Copy this token now: it will not be shown again" in shown.text

    answer = me(web_server, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == "bob@example.com"
    assert answer.json()["token"]["scopes"] == ["read", "write"]
    assert answer.json()["token"]["id"] == token_id

    listed = bob.get("/tokens").text
    row = re.search(rf'<tr id="token-{token_id}".*?</tr>', listed, re.S)
    assert row is not None
    assert "Bob&#39;s CRM" in row[0] and "read, write" in row[0] and "active" in row[0]
    assert "never" not in row[0].split("</td>")[3]  # it expires
    assert token not in listed and token[3:] not in listed and not TOKEN.search(listed)

    revoked = bob.post(f"/tokens/{token_id}/revoke", data={"csrf": csrf_of(listed)})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/tokens?done=revoked"
    after = bob.get("/tokens?done=revoked").text
    assert "Token revoked" in after
    row = re.search(rf'<tr id="token-{token_id}".*?</tr>', after, re.S)
    assert row is not None and 'data-state="revoked"' in row[0] and "<form" not in row[0]
    assert me(web_server, token).status_code == 401


def test_another_users_token_cannot_be_revoked(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice, bob = signed_in("alice@example.com"), signed_in("bob@example.com")
    token_id, token = create(alice, "Alice's script")
    page = bob.get("/tokens").text
    assert f'id="token-{token_id}"' not in page  # not in bob's list
    refused = bob.post(f"/tokens/{token_id}/revoke", data={"csrf": csrf_of(page)})
    assert refused.status_code == 404
    with web_server.session() as s:
        row = s.get(models.ApiToken, token_id)
        assert row is not None and row.revoked_at is None
    assert me(web_server, token).status_code == 200


def test_posts_need_the_csrf_token(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    token_id, token = create(alice, "Kept")
    with web_server.session() as s:
        before = s.query(models.ApiToken).count()
    assert alice.post("/tokens", data={"name": "No CSRF"}).status_code == 403
    assert alice.post("/tokens", data={"name": "Bad", "csrf": "x"}).status_code == 403
    assert alice.post(f"/tokens/{token_id}/revoke").status_code == 403
    with web_server.session() as s:
        assert s.query(models.ApiToken).count() == before
        row = s.get(models.ApiToken, token_id)
        assert row is not None and row.revoked_at is None
    assert me(web_server, token).status_code == 200


def test_admin_scope_for_admins_only_and_french(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")  # French, not an admin
    page = alice.get("/tokens").text
    assert "Jetons d&#39;API" in page and 'value="admin"' not in page
    forged = alice.post(
        "/tokens", data={"csrf": csrf_of(page), "name": "Sneaky", "scope": ["read", "admin"]}
    )
    assert forged.status_code == 400 and not TOKEN.search(forged.text)
    assert "réservée aux administrateurs" in forged.text  # her language, not the service's
    nameless = alice.post("/tokens", data={"csrf": csrf_of(page), "name": "  "})
    assert nameless.status_code == 400 and "Donnez un nom au jeton" in nameless.text
    bad_days = alice.post("/tokens", data={"csrf": csrf_of(page), "name": "X", "expires_days": "0"})
    assert bad_days.status_code == 400 and "nombre de jours" in bad_days.text
    fr = alice.post("/tokens", data={"csrf": csrf_of(page), "name": "Mon CRM"})
    assert "Copiez ce jeton maintenant : il ne sera plus jamais affiché" in fr.text

    dave = signed_in("dave@example.com")  # an admin
    assert 'value="admin"' in dave.get("/tokens").text
    _, token = create(dave, "Admin tool", "read", "admin")
    assert me(web_server, token).json()["token"]["scopes"] == ["read", "admin"]


def test_the_page_needs_a_signed_in_user(web_server: WebServer) -> None:
    with web_server.client() as stranger:
        answer = stranger.get("/tokens")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
