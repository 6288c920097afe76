"""The API's admin routes over HTTP against a real `mailmanager web` process: mailboxes'
health, "sync now" (202, then its run), the quarantine (pages, one item, its bytes, retry,
drop); refused to a token without the admin scope and to a user who is not admin."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests import faketime
from tests.integration.notify_support import Sink
from tests.recordworld import ALICE, CAROL, DAVE
from tests.web import apiworld
from tests.web.apisupport import api, assert_problem
from tests.web.support import NOW


@pytest.fixture(scope="module")
def aw(tmp_path_factory: pytest.TempPathFactory, web_sink: Sink) -> Iterator[apiworld.ApiWorld]:
    faketime.require()
    root = tmp_path_factory.mktemp("api-admin")
    world = apiworld.start(root, f"sqlite:///{root / 'mm.db'}", web_sink)
    yield world
    world.server.stop()


@pytest.fixture(scope="module")
def admin(aw: apiworld.ApiWorld) -> Iterator[httpx.Client]:
    with api(aw.server, aw.token(DAVE, "read", "write", "admin")) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def quarantine(aw: apiworld.ApiWorld, data: bytes | None, n: int = 1) -> list[int]:
    """`n` items quarantined in Bob's inbox folder, as the sync keeps what it cannot parse."""
    with aw.server.session() as s, s.begin():
        folder = s.scalars(
            sa.select(models.Folder.id)
            .join(models.Mailbox, models.Mailbox.id == models.Folder.mailbox_id)
            .where(models.Mailbox.name == "bob-inbox")
        ).first()
        assert folder is not None
        rows = [
            models.Quarantine(
                folder_id=folder,
                provider_id=f"odd-{time.monotonic_ns()}-{i}",
                reason="no_header_block",
                sha256=hashlib.sha256(data or b"").hexdigest(),
                size=len(data or b""),
                data=data,
            )
            for i in range(n)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def test_admin_routes_are_for_admin_tokens(aw: apiworld.ApiWorld) -> None:
    urls = [("GET", "/mailboxes"), ("POST", "/mailboxes/alice-inbox/sync"),
            ("GET", "/quarantine"), ("GET", "/quarantine/1"), ("GET", "/quarantine/1/raw"),
            ("POST", "/quarantine/1/retry"), ("DELETE", "/quarantine/1")]  # fmt: skip
    tokens = (
        aw.token(DAVE, "read", "write"),  # an admin, without the admin scope
        aw.token(CAROL, "read", "write"),  # a manager: no admin scope to be had
        aw.token(ALICE),
    )
    for token in tokens:
        with api(aw.server, token) as client:
            for method, url in urls:
                assert_problem(client.request(method, url), 403)
    with api(aw.server) as anonymous:
        assert_problem(anonymous.get("/mailboxes"), 401)


def test_mailboxes_and_sync_now(aw: apiworld.ApiWorld, admin: httpx.Client) -> None:
    boxes = ok(admin.get("/mailboxes"))
    assert [b["health"]["name"] for b in boxes] == ["alice-inbox", "bob-inbox"]
    alice = boxes[0]["health"]
    assert alice["state"] == "ok" and alice["messages"] >= 4 and alice["last_sync_at"]
    assert boxes[0]["last_run"] is None
    run = ok(admin.post("/mailboxes/alice-inbox/sync"), 202)
    assert run["mailbox"] == "alice-inbox" and run["state"] == "running"
    deadline = time.monotonic() + 60
    while True:
        last = ok(admin.get("/mailboxes"))[0]["last_run"]
        if last["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert last["state"] == "ok" and last["finished_at"], last
    assert_problem(admin.post("/mailboxes/nobody/sync"), 404)
    lease = sa.update(models.Mailbox).where(models.Mailbox.name == "bob-inbox")
    with aw.server.session() as s, s.begin():  # the daemon, on another host, syncs it
        s.execute(lease.values(lease_owner="elsewhere:1", lease_until=NOW + timedelta(days=1)))
    refused = assert_problem(admin.post("/mailboxes/bob-inbox/sync"), 409)
    assert "elsewhere:1" in refused["detail"]
    assert ok(admin.get("/mailboxes"))[1]["health"]["state"] == "syncing"
    with aw.server.session() as s, s.begin():
        s.execute(lease.values(lease_owner=None, lease_until=None))


def test_quarantine(aw: apiworld.ApiWorld, admin: httpx.Client) -> None:
    kept = quarantine(aw, b"not a message at all", 3)
    empty = quarantine(aw, None)[0]
    seen: list[int] = []
    cursor = None
    while True:
        page = ok(
            admin.get("/quarantine", params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
        )
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [*kept, empty]
    assert ok(admin.get("/quarantine", params={"mailbox": "alice-inbox"}))["items"] == []
    item = ok(admin.get(f"/quarantine/{kept[0]}"))
    assert item["mailbox"] == "bob-inbox" and item["has_raw"] and "header" in item["explanation"]
    raw = admin.get(f"/quarantine/{kept[0]}/raw")
    assert raw.status_code == 200 and raw.content == b"not a message at all"
    assert_problem(admin.get(f"/quarantine/{empty}/raw"), 404)
    retried = ok(admin.post(f"/quarantine/{kept[1]}/retry"))
    assert retried["stored"] is False and retried["reason"]
    gone = admin.delete(f"/quarantine/{kept[2]}")
    assert gone.status_code == 204 and gone.content == b""
    assert_problem(admin.get(f"/quarantine/{kept[2]}"), 404)
    assert_problem(admin.delete(f"/quarantine/{kept[2]}"), 404)
    assert_problem(admin.post("/quarantine/999999/retry"), 404)
    assert_problem(admin.get("/quarantine/0"), 422)
    assert_problem(admin.get("/quarantine", params={"cursor": "zz"}), 422)
    with aw.server.session() as s:
        logged = s.execute(
            sa.select(models.AuditLog.action, models.AuditLog.target).where(
                models.AuditLog.actor == f"api:{DAVE}"
            )
        ).all()
    assert ("quarantine.read_raw", f"quarantine:{kept[0]}") in logged
    assert ("quarantine.retry", f"quarantine:{kept[1]}") in logged
    assert ("quarantine.drop", f"quarantine:{kept[2]}") in logged
