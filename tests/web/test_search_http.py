"""The search page over HTTP: the real app (`create_app`) in process over a real database
filled by a real sync (`tests.recordworld`); French and English; signed-out redirect; what a
colleague may not find is refused in the page as in the service."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from httpx import Response
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


def shown(reply: Response) -> str:
    """A page's HTML without the marks of the searched words (`<mark>`), so that a phrase
    is found (or surely absent) whichever of its words were marked."""
    return re.sub(r"</?mark>", "", reply.text)


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
    assert f'href="/threads/{thread}"' in page.text and "Devis portes" in shown(page)
    assert "<mark>Devis</mark> portes" in page.text  # the searched word is marked
    assert "Merci Jane" in shown(page)  # her own mail: the excerpt shows
    assert "Résultats 1–2" in page.text
    nothing = alice.get("/search", params={"q": "introuvable"})
    assert "Aucun message trouvé" in nothing.text
    bad = alice.get("/search", params={"since": "demain"})
    assert bad.status_code == 200 and "Date non comprise" in bad.text


def test_english_and_what_a_colleague_may_not_find(client_for: Clients) -> None:
    bob = client_for(BOB)  # locale en
    page = bob.get("/search", params={"q": "devis"})
    assert "Search the mail" in page.text and "Devis portes" in shown(page)
    assert "Content for its mailbox owner only" in page.text  # metadata only
    assert "Merci Jane" not in shown(page) and "Voici notre devis" not in shown(page)
    assert "No message found" in bob.get("/search", params={"q": "voici"}).text
    assert "No message found" in bob.get("/search", params={"person": "max@friends.example"}).text
    alice = client_for(ALICE)
    assert "Aucun message trouvé" in alice.get("/search", params={"q": "confidentiel"}).text
    carol = client_for(CAROL)  # Bob's manager reads his mail
    assert SECRET in shown(carol.get("/search", params={"q": "confidentiel"}))


def test_paging_links(client_for: Clients) -> None:
    alice = client_for(ALICE)
    page = alice.get("/search", params={"person": "jane@acme.fr", "offset": "0"})
    assert "Page suivante" not in page.text  # four hits fit one page
    deep = alice.get("/search", params={"person": "jane@acme.fr", "offset": "2"})
    assert "Page précédente" in deep.text and "Résultats 3–4" in deep.text


def test_a_page_from_a_hit_or_a_malformed_one_falls_back_to_its_offset(
    client_for: Clients,
) -> None:
    """`before`/`after` (the next and previous links' keyset, `services.search.Position`)
    are checked by the service tests; a hand-made or damaged one is ignored, not an error."""
    alice = client_for(ALICE)
    params = {"person": "jane@acme.fr", "offset": "2"}
    by_offset = shown(alice.get("/search", params=params))
    for bad in ("before", "after"):
        reply = alice.get("/search", params={**params, bad: "2026-13-01T00:00:00~x"})
        assert reply.status_code == 200 and shown(reply) == by_offset
    page = alice.get("/search", params={"person": "jane@acme.fr", "offset": "1"})
    prev = re.search(r'href="(/search\?[^"]+)">Page précédente', page.text)
    assert prev is not None and "offset=0" in prev[1] and "after=" not in prev[1]
