"""Webhooks over HTTP against a real `mailmanager web` process: the API's routes (admin scope
only; create with the secret shown once, list, test event, last deliveries, redeliver,
delete; SSRF targets refused as 422 problems) and the admin page (FR/EN, the secret shown
once, "send test event", deliveries with their status). The test event is then delivered
by a real delivery pass to a real receiver that verifies its signature."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store, tokens
from mailmanager.notify import webhooks as delivery
from tests.integration.webhook_support import Receiver
from tests.web.apisupport import api, assert_problem, make_token
from tests.web.support import WebServer, csrf_of

ALLOW = '\n[webhooks]\nallow_private = ["127.0.0.0/8"]\n'


@pytest.fixture
def server(
    start_web_server: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch
) -> WebServer:
    monkeypatch.setenv(tokens.ENV_KEY, tokens.new_key())  # the server and this process
    return start_web_server(edit=lambda text: text + ALLOW)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _deliver(server: WebServer) -> delivery.DeliveryReport:
    cfg = config.load(server.config)
    engine = store.make_engine(cfg.database.url)
    try:
        return delivery.deliver(cfg, store.session_factory(engine))
    finally:
        engine.dispose()


def test_api_webhooks_for_admins_secret_once_test_event_delivered_and_signed(
    server: WebServer, receiver: Receiver
) -> None:
    _, admin_token = make_token(server, "dave@example.com", "--scope", "admin")
    _, reader_token = make_token(server, "alice@example.com")
    with api(server, reader_token) as reader:
        assert_problem(reader.get("/webhooks"), 403)
        assert_problem(reader.post("/webhooks", json={"url": receiver.url}), 403)
    with api(server, admin_token) as admin:
        for url in (
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.7/hook",
            "https://[::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",  # IPv4-mapped: judged as 10.0.0.1
            "ftp://127.0.0.1/hook",
        ):
            body = assert_problem(
                admin.post("/webhooks", json={"url": url, "event_types": ["reminder.due"]}), 422
            )
            assert "refused" in body["detail"] or "https" in body["detail"]
        assert_problem(admin.post("/webhooks", json={"url": receiver.url, "event_types": []}), 422)
        made = admin.post(
            "/webhooks", json={"url": receiver.url, "event_types": ["reminder.due", "link.changed"]}
        )
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        sub_id = made.json()["subscription"]["id"]
        assert secret.startswith("whsec_")
        receiver.secret = secret
        listed = admin.get("/webhooks")
        assert listed.status_code == 200 and secret not in listed.text
        assert [s["id"] for s in listed.json()["items"]] == [sub_id]
        queued = admin.post(f"/webhooks/{sub_id}/test")
        assert queued.status_code == 202, queued.text
        wid = queued.json()["webhook_id"]
        [pending] = admin.get("/webhooks/deliveries").json()["items"]
        assert (pending["event_id"], pending["status"]) == (wid, "pending")
        assert_problem(admin.post(f"/webhooks/deliveries/{pending['id']}/redeliver"), 422)
        assert_problem(admin.post("/webhooks/deliveries/99999/redeliver"), 404)
        assert_problem(admin.post("/webhooks/99999/test"), 404)

        assert _deliver(server).delivered == [pending["id"]]
        assert receiver.snapshot() == {wid: 1} and receiver.bad_signatures == 0
        assert receiver.bodies[wid]["type"] == "webhook.test"
        [done] = admin.get("/webhooks/deliveries", params={"subscription": sub_id}).json()["items"]
        assert done["status"] == "delivered" and done["last_status_code"] == 204

        with server.session() as s:  # the secret is stored encrypted, never in clear
            stored = s.scalar(sa.select(models.WebhookSubscription.secret_ciphertext))
        assert stored is not None and secret.encode() not in stored
        assert tokens.cipher().decrypt(stored).decode() == secret
        assert admin.delete(f"/webhooks/{sub_id}").status_code == 204
        assert_problem(admin.delete(f"/webhooks/{sub_id}"), 404)
        assert admin.get("/webhooks").json()["items"] == []


def test_admin_page_adds_shows_secret_once_tests_and_lists_deliveries(
    server: WebServer, receiver: Receiver
) -> None:
    seller = server.sign_in("alice@example.com")
    assert seller.get("/admin/webhooks").status_code == 403
    admin = server.sign_in("dave@example.com")  # French
    page = admin.get("/admin/webhooks")
    assert page.status_code == 200 and "Nouveau webhook" in page.text
    token = csrf_of(page.text)
    refused = admin.post(
        "/admin/webhooks",
        data={"csrf": token, "url": "https://10.1.1.1/x", "event": ["reminder.due"]},
    )
    assert refused.status_code == 400 and "Adresse refusée" in refused.text
    made = admin.post(
        "/admin/webhooks",
        data={"csrf": token, "url": receiver.url, "event": ["reminder.due", "thread.replied"],
              "description": "CRM"},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    assert "Copiez ce secret" in made.text
    secret = made.text.split('id="new-webhook-secret" readonly size="60" value="')[1].split('"')[0]
    assert secret.startswith("whsec_")
    receiver.secret = secret
    listing = admin.get("/admin/webhooks")
    assert receiver.url in listing.text and secret not in listing.text
    with server.session() as s:
        sub_id = s.scalar(sa.select(models.WebhookSubscription.id))
    tested = admin.post(f"/admin/webhooks/{sub_id}/test", data={"csrf": csrf_of(listing.text)})
    assert tested.status_code == 303
    after = admin.get(tested.headers["location"])
    assert "Événement de test mis en file" in after.text and "en attente" in after.text
    assert len(_deliver(server).delivered) == 1
    assert "livrée" in admin.get("/admin/webhooks").text
    assert receiver.bad_signatures == 0 and len(receiver.snapshot()) == 1
