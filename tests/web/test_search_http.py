"""The search page over HTTP: the real app (`create_app`) in process over a real database
filled by a real sync (`tests.recordworld`); French and English; signed-out redirect; what a
colleague may not find is refused in the page as in the service."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import store
from mailmanager.services import signin
from mailmanager.web import app as web_app
from tests import recordworld as rw
from tests.recordworld import ALICE, BOB, CAROL, SECRET

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
    made: list[TestClient] = []

    def make(email: str | None) -> TestClient:
        app = web_app.create_app(world.cfg, world.factory, clock=lambda: NOW, send_mail=False)
        client = TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)
        if email is not None:
            with store.session_scope(world.factory) as s:
                token, _info = signin.start_session(s, world.cfg, email, NOW)
            client.cookies.set("mm_session", token)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def test_signed_out_is_sent_to_sign_in(client_for: Clients) -> None:
    reply = client_for(None).get("/search?q=devis")
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/signin?next=")


def test_the_form_and_results_in_french(client_for: Clients, world: rw.World) -> None:
    alice = client_for(ALICE)  # locale fr
    empty = alice.get("/search")
    assert empty.status_code == 200
    assert "Rechercher dans les messages" in empty.text and 'href="/search"' in empty.text
    assert "Aucun message trouvé" not in empty.text  # nothing asked yet
    page = alice.get("/search", params={"q": "devis", "company": "acme"})
    assert page.status_code == 200
    thread = world.ids["thread:a1@acme.fr"]
    assert f'href="/threads/{thread}"' in page.text and "Devis portes" in page.text
    assert "Merci Jane" in page.text  # her own mail: the excerpt shows
    assert "Résultats 1–2" in page.text
    nothing = alice.get("/search", params={"q": "introuvable"})
    assert "Aucun message trouvé" in nothing.text
    bad = alice.get("/search", params={"since": "demain"})
    assert bad.status_code == 200 and "Date non comprise" in bad.text


def test_english_and_what_a_colleague_may_not_find(client_for: Clients) -> None:
    bob = client_for(BOB)  # locale en
    page = bob.get("/search", params={"q": "devis"})
    assert "Search the mail" in page.text and "Devis portes" in page.text
    assert "Content for its mailbox owner only" in page.text  # metadata only
    assert "Merci Jane" not in page.text and "Voici notre devis" not in page.text
    assert "No message found" in bob.get("/search", params={"q": "voici"}).text
    assert "No message found" in bob.get("/search", params={"person": "max@friends.example"}).text
    alice = client_for(ALICE)
    assert "Aucun message trouvé" in alice.get("/search", params={"q": "confidentiel"}).text
    carol = client_for(CAROL)  # Bob's manager reads his mail
    assert SECRET in carol.get("/search", params={"q": "confidentiel"}).text


def test_paging_links(client_for: Clients) -> None:
    alice = client_for(ALICE)
    page = alice.get("/search", params={"person": "jane@acme.fr", "offset": "0"})
    assert "Page suivante" not in page.text  # four hits fit one page
    deep = alice.get("/search", params={"person": "jane@acme.fr", "offset": "2"})
    assert "Page précédente" in deep.text and "Résultats 3–4" in deep.text
