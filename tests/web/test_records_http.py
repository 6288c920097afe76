"""Client records, threads, messages and the review queue over HTTP: every route, its
permissions, CSRF refusal. The real app (`create_app`) in process over a real database
(SQLite and PostgreSQL) filled by a real sync of two salespeople's mailboxes
(`tests.recordworld`); each rule is proved by trying to read what must be refused."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store
from mailmanager.services import records, signin
from mailmanager.web import app as web_app
from tests import recordworld as rw
from tests.recordworld import ALICE, BOB, CAROL, DAVE, SECRET

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
Clients = Callable[..., TestClient]


@pytest.fixture
def world(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> rw.World:
    return rw.build(tmp_path, db_url, factory)


@pytest.fixture
def client_for(world: rw.World) -> Iterator[Clients]:
    """`client_for(email, visibility=None)`: a client of the app signed in as `email`."""
    made: list[TestClient] = []

    def make(email: str | None, visibility: str | None = None) -> TestClient:
        w = world.with_visibility(visibility) if visibility else world
        app = web_app.create_app(w.cfg, w.factory, clock=lambda: NOW, send_mail=False)
        client = TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)
        if email is not None:
            with store.session_scope(w.factory) as s:
                token, info = signin.start_session(s, w.cfg, email, NOW)
            client.cookies.set("mm_session", token)
            client.headers["x-test-csrf"] = info.csrf
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def csrf(client: TestClient) -> str:
    return client.headers["x-test-csrf"]


def content_urls(message_id: int) -> list[str]:
    return [
        f"/messages/{message_id}",
        f"/messages/{message_id}?headers=1",
        f"/messages/{message_id}/body",
        f"/messages/{message_id}/body?remote=1",
        f"/messages/{message_id}/parts/1",
        f"/messages/{message_id}/raw",
    ]


def test_a_colleagues_message_by_direct_url(client_for: Clients, world: rw.World) -> None:
    bobs = world.ids["msg:b1@acme.fr"]
    for who, expected in ((ALICE, 403), (DAVE, 403), (BOB, 200), (CAROL, 200)):
        client = client_for(who)
        for url in content_urls(bobs):
            reply = client.get(url)
            assert reply.status_code == expected, (who, url)
            shown = SECRET.encode() in reply.content or b"secret catalogue" in reply.content
            assert shown == (expected == 200 and "/body" not in url), (who, url)
    # On no client record: a colleague may not even learn that it exists.
    private = world.ids["msg:p1@friends.example"]
    bob = client_for(BOB)
    for url in [*content_urls(private), f"/messages/{private}/explain"]:
        reply = bob.get(url)
        assert reply.status_code == 404 and "Diner" not in reply.text, url
    assert bob.get(f"/threads/{world.ids['thread:p1@friends.example']}").status_code == 404
    assert bob.get("/messages/999999").status_code == 404
    for url in ("/messages/99999999999999999999", "/messages/99999999999999999999/raw",
                "/threads/99999999999999999999", "/companies/99999999999999999999"):  # fmt: skip
        assert bob.get(url).status_code == 404, url
    with world.factory() as s:  # refused reads leave no "read" in the audit log
        audited = set(s.execute(sa.select(models.AuditLog.actor, models.AuditLog.target)).all())
    assert (f"web:{BOB}", f"message:{bobs}") in audited  # his own: allowed, audited
    assert not {(f"web:{who}", f"message:{bobs}") for who in (ALICE, DAVE)} & audited
    assert (f"web:{BOB}", f"message:{private}") not in audited
    # Signed out: sent to sign in, nothing shown.
    anonymous = client_for(None)
    thread = world.ids["thread:b1@acme.fr"]
    for url in [*content_urls(bobs), f"/messages/{bobs}/explain", f"/threads/{thread}",
                "/clients", f"/companies/{world.ids['acme']}", "/review"]:  # fmt: skip
        reply = anonymous.get(url)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/signin"), url
    for url in (f"/threads/{thread}/link", "/review/1/reject"):
        assert anonymous.post(url, data={"kind": "company", "ref": "acme"}).status_code in (
            401,
            403,
        )


def test_client_record_lists_a_colleagues_thread_per_visibility(
    client_for: Clients, world: rw.World
) -> None:
    acme = f"/companies/{world.ids['acme']}"
    page = client_for(ALICE).get(acme)
    assert page.status_code == 200
    assert "Catalogue 2027" in page.text and "Devis portes" in page.text
    assert SECRET not in page.text and "Voici notre devis" in page.text
    assert "bob-inbox" in page.text  # whose mailbox keeps the content
    assert "Catalogue 2027" not in client_for(ALICE, "none").get(acme).text
    assert SECRET in client_for(ALICE, "full").get(acme).text
    assert SECRET in client_for(CAROL).get(acme).text  # Bob's manager
    for url in (f"/contacts/{world.ids['jane']}", f"/opportunities/{world.ids['opp1']}"):
        reply = client_for(BOB).get(url)
        assert reply.status_code == 200 and "Jane Doe" in reply.text, url
    assert client_for(BOB).get("/companies/9999").status_code == 404
    found = client_for(BOB).get("/clients", params={"q": "acme"})
    assert found.status_code == 200 and f'href="{acme}"' in found.text


def test_thread_and_message_pages(client_for: Clients, world: rw.World) -> None:
    alice = client_for(ALICE)
    devis, a1 = world.ids["thread:a1@acme.fr"], world.ids["msg:a1@acme.fr"]
    thread = alice.get(f"/threads/{devis}")
    assert thread.status_code == 200 and "Merci Jane." in thread.text
    assert "Pièces jointes" not in thread.text and "Conversation" in thread.text  # French UI
    page = alice.get(f"/messages/{a1}")
    assert page.status_code == 200
    assert "<iframe" in page.text and 'sandbox="allow-popups' in page.text
    assert "devis.pdf" in page.text and "Pièces jointes" in page.text
    assert "Charger les images distantes" in page.text and "tracker.example" not in page.text
    assert "<script" not in page.text.replace('<script src="/static/', "")
    body = alice.get(f"/messages/{a1}/body")
    policy = body.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "img-src data:;" in policy and "sandbox" in policy
    for bad in ("<script", "onerror", "onclick", "javascript:", "tracker.example", "<form"):
        assert bad not in body.text
    assert "data:image/png;base64," in body.text  # the inline logo
    remote = alice.get(f"/messages/{a1}/body?remote=1")
    assert "https://tracker.example/open.gif" in remote.text
    assert "img-src data: https: http:" in remote.headers["content-security-policy"]
    headers = alice.get(f"/messages/{a1}?headers=1")
    assert "Message-ID" in headers.text and "&lt;a1@acme.fr&gt;" in headers.text
    text = alice.get(f"/messages/{a1}?view=text")
    assert "Voici notre devis." in text.text and "<iframe" not in text.text
    pdf = alice.get(f"/messages/{a1}/parts/3")
    assert pdf.content == b"%PDF-1.4 devis"
    assert pdf.headers["content-type"] == "application/octet-stream"
    assert pdf.headers["content-disposition"].startswith('attachment; filename="devis.pdf"')
    assert pdf.headers["x-content-type-options"] == "nosniff"
    assert alice.get(f"/messages/{a1}/parts/0").status_code == 404  # a body, not a part
    raw = alice.get(f"/messages/{a1}/raw")
    assert raw.content == rw.html_mail() or b"Message-ID: <a1@acme.fr>" in raw.content
    with world.factory() as s:
        reads = s.execute(
            sa.select(models.AuditLog.action, models.AuditLog.target).where(
                models.AuditLog.actor == f"web:{ALICE}"
            )
        ).all()
    assert {(a, t) for a, t in reads} == {
        ("thread.read", f"thread:{devis}"),
        ("message.read", f"message:{a1}"),
        ("message.read_part", f"message:{a1}"),
        ("message.read_raw", f"message:{a1}"),
    }
    why = client_for(BOB).get(f"/messages/{a1}/explain")  # metadata is enough to explain
    assert why.status_code == 200 and "jane@acme.fr" in why.text and "Voici" not in why.text
    bob_thread = client_for(BOB).get(f"/threads/{devis}")
    assert bob_thread.status_code == 200 and "Devis portes" in bob_thread.text
    assert "Merci Jane." not in bob_thread.text and "Voici notre devis" not in bob_thread.text


def _status(world: rw.World) -> dict[str, str]:
    with world.factory() as s:
        rows = s.execute(
            sa.select(models.Thread.subject, models.ReviewItem.status).join(
                models.Thread, models.Thread.id == models.ReviewItem.thread_id
            )
        ).all()
    return {subject: status for subject, status in rows}


def test_state_changes_need_csrf_and_a_reader(client_for: Clients, world: rw.World) -> None:
    alice, bob = client_for(ALICE), client_for(BOB)
    devis = world.ids["thread:a1@acme.fr"]
    queue = alice.get("/review")
    assert queue.status_code == 200 and "Devis portes" in queue.text
    assert (
        "Devis portes" not in bob.get("/review").text
        and "Catalogue 2027" in bob.get("/review").text
    )
    items = {}
    with world.factory() as s:
        for item_id, thread_id in s.execute(
            sa.select(models.ReviewItem.id, models.ReviewItem.thread_id)
        ):
            items[thread_id] = item_id
    devis_item = items[devis]
    opp1, opp2 = world.ids["opp1"], world.ids["opp2"]
    # No CSRF token: refused, nothing changes.
    assert alice.post(f"/review/{devis_item}/accept", data={"opportunity": opp1}).status_code == 403
    assert (
        alice.post(
            f"/threads/{devis}/link", data={"kind": "opportunity", "ref": "opp-1"}
        ).status_code
        == 403
    )
    # Another salesperson: refused (403: she sees that it exists, not its content).
    reply = bob.post(f"/review/{devis_item}/accept", data={"opportunity": opp1, "csrf": csrf(bob)})
    assert reply.status_code == 403
    reply = bob.post(f"/threads/{devis}/link",
                     data={"kind": "opportunity", "ref": "opp-1", "csrf": csrf(bob)})  # fmt: skip
    assert reply.status_code == 403
    assert _status(world)["Devis portes"] == "pending"
    # A candidate that is not one: 400.
    reply = alice.post(
        f"/review/{devis_item}/accept", data={"opportunity": 9999, "csrf": csrf(alice)}
    )
    assert reply.status_code == 400
    # One click: accepted with OPP-2, immediately on the opportunity's page.
    reply = alice.post(
        f"/review/{devis_item}/accept", data={"opportunity": opp2, "csrf": csrf(alice)}
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/review?done=accepted"
    assert _status(world)["Devis portes"] == "accepted"
    assert "Devis portes" in alice.get(f"/opportunities/{opp2}").text
    catalogue = items[world.ids["thread:b1@acme.fr"]]
    reply = bob.post(f"/review/{catalogue}/reject", data={"csrf": csrf(bob)})
    assert reply.status_code == 303 and _status(world)["Catalogue 2027"] == "rejected"
    # Link and unlink by hand, back to the page they came from.
    form = {"kind": "opportunity", "ref": str(opp2), "csrf": csrf(alice)}
    reply = alice.post(f"/threads/{devis}/unlink", data={**form, "next": f"/opportunities/{opp2}"})
    assert reply.status_code == 303
    assert reply.headers["location"].startswith(f"/opportunities/{opp2}?ok=unlink")
    assert "Devis portes" not in alice.get(f"/opportunities/{opp2}").text
    form = {"kind": "opportunity", "ref": "OPP-1", "csrf": csrf(alice)}
    reply = alice.post(f"/threads/{devis}/link", data={**form, "next": "https://evil.example/"})
    assert reply.status_code == 303 and reply.headers["location"].startswith(f"/threads/{devis}?")
    assert "Devis portes" in alice.get(f"/opportunities/{opp1}").text
    reply = alice.post(
        f"/threads/{devis}/link", data={"kind": "company", "ref": "nobody", "csrf": csrf(alice)}
    )
    assert reply.status_code == 400


def test_pages_in_english_for_an_english_user(client_for: Clients, world: rw.World) -> None:
    bob = client_for(BOB)
    page = bob.get(f"/messages/{world.ids['msg:b1@acme.fr']}")
    assert "Attachments" in page.text and "catalogue.bin" in page.text
    assert "Review" in bob.get("/review").text
    assert "Find a client" in bob.get("/clients").text
    refused = client_for(ALICE).get(f"/messages/{world.ids['msg:b1@acme.fr']}")
    assert "Contenu privé" in refused.text  # Alice reads French


def _remind(world: rw.World, who: str, thread: str, kind: str, reason: str) -> None:
    with store.session_scope(world.factory) as s:
        user_id = s.scalar(sa.select(models.User.id).where(models.User.email == who))
        s.add(
            models.Reminder(
                thread_id=world.ids[f"thread:{thread}"],
                user_id=user_id,
                kind=kind,
                cycle=world.ids[f"msg:{thread}"],
                due_at=NOW,
                status="pending",
                reason=reason,
                contact_email="jane@acme.fr",
            )
        )


def test_reminders_on_a_record_are_worded_in_the_users_language(
    client_for: Clients, world: rw.World
) -> None:
    _remind(world, ALICE, "a1@acme.fr", "awaiting_reply", "No reply from jane@acme.fr yet.")
    _remind(world, BOB, "b1@acme.fr", "escalation:needs_response", "Escalation about bob: ...")
    acme = f"/companies/{world.ids['acme']}"
    french = client_for(ALICE).get(acme)  # Alice reads French
    assert french.status_code == 200
    assert "Vous attendez une réponse de Jane Doe" in french.text
    assert "Jane Doe attend votre réponse" in french.text
    assert "No reply from" not in french.text and "Escalation about" not in french.text
    english = client_for(BOB).get(acme)
    assert "You are waiting for a reply from Jane Doe" in english.text
    assert "Jane Doe is waiting for your answer" in english.text


def test_a_colleagues_private_thread_is_on_no_page(
    client_for: Clients, world: rw.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "THREADS_PER_PAGE", 1)
    with store.session_scope(world.factory) as s:
        s.execute(
            sa.update(models.Thread)
            .where(models.Thread.id == world.ids["thread:b1@acme.fr"])
            .values(private_owner=BOB)
        )
    acme = f"/companies/{world.ids['acme']}"
    alice = client_for(ALICE)
    for page in (1, 2, 3, 4):
        reply = alice.get(acme, params={"page": page})
        assert reply.status_code == 200 and "Catalogue 2027" not in reply.text
        assert "Page 2 sur 2" in reply.text or page != 2
    assert "Page 1 sur 2" in alice.get(acme).text  # two threads: Bob's is not counted
    bob = client_for(BOB)
    assert "Page 1 of 3" in bob.get(acme).text
    assert "Catalogue 2027" in bob.get(acme, params={"page": 2}).text
    assert alice.get(acme, params={"page": 10**30}).status_code == 200  # past the end
