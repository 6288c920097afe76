"""Jetons d'API / API tokens in a real Chromium, against a real `mailmanager web` process:
alice (French) creates a token from the form, sees it once, and the API answers it; she
revokes it from the list and the API refuses it. axe-core finds no serious or critical
violation, no console error, a screenshot per page."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web import browser
from tests.web.support import WebServer, link_in


def _sign_in_fr(server: WebServer, page: Any, email: str) -> None:
    page.goto(f"{server.url}/tokens")
    assert page.url.endswith("/signin?next=/tokens")
    before = len(server.mails_to(email))
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_role("button", name="Recevoir le lien").click()
    page.wait_for_load_state()
    page.goto(link_in(server.wait_mail(email, before)))
    page.get_by_role("button", name="Me connecter").click()
    page.wait_for_url("**/tokens")


def _me(server: WebServer, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{server.url}/api/v1/me", headers=headers, timeout=30).status_code


def test_create_and_revoke_a_token_in_chromium(
    web_server: WebServer, chromium: Any, watch: browser.Watch
) -> None:
    alice = watch.page(chromium, locale="fr-FR")
    _sign_in_fr(web_server, alice, "alice@example.com")
    assert alice.get_by_role("heading", level=1).inner_text() == "Jetons d'API"
    watch.check(alice, "tokens-fr")
    alice.get_by_label("Nom").fill("Notre CRM (navigateur)")
    alice.get_by_role("checkbox", name="lecture").check()
    alice.get_by_role("button", name="Créer le jeton").click()
    alice.wait_for_load_state()
    token = alice.locator("#new-token-value").input_value()
    assert token.startswith("mm_")
    watch.check(alice, "tokens-created-fr")
    assert _me(web_server, token) == 200

    alice.goto(f"{web_server.url}/tokens")
    assert token not in alice.content()
    row = alice.locator("tr", has_text="Notre CRM (navigateur)")
    row.get_by_role("button").click()
    alice.wait_for_load_state()
    watch.check(alice, "tokens-revoked-fr")
    assert _me(web_server, token) == 401
    watch.assert_no_console_errors()
