"""The API's data out over HTTP against a real `mailmanager web` process (SQLite and
PostgreSQL), over `tests.recordworld` synced by the real engine: threads and their cursor
pages (stable while threads are inserted), messages, their `.eml` and links, a record's
timeline, the review queue, reminder actions, the dashboard's figures; each visibility
rule proved by trying what must be refused (a salesperson reading a colleague's content,
a read token writing), ETag/304, problem details, and the audit entries of content reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.api import paging
from mailmanager.db import models
from tests import faketime
from tests.conftest import new_pg_database
from tests.integration.notify_support import Sink
from tests.recordworld import ALICE, BOB, CAROL, DAVE, SECRET
from tests.web import apiworld
from tests.web.apisupport import api, assert_problem
from tests.web.support import NOW


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def aw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, web_sink: Sink
) -> Iterator[apiworld.ApiWorld]:
    faketime.require()
    root = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite":
        world = apiworld.start(root, f"sqlite:///{root / 'mm.db'}", web_sink)
        yield world
        world.server.stop()
        return
    with new_pg_database("mm_api") as url:
        world = apiworld.start(root, url, web_sink)
        yield world
        world.server.stop()


@pytest.fixture(scope="module")
def clients(aw: apiworld.ApiWorld) -> Iterator[dict[str, httpx.Client]]:
    """A read token's client per user; "<user>+w": read and write."""
    made = {u: api(aw.server, aw.token(u)) for u in (ALICE, BOB, CAROL, DAVE)}
    made |= {f"{u}+w": api(aw.server, aw.token(u, "read", "write")) for u in (ALICE, BOB, CAROL)}
    yield made
    for c in made.values():
        c.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def thread_levels(client: httpx.Client, **params: Any) -> dict[int, str]:
    page = ok(client.get("/threads", params={"limit": 200, **params}))
    return {t["id"]: t["level"] for t in page["items"]}


def audits(aw: apiworld.ApiWorld, actor: str) -> list[tuple[str, str]]:
    with aw.server.session() as s:
        rows = s.execute(
            sa.select(models.AuditLog.action, models.AuditLog.target)
            .where(models.AuditLog.actor == actor)
            .order_by(models.AuditLog.id)
        )
        return [(a, t) for a, t in rows]


def add_message(
    aw: apiworld.ApiWorld, thread_id: int | None = None, company: int | None = None
) -> tuple[int, int]:
    """A new message in Alice's mailbox (in a new thread unless `thread_id`; linked to
    `company` when given), as a sync would store it between two requests: (thread id,
    message id)."""
    key = uuid.uuid4().hex
    with aw.server.session() as s, s.begin():
        if thread_id is None:
            thread = models.Thread(subject=f"New {key}", last_at=NOW, updated_at=NOW)
            s.add(thread)
            s.flush()
            thread_id = thread.id
        else:
            s.execute(
                sa.update(models.Thread)
                .where(models.Thread.id == thread_id)
                .values(updated_at=NOW + timedelta(minutes=1), last_at=NOW)
            )
        message = models.Message(
            key=key,
            message_id=f"<{key}@example.com>",
            thread_id=thread_id,
            subject=f"New {key}",
            sent_at=NOW,
            sha256=key * 2,
        )
        s.add(message)
        s.flush()
        folder = s.scalars(
            sa.select(models.Folder.id)
            .join(models.Mailbox, models.Mailbox.id == models.Folder.mailbox_id)
            .where(models.Mailbox.name == "alice-inbox")
        ).first()
        assert folder is not None
        s.add(models.MessageLocation(folder_id=folder, provider_id=key, message_id=message.id))
        if company is not None:
            link = models.Link(
                message_id=message.id,
                thread_id=thread_id,
                target_kind="company",
                target_id=company,
                method="domain",
                confidence=0.8,
                explanation="test",
            )
            s.add(link)
        return thread_id, message.id


def test_threads_as_each_user_may_see_them(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    ids = aw.ids
    devis, catalogue = ids["thread:a1@acme.fr"], ids["thread:b1@acme.fr"]
    salon, perso = ids["thread:s1@acme.fr"], ids["thread:p1@friends.example"]
    alice = thread_levels(clients[ALICE])
    assert alice[devis] == "content" and alice[salon] == "content" and alice[perso] == "content"
    assert alice[catalogue] == "metadata"  # Bob's, on a client record
    bob = thread_levels(clients[BOB])
    assert bob[catalogue] == "content" and bob[devis] == "metadata"
    assert perso not in bob  # Alice's mail on no record: Bob may not know of it
    carol = thread_levels(clients[CAROL])  # both are her reports
    assert all(carol[t] == "content" for t in (devis, catalogue, salon, perso))
    dave = thread_levels(clients[DAVE])  # an admin reads nothing more
    assert perso not in dave and set(dave.values()) == {"metadata"}
    page = ok(clients[BOB].get("/threads", params={"limit": 200}))
    assert "Perso" not in str(page)
    listed = next(t for t in page["items"] if t["id"] == devis)
    assert listed["records"] == [  # as `curation.target_label` names them
        {"kind": "contact", "id": ids["jane"], "label": "Jane Doe <jane@acme.fr>"},
        {"kind": "company", "id": ids["acme"], "label": "Acme"},
    ]


def test_a_colleagues_content_is_refused(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    ids = aw.ids
    bobs, bobs_thread = ids["msg:b1@acme.fr"], ids["thread:b1@acme.fr"]
    alice = clients[ALICE]
    meta = ok(alice.get(f"/messages/{bobs}"))
    assert meta["level"] == "metadata" and meta["subject"] == "Catalogue 2027"
    assert meta["text"] is None and meta["snippet"] == "" and meta["attachments"] is None
    assert_problem(alice.get(f"/messages/{bobs}/eml"), 403)
    thread = ok(alice.get(f"/threads/{bobs_thread}"))
    assert [m["text"] for m in thread["messages"]] == [None] and not thread["may_curate"]
    for reply in (alice.get(f"/messages/{bobs}"), alice.get(f"/threads/{bobs_thread}")):
        assert SECRET not in reply.text and "catalogue.bin" not in reply.text
    assert audits(aw, f"api:{ALICE}") == []  # metadata is no read of content

    perso, perso_thread = ids["msg:p1@friends.example"], ids["thread:p1@friends.example"]
    bob = clients[BOB]
    for url in (f"/messages/{perso}", f"/messages/{perso}/eml", f"/messages/{perso}/links",
                f"/threads/{perso_thread}", "/messages/999999", "/threads/999999"):  # fmt: skip
        body = assert_problem(bob.get(url), 404)
        assert "Diner" not in str(body), url

    own = ok(bob.get(f"/messages/{bobs}"))
    assert own["level"] == "content" and SECRET in own["text"]
    assert [a["filename"] for a in own["attachments"]] == ["catalogue.bin"]
    raw = bob.get(f"/messages/{bobs}/eml")
    assert raw.status_code == 200 and raw.headers["content-type"] == "message/rfc822"
    assert SECRET.encode() in raw.content and b"Message-ID: <b1@acme.fr>" in raw.content
    assert SECRET in ok(bob.get(f"/threads/{bobs_thread}"))["messages"][0]["text"]
    assert audits(aw, f"api:{BOB}") == [
        ("message.read", f"message:{bobs}"),
        ("message.read_raw", f"message:{bobs}"),
        ("thread.read", f"thread:{bobs_thread}"),
    ]
    carol = clients[CAROL]  # Bob's manager
    assert SECRET.encode() in carol.get(f"/messages/{bobs}/eml").content
    assert ("message.read_raw", f"message:{bobs}") in audits(aw, f"api:{CAROL}")


def test_links_and_their_explanation(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    devis = aw.ids["msg:a1@acme.fr"]
    why = ok(clients[BOB].get(f"/messages/{devis}/links"))  # metadata is enough
    assert why["message_id"] == devis and why["reason"] == "linked"
    acme = next(x for x in why["links"] if x["kind"] == "company")
    assert acme["target_id"] == aw.ids["acme"] and acme["target"] == "Acme"
    assert acme["method"] and acme["explanation"] and 0 < acme["confidence"] <= 1


def test_thread_filters_and_bad_input(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    ids, carol = aw.ids, clients[CAROL]
    acme = thread_levels(carol, company_id=ids["acme"])
    assert ids["thread:p1@friends.example"] not in acme
    assert {ids["thread:a1@acme.fr"], ids["thread:b1@acme.fr"]} <= set(acme)
    assert set(thread_levels(carol, contact_id=ids["jane"])) == set(acme)
    assert thread_levels(carol, company_id=ids["acme"] + 1000) == {}
    everything = thread_levels(carol)
    assert thread_levels(carol, since="2030-01-01T00:00:00Z") == {}
    assert set(thread_levels(carol, until="2030-01-01T00:00:00+01:00")) == set(everything)
    assert set(thread_levels(carol, since="2000-01-01T00:00:00Z")) == set(everything)
    assert thread_levels(carol, updated_since="2030-01-01T00:00:00Z") == {}
    for params in ({"since": "yesterday"}, {"until": "2026-11-02T09:00:00"}, {"limit": 0},
                   {"limit": 201}, {"cursor": "nonsense"}, {"cursor": "WyJ4Il0"},
                   {"company_id": 0}, {"company_id": 2**40}, {"updated_since": ""},
                   {"cursor": paging.encode(2**40)}, {"cursor": paging.encode(-1)},
                   {"updated_since": "0.5"}, {"since": "1800000000"}):  # fmt: skip
        assert_problem(carol.get("/threads", params=params), 422)
    for url in ("/threads/0", "/threads/99999999999999999999", "/messages/-1", "/threads/x",
                "/messages/99999999999/eml", "/companies/0/timeline"):  # fmt: skip
        assert_problem(carol.get(url), 422)


def test_thread_pages_are_stable_while_threads_arrive(
    aw: apiworld.ApiWorld, clients: dict[str, Any]
) -> None:
    alice = clients[ALICE]
    before = list(thread_levels(alice))
    assert len(before) >= 3 and before == sorted(before, reverse=True)  # newest first
    seen: list[int] = []
    cursor: str | None = None
    added = []
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = ok(alice.get("/threads", params=params))
        seen += [t["id"] for t in page["items"]]
        added.append(add_message(aw)[0])  # a new thread between every two pages
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == before  # none twice, none missed, none of the new ones
    assert list(thread_levels(alice))[: len(added)] == sorted(added, reverse=True)
    assert not set(added) & set(thread_levels(clients[BOB]))  # on no record: Alice's alone
    assert ok(alice.get("/threads", params={"updated_since": NOW.isoformat()}))["items"]


def test_etag_and_if_none_match(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    alice, thread = clients[ALICE], aw.ids["thread:a1@acme.fr"]
    first = alice.get(f"/threads/{thread}")
    tag = first.headers["etag"]
    again = alice.get(f"/threads/{thread}", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    listed = alice.get("/threads")
    assert (
        alice.get("/threads", headers={"If-None-Match": listed.headers["etag"]}).status_code == 304
    )
    add_message(aw, thread)
    changed = alice.get(f"/threads/{thread}", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert len(changed.json()["messages"]) == len(first.json()["messages"]) + 1
    assert (
        alice.get("/threads", headers={"If-None-Match": listed.headers["etag"]}).status_code == 200
    )


def test_a_records_timeline(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    ids = aw.ids
    url = f"/companies/{ids['acme']}/timeline"
    alice = ok(clients[ALICE].get(url))
    assert alice["label"] == "Acme" and alice["next"] is None
    assert alice["thread_count"] == len(alice["threads"]) >= 3
    by_id = {t["id"]: t for t in alice["threads"]}
    bobs = by_id[ids["thread:b1@acme.fr"]]["messages"]
    assert [m["level"] for m in bobs] == ["metadata"] and SECRET not in str(alice)
    assert {m["level"] for m in by_id[ids["thread:a1@acme.fr"]]["messages"]} == {"content"}
    assert alice["engagement"]["segment"] in ("vip", "active", "at_risk", "dormant")
    assert alice["engagement"]["last_inbound"] is not None
    assert ("timeline.read", f"company:{ids['acme']}") in audits(aw, f"api:{ALICE}")
    jane = ok(clients[BOB].get(f"/contacts/{ids['jane']}/timeline"))
    assert {t["id"] for t in jane["threads"]} == set(by_id)
    # Jane's threads wait in the review queue (two open opportunities): none linked yet.
    opp = ok(clients[BOB].get(f"/opportunities/{ids['opp1']}/timeline"))
    assert opp["label"].startswith("OPP-1") and opp["threads"] == []
    assert_problem(clients[ALICE].get("/companies/999999/timeline"), 404)
    assert_problem(clients[ALICE].get(url, params={"cursor": "bad"}), 422)


def test_review_queue(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    ids = aw.ids
    alices = ok(clients[ALICE].get("/review"))["items"]
    bobs = ok(clients[BOB].get("/review"))["items"]
    assert alices and bobs and ok(clients[DAVE].get("/review"))["items"] == []
    assert ids["thread:b1@acme.fr"] not in {i["thread_id"] for i in alices}
    carols = ok(clients[CAROL].get("/review", params={"limit": 1}))
    assert len(carols["items"]) == 1 and carols["next"]
    item = next(i for i in alices if i["thread_id"] == ids["thread:a1@acme.fr"])
    choice = {"opportunity_id": item["candidates"][0]["id"]}
    url = f"/review/{item['id']}"
    assert_problem(clients[ALICE].post(f"{url}/accept", json=choice), 403)  # a read token
    assert_problem(clients[f"{BOB}+w"].post(f"{url}/reject"), 403)  # he sees it: metadata
    assert_problem(clients[f"{ALICE}+w"].post(f"{url}/accept", json={"opportunity_id": 999}), 409)
    done = clients[f"{ALICE}+w"].post(f"{url}/accept", json=choice)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "accepted"
    assert done.json()["linked_to"]["id"] == choice["opportunity_id"]
    assert_problem(clients[f"{ALICE}+w"].post(f"{url}/reject"), 409)  # settled once
    assert item["id"] not in {i["id"] for i in ok(clients[ALICE].get("/review"))["items"]}
    assert_problem(clients[f"{ALICE}+w"].post("/review/999999/reject"), 404)


def test_reminder_actions(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    alices, bobs = aw.reminders[ALICE], aw.reminders[BOB]
    alice, alice_w = clients[ALICE], clients[f"{ALICE}+w"]
    assert_problem(alice.post(f"/reminders/{alices}/done"), 403)  # a read token
    assert_problem(alice_w.post(f"/reminders/{bobs}/dismiss"), 404)  # a colleague's
    for body in ({}, {"business_days": 2, "until": "2026-12-01T08:00:00Z"},
                 {"business_days": 0}, {"until": "2026-12-01T08:00:00"},
                 {"until": "2020-01-01T00:00:00Z"}, {"until": 1800000000},
                 {"business_days": 2.5}):  # fmt: skip
        assert_problem(alice_w.post(f"/reminders/{alices}/snooze", json=body), 422)
    snoozed = ok(alice_w.post(f"/reminders/{alices}/snooze", json={"business_days": 2}))
    assert snoozed["status"] == "snoozed" and snoozed["snoozed_until"] > NOW.isoformat()
    wanted = "2027-01-04T08:30:00+00:00"
    until = ok(alice_w.post(f"/reminders/{alices}/snooze", json={"until": wanted}))
    ends = datetime.fromisoformat(until["snoozed_until"])
    assert (
        datetime.fromisoformat(wanted) <= ends < datetime.fromisoformat(wanted) + timedelta(hours=1)
    )
    carol = clients[f"{CAROL}+w"]  # Bob's manager
    assert ok(carol.post(f"/reminders/{bobs}/dismiss"))["status"] == "dismissed"
    assert_problem(carol.post(f"/reminders/{bobs}/snooze", json={"business_days": 1}), 409)
    assert ok(alice_w.post(f"/reminders/{alices}/done"))["status"] == "done"
    assert_problem(alice_w.post("/reminders/999999/done"), 404)
    with aw.server.session() as s:
        acted = s.execute(
            sa.select(models.AuditLog.actor, models.AuditLog.action).where(
                models.AuditLog.target.in_([f"reminder:{alices}", f"reminder:{bobs}"])
            )
        ).all()
    assert (f"api:{CAROL}", "reminder_dismissed") in acted
    assert (f"api:{ALICE}", "reminder_done") in acted


def test_dashboard_figures(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    alice = ok(clients[ALICE].get("/kpis"))
    assert alice["total"]["email"] == ALICE and alice["people"] == []
    assert len(alice["total"]["weeks"]) == 8
    assert set(alice["total"]["segments"]) == {"vip", "active", "at_risk", "dormant"}
    carol = ok(clients[CAROL].get("/kpis", params={"weeks": 4}))
    assert {p["email"] for p in carol["people"]} == {ALICE, BOB, CAROL}
    assert len(carol["total"]["weeks"]) == 4
    assert ok(clients[CAROL].get("/kpis", params={"user": BOB}))["total"]["email"] == BOB
    assert_problem(clients[ALICE].get("/kpis", params={"user": BOB}), 404)
    assert_problem(clients[ALICE].get("/kpis", params={"weeks": 0}), 422)
    companies = ok(clients[ALICE].get("/engagement"))["items"]
    assert [c["company_id"] for c in companies] == [aw.ids["acme"]]
    segment = companies[0]["segment"]
    assert ok(clients[ALICE].get("/engagement", params={"segment": segment}))["items"]
    other = "vip" if segment != "vip" else "dormant"
    assert ok(clients[ALICE].get("/engagement", params={"segment": other}))["items"] == []
    assert ok(clients[DAVE].get("/engagement"))["items"] == []  # no mailbox of his own
    assert_problem(clients[ALICE].get("/engagement", params={"segment": "x"}), 422)


def test_a_timeline_in_pages(aw: apiworld.ApiWorld, clients: dict[str, Any]) -> None:
    acme = aw.ids["acme"]
    url = f"/companies/{acme}/timeline"
    before = ok(clients[BOB].get(url))["thread_count"]
    added = {add_message(aw, company=acme)[0] for _ in range(21)}  # Alice's: metadata to Bob
    pages, cursor = [], None
    while True:
        page = ok(clients[BOB].get(url, params={"cursor": cursor} if cursor else {}))
        pages.append([t["id"] for t in page["threads"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [20, before + 21 - 20]
    seen = [t for p in pages for t in p]
    assert len(set(seen)) == len(seen) == page["thread_count"] == before + 21
    assert added <= set(seen) and set(pages[0]) <= added  # the latest exchange first
    assert_problem(clients[BOB].get(url, params={"cursor": paging.encode(2**40)}), 422)


def test_the_schema_describes_the_routes_and_their_problems(aw: apiworld.ApiWorld) -> None:
    schema = ok(httpx.get(f"{aw.server.url}/api/v1/openapi.json"))
    paths = schema["paths"]
    for path in ("/api/v1/threads", "/api/v1/threads/{thread_id}", "/api/v1/messages/{message_id}",
                 "/api/v1/messages/{message_id}/eml", "/api/v1/messages/{message_id}/links",
                 "/api/v1/companies/{record_id}/timeline", "/api/v1/review",
                 "/api/v1/reminders/{reminder_id}/snooze", "/api/v1/kpis",
                 "/api/v1/engagement"):  # fmt: skip
        assert path in paths, path
    one = paths["/api/v1/messages/{message_id}"]["get"]["responses"]
    assert "application/problem+json" in one["404"]["content"]
    assert "application/problem+json" in one["422"]["content"]
    assert (
        "message/rfc822"
        in paths["/api/v1/messages/{message_id}/eml"]["get"]["responses"]["200"]["content"]
    )
