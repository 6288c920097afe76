"""The webhooks admin page in a real Chromium (French admin): add a webhook with two event
types, copy the secret shown once, send a test event and see it waiting. A screenshot per
page, no console error, axe-core finds no serious or critical violation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailmanager.db import tokens
from tests.web import browser
from tests.web.support import WebServer

ALLOW = '\n[webhooks]\nallow_private = ["127.0.0.0/8"]\n'


def test_add_a_webhook_see_its_secret_once_and_send_a_test_event(
    start_web_server: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch,
    chromium: Any, watch: browser.Watch,
) -> None:  # fmt: skip
    monkeypatch.setenv(tokens.ENV_KEY, tokens.new_key())
    server = start_web_server(edit=lambda text: text + ALLOW)
    client = server.sign_in("dave@example.com")
    token = client.cookies.get("mm_session")
    client.close()
    page = watch.page(chromium, locale="fr-FR")
    page.context.add_cookies([{"name": "mm_session", "value": token, "url": server.url}])
    page.goto(server.url + "/admin/webhooks")
    assert page.locator("h1").inner_text() == "Webhooks"
    watch.check(page, "admin-webhooks-empty")
    page.get_by_label("URL").fill("http://127.0.0.1:9/hooks")
    page.get_by_label("reminder.due").check()
    page.get_by_label("thread.replied").check()
    page.get_by_label("Description").fill("Notre CRM")
    page.get_by_role("button", name="Ajouter le webhook").click()
    page.wait_for_url("**/admin/webhooks")
    secret = page.get_by_label("Secret de signature").input_value()
    assert secret.startswith("whsec_")
    assert "ne sera plus jamais affiché" in page.get_by_role("alert").inner_text()
    watch.check(page, "admin-webhook-created")
    page.get_by_role("link", name="Retour aux webhooks").click()
    row = page.locator("#webhooks tbody tr").first
    assert "thread.replied, reminder.due" in row.inner_text()  # in EVENT_TYPES order
    assert secret not in page.content()
    page.get_by_role("button", name="Envoyer un événement de test (N° 1)").click()
    page.wait_for_url("**/admin/webhooks?done=tested*")
    assert "Événement de test mis en file" in page.get_by_role("status").inner_text()
    assert "webhook.test" in page.locator("#deliveries").inner_text()
    watch.check(page, "admin-webhooks-tested")
    watch.assert_no_console_errors()
