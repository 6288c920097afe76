"""Records in over HTTP against a real `mailmanager web` process: companies, contacts and
opportunities created, read, changed and deleted; bulk upsert by (source, external_id), all
or nothing with per-item errors, idempotent; retro-linking of the mail already stored; the
write scope and who may delete; keyset pages stable while another client inserts; ETag 304
on a list; problem details (422, never 500) on bad input. Bulk upsert and paging run on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.web.apisupport import api, assert_problem, make_token
from tests.web.support import WebServer

RW = ("--scope", "read", "--scope", "write")


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> WebServer:
    name = "web_server" if request.param == "sqlite" else "web_server_pg"
    found: WebServer = request.getfixturevalue(name)
    return found


def writer(server: WebServer, user: str = "alice@example.com") -> httpx.Client:
    return api(server, make_token(server, user, *RW)[1])


def contact_items(source: str, start: int, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "source": source,
            "external_id": f"P{n}",
            "emails": [f"person{n}@{source}-people.test"],
            "first_name": f"Person {n}",
            **extra,
        }
        for n in range(start, start + count)
    ]


def test_crud_of_the_three_kinds_with_scopes_and_delete_rights(web_server: WebServer) -> None:
    server = web_server
    _, read_only = make_token(server, "alice@example.com")
    alice, bob, dave = (writer(server, f"{u}@example.com") for u in ("alice", "bob", "dave"))
    with alice, bob, dave, api(server, read_only) as reader:
        made = alice.post(
            "/companies",
            json={"name": "Globex API", "domains": ["globex-api.test"], "external_id": "C1"},
        )
        assert made.status_code == 201, made.text
        company = made.json()
        assert company["domains"] == ["globex-api.test"] and company["source"] == "api"
        assert alice.get(f"/companies/{company['id']}").json()["name"] == "Globex API"
        renamed = alice.patch(f"/companies/{company['id']}", json={"name": "Globex Corp"})
        assert renamed.json()["name"] == "Globex Corp"
        assert renamed.json()["updated_at"] >= company["updated_at"]
        listed = alice.get("/companies", params={"source": "api", "external_id": "C1"})
        assert [c["id"] for c in listed.json()["items"]] == [company["id"]]

        body = {
            "emails": ["Jane.Roe@globex-api.test"],
            "first_name": "Jane",
            "company_id": company["id"],
            "owner": "alice@example.com",
        }
        contact = alice.post("/contacts", json=body).json()
        assert contact["emails"] == ["Jane.Roe@globex-api.test"]
        assert contact["owner"] == "alice@example.com"
        changed = alice.patch(
            f"/contacts/{contact['id']}",
            json={"add_emails": ["jane@globex-api.test"], "status": "client"},
        ).json()
        assert changed["status"] == "client" and len(changed["emails"]) == 2
        found = alice.get("/contacts", params={"email": "JANE@globex-api.test"}).json()
        assert [c["id"] for c in found["items"]] == [contact["id"]]
        by_company = alice.get("/contacts", params={"company_id": company["id"]}).json()
        assert [c["id"] for c in by_company["items"]] == [contact["id"]]

        opp = alice.post(
            "/opportunities",
            json={"title": "Globex renewal", "company_id": company["id"],
                  "contact_ids": [contact["id"]], "amount": "1200.50",
                  "owner": "bob@example.com"},
        )  # fmt: skip
        assert opp.status_code == 201, opp.text
        assert opp.json()["reference"].startswith("OPP-")
        assert opp.json()["contact_ids"] == [contact["id"]]
        won = alice.patch(f"/opportunities/{opp.json()['id']}", json={"stage": "won"})
        assert won.json()["stage"] == "won" and won.json()["closed_at"] is not None

        # the write scope; then who may delete: admins, and a contact's or deal's owner
        assert_problem(reader.post("/contacts", json=body), 403)
        assert_problem(reader.delete(f"/contacts/{contact['id']}"), 403)
        assert_problem(bob.delete(f"/contacts/{contact['id']}"), 403)
        assert_problem(alice.delete(f"/companies/{company['id']}"), 403)
        assert_problem(alice.delete(f"/opportunities/{opp.json()['id']}"), 403)
        assert bob.delete(f"/opportunities/{opp.json()['id']}").status_code == 204
        assert alice.delete(f"/contacts/{contact['id']}").status_code == 204
        assert_problem(alice.get(f"/contacts/{contact['id']}"), 404)
        assert dave.delete(f"/companies/{company['id']}").status_code == 204
        assert_problem(dave.delete(f"/companies/{company['id']}"), 404)
    with server.session() as s:
        actions = set(
            s.scalars(
                sa.select(models.AuditLog.action).where(
                    models.AuditLog.actor == "api:alice@example.com"
                )
            )
        )
    assert {"company.create", "contact.create", "contact.update", "contact.delete"} <= actions


def test_bad_input_is_a_problem_detail_never_a_server_error(web_server: WebServer) -> None:
    with writer(web_server) as alice:
        for path, body in [
            ("/contacts", {"emails": "not-a-list"}),
            ("/contacts", {"emails": ["a@b.test"], "first_name": "x" * 10_000}),
            ("/contacts", {"emails": ["a@b.test"], "favourite_colour": "blue"}),
            ("/contacts", {"emails": ["a\x00@b.test"]}),
            ("/contacts", {"emails": ["a@b.test"], "company_id": 2**40}),
            ("/opportunities", {"title": "x", "amount": "-3"}),
            ("/opportunities", {"title": "x", "expected_close": "2026-12-01T00:00:00"}),
            ("/companies/bulk", {"items": []}),
            ("/contacts/bulk", {"items": contact_items("big", 0, 1001)}),
        ]:
            assert_problem(alice.post(path, json=body), 422)
        refused = assert_problem(alice.post("/contacts", json={"emails": ["not an address"]}), 422)
        assert refused["errors"][0]["field"] == "email"
        assert_problem(alice.post("/contacts", content=b"{not json"), 422)
        assert_problem(alice.patch("/contacts/1", json={"status": "boss"}), 422)
        assert_problem(alice.get("/contacts", params={"cursor": "bogus"}), 422)
        assert_problem(alice.get("/contacts", params={"updated_since": "2026-11-01T00:00:00"}), 422)
        assert_problem(alice.get("/contacts", params={"updated_since": "0.5"}), 422)
        assert_problem(alice.get("/contacts/99999999"), 404)


def test_a_new_contact_gets_the_mail_already_stored(web_server: WebServer) -> None:
    """Retro-linking: mail from an address that was no contact's links to the new contact."""
    server = web_server
    P, L = models.Participant, models.Link
    with server.session() as s:
        address = s.scalar(
            sa.select(P.email)
            .where(P.role == "from", P.contact_id.is_(None), ~P.email.like("%@example.com"))
            .order_by(P.id)
            .limit(1)
        )
    assert address is not None
    with writer(server) as alice:
        item = {"source": "crm", "external_id": "RETRO-1", "emails": [address]}
        answer = alice.post("/contacts/bulk", json={"items": [item]})
        assert answer.status_code == 200, answer.text
        assert "relink;dur=" in answer.headers["server-timing"]
        (contact_id,) = answer.json()["ids"]
    with server.session() as s:
        links = s.scalars(
            sa.select(L.id).where(L.target_kind == "contact", L.target_id == contact_id)
        ).all()
    assert links, f"no mail from {address} was linked to contact #{contact_id}"


def test_bulk_upsert_is_all_or_nothing_and_idempotent(server: WebServer) -> None:
    with writer(server) as alice:
        companies = [
            {"source": "odoo", "external_id": "ACME", "name": "Acme Odoo",
             "domains": ["acme-odoo.test"]},
            {"source": "odoo", "external_id": "INIT", "name": "Initech Odoo"},
        ]  # fmt: skip
        made = alice.post("/companies/bulk", json={"items": companies})
        assert made.status_code == 200, made.text
        assert made.json()["created"] == 2
        items = contact_items("odoo", 0, 50, company_external_id="ACME", owner="bob@example.com")
        first = alice.post("/contacts/bulk", json={"items": items})
        assert first.status_code == 200, first.text
        assert first.json() | {"ids": None} == {
            "created": 50, "updated": 0, "unchanged": 0, "ids": None,
        }  # fmt: skip
        ids = first.json()["ids"]
        again = alice.post("/contacts/bulk", json={"items": items}).json()
        assert again == {"created": 0, "updated": 0, "unchanged": 50, "ids": ids}
        one = alice.get(f"/contacts/{ids[7]}").json()
        assert one["external_id"] == "P7" and one["owner"] == "bob@example.com"
        assert one["company_id"] == made.json()["ids"][0]

        # one bad item among good ones: nothing written, each refusal named
        bad = contact_items("odoo", 50, 5)
        bad[1]["emails"] = ["nobody"]
        bad[3]["company_external_id"] = "NO-SUCH"
        bad[4]["emails"] = items[0]["emails"]  # another contact's address
        items[2]["last_name"] = "Changed"
        refused = alice.post("/contacts/bulk", json={"items": [items[2], *bad]})
        body = assert_problem(refused, 422)
        assert [(e["index"], e["field"]) for e in body["errors"]] == [
            (2, "emails"), (4, "company_external_id"), (5, "emails"),
        ]  # fmt: skip
        assert alice.get(f"/contacts/{ids[2]}").json()["last_name"] == ""
        assert alice.get("/contacts", params={"external_id": "P50"}).json()["items"] == []

        updated = alice.post(
            "/contacts/bulk", json={"items": [items[2], *contact_items("odoo", 50, 1)]}
        )
        assert updated.json()["created"] == 1 and updated.json()["updated"] == 1
        assert alice.get(f"/contacts/{ids[2]}").json()["last_name"] == "Changed"
        # the same external id in another source is another contact
        other = contact_items("hubspot", 0, 1)
        assert alice.post("/contacts/bulk", json={"items": other}).json()["created"] == 1

        opps = [{"source": "odoo", "external_id": "D1", "title": "Acme deal",
                 "company_external_id": "ACME", "contact_external_ids": ["P1", "P2"]}]  # fmt: skip
        deal = alice.post("/opportunities/bulk", json={"items": opps})
        assert deal.status_code == 200, deal.text
        got = alice.get(f"/opportunities/{deal.json()['ids'][0]}").json()
        assert got["contact_ids"] == sorted([ids[1], ids[2]])
        assert alice.post("/opportunities/bulk", json={"items": opps}).json()["unchanged"] == 1


def test_pages_are_stable_while_another_client_inserts(server: WebServer) -> None:
    with writer(server) as alice, writer(server) as other:
        assert (
            alice.post("/contacts/bulk", json={"items": contact_items("page", 0, 40)}).status_code
            == 200
        )
        start = alice.get("/contacts", params={"source": "page", "limit": 200}).json()["items"]
        before = [c["id"] for c in start]
        stop = threading.Event()

        def insert() -> None:
            n = 1000
            while not stop.is_set():
                other.post("/contacts/bulk", json={"items": contact_items("page", n, 3)})
                n += 3

        inserter = threading.Thread(target=insert)
        inserter.start()
        seen: list[int] = []
        cursor = None
        try:
            while True:
                params: dict[str, Any] = {"source": "page", "limit": 7}
                page = alice.get(
                    "/contacts", params=params | ({"cursor": cursor} if cursor else {})
                )
                assert page.status_code == 200, page.text
                seen += [c["id"] for c in page.json()["items"]]
                cursor = page.json()["next"]
                if cursor is None or len(seen) > 200:
                    break
        finally:
            stop.set()
            inserter.join()
        assert len(seen) == len(set(seen))  # nothing twice
        assert seen[: len(before)] == before  # nothing skipped, same order


def test_a_list_answers_304_to_its_etag(web_server: WebServer) -> None:
    with writer(web_server) as alice:
        params = {"source": "etag", "limit": 5}
        first = alice.get("/contacts", params=params)
        tag = first.headers["etag"]
        again = alice.get("/contacts", params=params, headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        alice.post("/contacts/bulk", json={"items": contact_items("etag", 0, 1)})
        changed = alice.get("/contacts", params=params, headers={"If-None-Match": tag})
        assert changed.status_code == 200 and len(changed.json()["items"]) == 1


def test_null_clears_a_link_and_a_deleted_company_leaves_its_contacts(
    web_server: WebServer,
) -> None:
    with writer(web_server) as alice, writer(web_server, "dave@example.com") as dave:
        company = alice.post("/companies", json={"name": "Umbrella API"}).json()
        body = {"emails": ["ada@umbrella-api.test"], "company_id": company["id"]}
        contact = alice.post("/contacts", json=body).json()
        cleared = alice.patch(f"/contacts/{contact['id']}", json={"company_id": None})
        assert cleared.json()["company_id"] is None
        kept = alice.patch(f"/contacts/{contact['id']}", json={"first_name": None})
        assert kept.status_code == 200 and kept.json()["first_name"] == ""
        assert_problem(alice.patch(f"/contacts/{contact['id']}", json={"company_id": 2**30}), 422)
        alice.patch(f"/contacts/{contact['id']}", json={"company_id": company["id"]})
        assert dave.delete(f"/companies/{company['id']}").status_code == 204
        after = alice.get(f"/contacts/{contact['id']}").json()
        assert after["company_id"] is None and after["updated_at"] >= contact["updated_at"]
