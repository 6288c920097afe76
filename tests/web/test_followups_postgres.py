"""The web workspace over PostgreSQL: the same real server, synced into PostgreSQL: sign in,
My follow-ups, acting, a refusal, and a digest link used once."""

from __future__ import annotations

import re

import sqlalchemy as sa

from mailmanager.db import models
from tests.web.support import WebServer, csrf_of

DONE = re.compile(r"^[ ]+Fait : \S+/a/(\S+?)\r?$", re.M)


def test_follow_ups_on_postgresql(web_server_pg: WebServer) -> None:
    server = web_server_pg
    assert server.config.read_text().count("postgresql") == 1
    alice = server.sign_in("alice@example.com")
    page = alice.get("/followups")
    assert f"À faire maintenant ({len(server.template.alice_reminders)})" in page.text
    first, second = server.template.alice_reminders[:2]
    token = csrf_of(page.text)
    assert (
        alice.post("/followups", data={"csrf": token, "act": f"snooze_1w:{first}"}).status_code
        == 303
    )
    bobs = server.template.bob_reminder
    refused = alice.post("/followups", data={"csrf": token, "act": "done", "ids": [second, bobs]})
    assert refused.status_code == 404
    with server.session() as s:
        status = dict(s.execute(sa.select(models.Reminder.id, models.Reminder.status)).all())
    assert (status[first], status[second], status[bobs]) == ("snoozed", "pending", "pending")
    alice.close()
    digest = server.send_digest("alice@example.com")
    token_ = DONE.findall(digest.get_body(("plain",)).get_content())[0]  # type: ignore[union-attr]
    with server.client() as person:
        confirm = person.get(f"/a/{token_}")
        assert confirm.status_code == 200
        assert person.post(f"/a/{token_}", data={"csrf": csrf_of(confirm.text)}).status_code == 200
        assert person.post(f"/a/{token_}", data={"csrf": csrf_of(confirm.text)}).status_code == 410
