"""My follow-ups over a real `mailmanager web` process: what alice sees, each action (done,
dismiss, snooze presets and date, "expects no reply", bulk), and the refusals: another
user's reminder by direct POST is 404 with nothing changed; managers act for their reports
only; CSRF."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.web.support import NOW, WebServer, csrf_of

R = models.Reminder


def _state(server: WebServer) -> dict[int, tuple[Any, ...]]:
    with server.session() as s:
        return {
            r.id: (r.status, r.due_at, r.snoozed_until, r.sent_count)
            for r in s.scalars(sa.select(R))
        }


@pytest.fixture(scope="module")
def initial(web_server: WebServer) -> dict[int, tuple[Any, ...]]:
    return _state(web_server)


@pytest.fixture(autouse=True)
def fresh(web_server: WebServer, initial: dict[int, tuple[Any, ...]]) -> Iterator[None]:
    """Every test starts from the synced reminders (the server is shared by the module)."""
    with web_server.session() as s, s.begin():
        for rid, (status, due_at, snoozed, sent) in initial.items():
            s.execute(
                sa.update(R.__table__)
                .where(R.__table__.c.id == rid)
                .values(status=status, due_at=due_at, snoozed_until=snoozed, sent_count=sent)
            )
        s.execute(sa.update(models.Thread.__table__).values(expect_reply=None))
    yield


def _post(client: httpx.Client, data: dict[str, Any], page: str = "/followups") -> httpx.Response:
    token = csrf_of(client.get(page).text) if "csrf" not in data else data.pop("csrf")
    return client.post("/followups", data={"csrf": token, **data})


def _status(server: WebServer, rid: int) -> str:
    with server.session() as s:
        return str(s.get(R, rid).status)  # type: ignore[union-attr]


def test_alice_sees_her_due_follow_ups_with_their_context(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    page = alice.get("/followups")
    assert page.status_code == 200
    assert len(web_server.template.alice_reminders) == 7  # the sample mailbox at NOW
    assert "À faire maintenant (7)" in page.text
    for rid in web_server.template.alice_reminders:
        assert f'id="followup-{rid}"' in page.text
    assert f'id="followup-{web_server.template.bob_reminder}"' not in page.text
    assert "Renouvellement du contrat de maintenance 2027" in page.text
    assert "attend votre réponse" in page.text  # why, in alice's language
    assert "depuis 9 jours ouvrés</strong> (10/11/2026)" in page.text  # how long, at NOW
    assert "Dernier message de Paul Girard" in page.text  # last message excerpt
    assert 'href="/threads/' in page.text
    assert "Pas de réponse attendue" in page.text


def test_done_and_dismiss_from_the_page(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    first, second = web_server.template.alice_reminders[:2]
    done = _post(alice, {"act": f"done:{first}"})
    assert done.status_code == 303
    assert done.headers["location"] == "/followups?ok=done&n=1"
    assert _status(web_server, first) == "done"
    assert _post(alice, {"act": f"dismiss:{second}"}).status_code == 303
    assert _status(web_server, second) == "dismissed"
    page = alice.get("/followups?ok=done&n=1")
    assert "C&#39;est fait : 1 relance(s)" in page.text
    assert f'id="followup-{first}"' not in page.text
    with web_server.session() as s:
        actors = s.scalars(
            sa.select(models.AuditLog.actor).where(models.AuditLog.target == f"reminder:{first}")
        ).all()
    assert "web:alice@example.com" in actors


@pytest.mark.parametrize(
    ("act", "low", "high"),
    [
        ("snooze_3d", NOW + timedelta(days=3), NOW + timedelta(days=3, minutes=10)),
        ("snooze_1w", NOW + timedelta(days=7), NOW + timedelta(days=7, minutes=10)),
        # Wednesday 10:00 Paris + 1 business day: Thursday 10:00 Paris (09:00 UTC).
        ("snooze_1bd", NOW + timedelta(days=1), NOW + timedelta(days=1, minutes=10)),
    ],
)
def test_snooze_presets(
    web_server: WebServer,
    signed_in: Callable[[str], httpx.Client],
    act: str,
    low: datetime,
    high: datetime,
) -> None:
    alice = signed_in("alice@example.com")
    rid = web_server.template.alice_reminders[0]
    assert _post(alice, {"act": f"{act}:{rid}"}).status_code == 303
    with web_server.session() as s:
        r = s.get(R, rid)
        assert r is not None and r.status == "snoozed" and r.snoozed_until is not None
        assert low <= r.snoozed_until <= high
    page = alice.get("/followups")
    assert "À venir (1)" in page.text  # snoozed: upcoming, no longer due


def test_snooze_to_a_date_and_a_date_in_the_past(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    rid = web_server.template.alice_reminders[1]
    ok = _post(alice, {"act": f"snooze_date:{rid}", f"date_{rid}": "2026-12-01"})
    assert ok.status_code == 303
    with web_server.session() as s:
        r = s.get(R, rid)
        assert r is not None and r.snoozed_until is not None
        start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 09:00 in Paris, her day's start
        assert start <= r.snoozed_until <= start + timedelta(minutes=10)
    other = web_server.template.alice_reminders[2]
    past = _post(alice, {"act": f"snooze_date:{other}", f"date_{other}": "2026-11-01"})
    assert past.status_code == 400
    assert "not in the future" in past.text
    assert _status(web_server, other) != "snoozed"
    missing = _post(alice, {"act": f"snooze_date:{other}"})
    assert missing.status_code == 400


def test_bulk_actions_on_checked_follow_ups(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    a, b, c = web_server.template.alice_reminders[:3]
    token = csrf_of(alice.get("/followups").text)
    reply = alice.post("/followups", data={"csrf": token, "act": "snooze_3d", "ids": [a, b]})
    assert reply.status_code == 303 and "n=2" in reply.headers["location"]
    assert [_status(web_server, i) for i in (a, b, c)] == ["snoozed", "snoozed", "pending"]
    nothing = alice.post("/followups", data={"csrf": token, "act": "done"})
    assert nothing.status_code == 400
    both = alice.post("/followups", data={"csrf": token, "act": "done", "ids": [a, c]})
    assert both.status_code == 303
    assert [_status(web_server, i) for i in (a, b, c)] == ["done", "snoozed", "done"]


def test_expects_no_reply_on_the_thread(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    rid = web_server.template.alice_reminders[2]
    with web_server.session() as s:
        r = s.get(R, rid)
        assert r is not None
        thread_id, kind = r.thread_id, r.kind
    assert _post(alice, {"act": f"expect_never:{rid}"}).status_code == 303
    with web_server.session() as s:
        thread = s.get(models.Thread, thread_id)
        assert thread is not None and thread.expect_reply == "never"
        if kind == "awaiting_reply":
            assert _status(web_server, rid) not in ("pending", "sent", "snoozed")


def test_another_salespersons_follow_up_is_refused_and_unchanged(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice, bob = signed_in("alice@example.com"), signed_in("bob@example.com")
    bobs = web_server.template.bob_reminder
    mine = web_server.template.alice_reminders[0]
    before = _state(web_server)
    for act in ("done", "dismiss", "snooze_3d", "expect_never"):
        refused = _post(alice, {"act": f"{act}:{bobs}"})
        assert refused.status_code == 404, act
    # A bulk POST mixing her own id with bob's changes nothing at all.
    token = csrf_of(alice.get("/followups").text)
    mixed = alice.post("/followups", data={"csrf": token, "act": "done", "ids": [mine, bobs]})
    assert mixed.status_code == 404
    assert _post(bob, {"act": f"done:{mine}"}).status_code == 404
    assert _post(alice, {"act": "done:999999"}).status_code == 404
    assert _post(alice, {"act": "done:abc"}).status_code == 400
    assert _post(alice, {"act": f"explode:{mine}"}).status_code == 400
    assert _state(web_server) == before
    assert f'id="followup-{bobs}"' in bob.get("/followups").text
    assert alice.get("/followups?user=bob@example.com").status_code == 404


def test_a_manager_sees_and_acts_for_their_reports_only(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    carol = signed_in("carol@example.com")
    page = carol.get("/followups")
    assert "Due now (7)" in page.text
    assert "alice@example.com" in page.text  # whose follow-up it is, and the filter
    assert '<select id="user-filter" name="user">' in page.text
    only = carol.get("/followups?user=alice@example.com")
    assert only.status_code == 200 and "Due now (7)" in only.text
    assert carol.get("/followups?user=bob@example.com").status_code == 404
    rid = web_server.template.alice_reminders[0]
    acted = _post(carol, {"act": f"done:{rid}", "user": "alice@example.com"})
    assert acted.status_code == 303
    assert acted.headers["location"].startswith("/followups?user=alice%40example.com")
    assert _status(web_server, rid) == "done"
    before = _state(web_server)
    assert _post(carol, {"act": f"done:{web_server.template.bob_reminder}"}).status_code == 404
    assert _state(web_server) == before


def test_an_admin_reads_no_one_elses_follow_ups(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    dave = signed_in("dave@example.com")
    page = dave.get("/followups")
    assert "Aucune relance en attente" in page.text
    before = _state(web_server)
    rid = web_server.template.alice_reminders[0]
    token = csrf_of(page.text)
    assert dave.post("/followups", data={"csrf": token, "act": f"done:{rid}"}).status_code == 404
    assert _state(web_server) == before


def test_csrf_and_sign_in_are_required_to_act(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    alice = signed_in("alice@example.com")
    rid = web_server.template.alice_reminders[0]
    before = _state(web_server)
    assert alice.post("/followups", data={"act": f"done:{rid}"}).status_code == 403
    assert alice.post("/followups", data={"act": f"done:{rid}", "csrf": "no"}).status_code == 403
    with web_server.client() as anonymous:
        token = csrf_of(anonymous.get("/signin").text)
        refused = anonymous.post("/followups", data={"act": f"done:{rid}", "csrf": token})
        assert refused.status_code == 401
        assert anonymous.get("/followups").status_code == 303
    assert _state(web_server) == before


def test_many_follow_ups_are_shown_a_page_at_a_time(
    web_server: WebServer, signed_in: Callable[[str], httpx.Client]
) -> None:
    """55 more follow-ups for alice: the first page shows 50 of her 62, soonest due first,
    with the totals and a link to the next page, which shows the other 12."""
    with web_server.session() as s, s.begin():
        who = sa.select(models.User.id).where(models.User.email == "alice@example.com")
        uid = s.scalars(who).one()
        extra = [
            R(
                user_id=uid,
                kind="awaiting_reply",
                cycle=900_000 + k,
                due_at=NOW - timedelta(days=30, minutes=k),  # before every synced one
                status="pending",
                contact_email=f"c{k}@customer.test",
                waiting_since=NOW - timedelta(days=40),
            )
            for k in range(55)
        ]
        s.add_all(extra)
        s.flush()
        ids = [r.id for r in extra]
    try:
        alice = signed_in("alice@example.com")
        first = alice.get("/followups")
        assert first.status_code == 200
        shown = [int(i) for i in re.findall(r'id="followup-(\d+)"', first.text)]
        assert shown == ids[::-1][:50]  # the longest overdue first
        assert "À faire maintenant (62)" in first.text
        nxt = re.search(r'<a href="(/followups\?[^"]+)" rel="next">', first.text)
        assert nxt is not None
        second = alice.get(html.unescape(nxt[1]))
        rest = [int(i) for i in re.findall(r'id="followup-(\d+)"', second.text)]
        assert rest[:5] == ids[::-1][50:]
        assert sorted(rest[5:]) == sorted(web_server.template.alice_reminders)
        assert 'rel="next"' not in second.text and "Revenir au début" in second.text
    finally:
        with web_server.session() as s, s.begin():
            s.execute(sa.delete(R.__table__).where(R.__table__.c.id.in_(ids)))
