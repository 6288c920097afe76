"""Tableau de bord / Dashboard in a real Chromium, against a real `mailmanager web` process
over the synced sample mailbox: alice (French) and carol (her manager, English) open their
dashboard; the inline SVG charts load under the Content-Security-Policy (no console error),
axe-core finds no serious or critical violation, a screenshot per page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web import browser
from tests.web.support import WebServer, link_in


def _sign_in(server: WebServer, page: Any, email: str, lang: str) -> None:
    words = {
        "fr": ("Adresse e-mail", "Recevoir le lien", "Me connecter"),
        "en": ("Email address", "Send me the link", "Sign me in"),
    }[lang]
    page.goto(f"{server.url}/dashboard")
    assert page.url.endswith("/signin?next=/dashboard")
    before = len(server.mails_to(email))
    page.get_by_label(words[0]).fill(email)
    page.get_by_role("button", name=words[1]).click()
    page.wait_for_load_state()
    page.goto(link_in(server.wait_mail(email, before)))
    page.get_by_role("button", name=words[2]).click()
    page.wait_for_url("**/dashboard")


def test_dashboard_in_chromium(web_server: WebServer, artifacts_dir: Path) -> None:
    with browser.launch() as chromium:
        watch = browser.Watch(artifacts_dir)
        alice = watch.page(chromium, locale="fr-FR")
        _sign_in(web_server, alice, "alice@example.com", "fr")
        assert alice.get_by_role("heading", level=1).inner_text() == "Tableau de bord"
        assert alice.locator("svg.chart").count() == 2
        assert alice.get_by_role("img", name="Messages reçus et envoyés par semaine").count() == 1
        assert alice.locator("#people-table").count() == 0
        watch.check(alice, "dashboard-fr")

        carol = watch.page(chromium, locale="en-GB")
        _sign_in(web_server, carol, "carol@example.com", "en")
        assert carol.locator("#people-table").count() == 1
        assert "Alice Martin" in carol.locator("#people-table").inner_text()
        watch.check(carol, "dashboard-en")
        carol.get_by_role("link", name="Alice Martin").click()
        carol.wait_for_url("**/dashboard/people/alice@example.com")
        watch.check(carol, "dashboard-person-en")
        watch.assert_no_console_errors()
