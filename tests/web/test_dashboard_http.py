"""Tableau de bord / Dashboard over HTTP: the real app (`create_app`) in process over a real
database (SQLite and PostgreSQL) holding the hand-made world of `tests/integration/test_kpis`
(alice and bob, salespeople managed by carol). Who sees which figures is proved by asking
for what must be refused."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.db import configrows, store
from mailmanager.services import signin
from mailmanager.web import app as web_app
from tests.integration.test_kpis import world, write_team_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
Clients = Callable[[str | None], TestClient]


@pytest.fixture
def team(tmp_path: Path, db_url: str, factory: sessionmaker[Session]) -> config.Config:
    cfg = write_team_config(tmp_path, db_url)
    with factory() as s:
        configrows.ensure_config_rows(s, cfg)
        s.commit()
        world(s)
    return cfg


@pytest.fixture
def client_for(team: config.Config, factory: sessionmaker[Session]) -> Iterator[Clients]:
    made: list[TestClient] = []

    def make(email: str | None) -> TestClient:
        app = web_app.create_app(team, factory, clock=lambda: NOW, send_mail=False)
        client = TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)
        if email is not None:
            with store.session_scope(factory) as s:
                token, _ = signin.start_session(s, team, email, NOW)
            client.cookies.set("mm_session", token)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def kpi(page: str, name: str) -> str:
    found = re.search(rf'<dd id="kpi-{name}">([^<]*)</dd>', page)
    assert found, name
    return found.group(1).strip()


def table(page: str, table_id: str) -> list[list[str]]:
    found = re.search(rf'<table class="figures" id="{table_id}">.*?</table>', page, re.S)
    assert found, table_id
    root = ElementTree.fromstring(found.group(0))
    return [
        ["".join(cell.itertext()).strip() for cell in row]
        for row in root.iter("tr")
        if row.find("td") is not None
    ]


def test_signed_out_is_sent_to_sign_in(client_for: Clients) -> None:
    reply = client_for(None).get("/dashboard")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/signin?next=/dashboard"
    assert client_for(None).get("/dashboard/people/alice@example.com").status_code == 303


def test_salesperson_sees_own_figures_only(client_for: Clients) -> None:
    alice = client_for("alice@example.com")
    page = alice.get("/dashboard")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Tableau de bord</h1>" in html and 'href="/dashboard"' in html
    assert kpi(html, "median").startswith("3.0")
    # Over 8 weeks, the reminder answered on 10 Nov counts as done too.
    assert [kpi(html, k) for k in ("unanswered", "done", "overdue", "churn")] == [
        "1",
        "2",
        "1",
        "1",
    ]
    weeks = table(html, "activity-table")
    assert weeks[-2:] == [["2026-W47", "1", "1"], ["2026-W48", "2", "1"]]
    assert len(weeks) == 8
    assert table(html, "segments-table") == [
        ["VIP", "0"],
        ["Actifs", "2"],
        ["À risque", "1"],
        ["Dormants", "0"],
    ]
    assert "people-table" not in html and "Bob" not in html
    assert "style=" not in html and "<script>" not in html
    assert html.count("<svg") == 2
    assert "Old Corp" in html

    # Another salesperson's figures: not found, as if they did not exist.
    assert alice.get("/dashboard/people/bob@example.com").status_code == 404
    assert alice.get("/dashboard/people/carol@example.com").status_code == 404
    assert alice.get("/dashboard/people/nobody@example.com").status_code == 404
    own = alice.get("/dashboard/people/alice@example.com")
    assert own.status_code == 200 and kpi(own.text, "median").startswith("3.0")

    bob = client_for("bob@example.com").get("/dashboard")
    assert bob.status_code == 200
    assert table(bob.text, "activity-table")[-2:] == [
        ["2026-W47", "2", "2"],
        ["2026-W48", "1", "0"],
    ]
    assert kpi(bob.text, "median").startswith("24.0") and "Old Corp" not in bob.text


def test_manager_sees_team_with_breakdown(client_for: Clients) -> None:
    carol = client_for("carol@example.com")
    page = carol.get("/dashboard")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Dashboard</h1>" in html
    assert kpi(html, "median").startswith("4.0") and kpi(html, "overdue") == "2"
    assert table(html, "activity-table")[-2:] == [["2026-W47", "3", "3"], ["2026-W48", "2", "1"]]
    people = table(html, "people-table")
    assert [row[0] for row in people] == ["Alice Martin", "Bob Smith", "Carol Chef"]
    assert people[1] == ["Bob Smith", "24.0 h", "0", "0", "1", "0", "5"]
    bob = carol.get("/dashboard/people/bob@example.com")
    assert bob.status_code == 200 and "Bob Smith" in bob.text
    assert table(bob.text, "activity-table")[-1] == ["2026-W48", "1", "0"]


def test_admin_sees_own_figures_only(client_for: Clients) -> None:
    dave = client_for("dave@example.com")
    page = dave.get("/dashboard")
    assert page.status_code == 200
    assert "people-table" not in page.text and "Alice" not in page.text
    assert all(row[1:] == ["0", "0"] for row in table(page.text, "activity-table"))
    assert dave.get("/dashboard/people/alice@example.com").status_code == 404
    nav = page.text
    assert nav.index('href="/followups"') < nav.index('href="/dashboard"')
