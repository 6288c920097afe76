"""Reminders follow their thread and records (issue #17): they show the thread's current
links, their state follows the replies (answered once sent), dormant-opportunity items
name the opportunity and a person, and a post to a mailing list awaits no reply. On real
synced threads (memory connector → sync → database), SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailmanager.db import models, store
from mailmanager.db.models import Reminder
from mailmanager.notify import digest
from mailmanager.reminders import actions as reminder_actions
from mailmanager.services import curation, queries
from tests.integration.notify_support import run_cli
from tests.integration.test_reminders_lifecycle import crm
from tests.mailgen import day, make
from tests.remindergen import ALICE, ASK, JEAN, World

LIST = "Liste Dev <dev@lists.acme-industrie.fr>"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = World(db_url, tmp_path)
    yield w
    w.close()


def ask(world: World, to: str | list[str] = JEAN, msgid: str = "q1@example.com") -> None:
    world.sent(make(ALICE, to, "Devis portes coupe-feu", body=ASK, msgid=msgid, at=day(0)))


def reply(world: World, at: float, msgid: str = "r1@acme.fr") -> None:
    body = "Bonjour Alice,\nNous validons la commande.\nJean"
    world.received(
        make(
            JEAN, ALICE, "RE: Devis", body=body, msgid=msgid, reply_to="q1@example.com", at=day(at)
        )
    )


def opportunity(world: World, ref: str, title: str, contact: int) -> int:
    with world.session() as s, s.begin():
        owner = s.scalars(
            sa.select(models.User.id).where(models.User.email == "alice@example.com")
        ).one()
        opp = models.Opportunity(
            reference=ref, title=title, owner_id=owner, created_at=day(-10), stage="open"
        )
        s.add(opp)
        s.flush()
        s.add(models.OpportunityContact(opportunity_id=opp.id, contact_id=contact))
        return opp.id


# --- item 3: a reminder shows the thread's current links --------------------------------------


def test_a_review_accepted_after_the_reminder_moves_its_opportunity(world: World) -> None:
    _, jean, first = crm(world)  # Jean's open opportunity OPP-2041...
    newest = opportunity(world, "OPP-2063", "Portes coupe-feu, bâtiment B", jean)  # ...and a second
    ask(world)
    world.sync(day(0.05))  # two candidates: the matcher asks (review), links none
    (r,) = world.reminders()
    assert r.kind == "awaiting_reply" and r.opportunity_id == newest  # as created
    with world.session() as s:
        (item,) = s.scalars(sa.select(models.ReviewItem)).all()
    with store.session_scope(world.factory) as s:
        choice = curation.resolve_target(s, world.cfg, "opportunity", "OPP-2041")
        curation.accept_review(s, world.cfg, item.id, choice, "cli:alice")
    assert world.reminders()[0].opportunity_id == newest  # the row keeps its ids...
    world.sync(day(3.5))
    (due,) = world.due("alice@example.com", day(3.5))  # ...the digest reads the links now
    assert (due.opportunity_ref, due.opportunity_title) == ("OPP-2041", "Portes coupe-feu")
    assert due.contact_name == "Jean Dupont" and due.company_name == "Acme Industrie"
    text = digest.render([due], digest.Recipient("alice@example.com", "Alice", "fr", "UTC")).text
    assert "Opportunité : OPP-2041 — Portes coupe-feu" in text and "OPP-2063" not in text
    with world.session() as s:
        (line,) = reminder_actions.list_reminders(s)
    assert line.opportunity == "OPP-2041 — Portes coupe-feu" and line.company == "Acme Industrie"
    assert line.contact == "Jean Dupont <jean.dupont@acme-industrie.fr>"
    assert first != newest
    listed = run_cli(world.config_path, "reminders", "list")
    assert listed.returncode == 0, listed.stderr
    assert "opportunity: OPP-2041 — Portes coupe-feu" in listed.stdout
    assert "OPP-2063" not in listed.stdout


# --- item 4: a dormant opportunity names the opportunity and a person ---------------------------


def test_a_dormant_opportunity_item_names_the_opportunity_and_its_contact(world: World) -> None:
    _, _, opp = crm(world)
    ask(world)
    reply(world, 1)
    world.sync(day(1.3))
    with world.session() as s, s.begin():
        tid = s.scalars(sa.select(models.Thread.id)).one()
        s.add(models.Link(thread_id=tid, target_kind="opportunity", target_id=opp, method="manual"))
    world.evaluate(day(2))
    assert world.evaluate(day(31.3)).counts.get("create") == 1
    world.sync(day(31.3))
    items = [i for i in world.due("alice@example.com", day(31.3)) if i.thread_id is None]
    (item,) = items
    assert item.kind == "dormant_opportunity"
    assert item.subject == "OPP-2041 — Portes coupe-feu"
    assert (item.contact_name, item.contact_email, item.company_name) == (
        "Jean Dupont",
        "jean.dupont@acme-industrie.fr",
        "Acme Industrie",
    )
    fr = digest.render([item], digest.Recipient("alice@example.com", "Alice", "fr", "UTC")).text
    assert f"1. OPP-2041 — Portes coupe-feu  [#{item.reminder_id}]" in fr
    assert "Contact : Jean Dupont <jean.dupont@acme-industrie.fr> — Acme Industrie" in fr
    assert "(sans objet)" not in fr and "Opportunité :" not in fr  # the title says it
    en = digest.render([item], digest.Recipient("alice@example.com", "Alice", "en", "UTC")).text
    assert f"1. OPP-2041 — Portes coupe-feu  [#{item.reminder_id}]" in en
    assert "Contact: Jean Dupont <jean.dupont@acme-industrie.fr> — Acme Industrie" in en
    assert "(no subject)" not in en
    # Without a contact on the opportunity: no person, and the company as the company.
    with world.session() as s, s.begin():
        s.execute(sa.delete(models.OpportunityContact))
    (bare,) = [i for i in world.due("alice@example.com", day(31.3)) if i.thread_id is None]
    assert (bare.contact_name, bare.contact_email) == ("", "")
    fr = digest.render([bare], digest.Recipient("alice@example.com", "Alice", "fr", "UTC")).text
    assert "Contact :" not in fr and "Société : Acme Industrie" in fr
    en = digest.render([bare], digest.Recipient("alice@example.com", "Alice", "en", "UTC")).text
    assert "Contact:" not in en and "Company: Acme Industrie" in en


# --- item 5: a sent reminder is answered when the reply comes ----------------------------------


def test_a_sent_reminder_is_answered_when_the_client_replies(world: World) -> None:
    ask(world)
    world.sync(day(3.5))
    (sent,) = world.send_digest("alice@example.com", day(3.5))
    assert [r.status for r in world.reminders()] == ["sent"]
    reply(world, 3.6)
    world.sync(day(3.7))  # the sync hook re-evaluates the thread
    (r,) = world.reminders(Reminder.id == sent.reminder_id)
    assert (r.status, r.sent_count) == ("answered", 1)
    assert world.due("alice@example.com", day(30)) == []
    with world.session() as s:
        counts = queries.reminder_counts(s)
        answered = reminder_actions.list_reminders(s, status="answered")
    assert counts["answered"] == 1 and counts["sent"] == 0
    assert [line.id for line in answered] == [sent.reminder_id]
    # A later pass leaves it answered (closed for its cycle).
    assert world.evaluate(day(40)).counts.get("revive") is None
    assert world.reminders(Reminder.id == sent.reminder_id)[0].status == "answered"


def test_a_newer_follow_up_closes_the_sent_reminder_it_replaces(world: World) -> None:
    ask(world)
    world.sync(day(3.5))
    (sent,) = world.send_digest("alice@example.com", day(3.5))
    world.sent(
        make(
            ALICE,
            JEAN,
            "RE: Devis",
            body=ASK,
            msgid="q2@example.com",
            reply_to="q1@example.com",
            at=day(4),
        )
    )
    world.sync(day(4.1))
    by_status = {r.id: r.status for r in world.reminders()}
    assert by_status[sent.reminder_id] == "cancelled"  # not answered: superseded
    assert sorted(by_status.values()) == ["cancelled", "pending"]


# --- item 6: a post to a mailing list awaits no reply ------------------------------------------


def test_a_post_whose_copy_comes_back_through_a_list_awaits_no_reply(world: World) -> None:
    ask(world, to=LIST, msgid="post@example.com")
    world.sync(day(0.05))
    assert world.kinds() == ["awaiting_reply"]  # the list's copy has not come back yet
    copy = make(
        ALICE,
        LIST,
        "[dev] Devis portes coupe-feu",
        body=ASK,
        msgid="post@example.com",
        at=day(0),
        headers={"List-Id": "Liste Dev <dev.lists.acme-industrie.fr>", "Precedence": "list"},
    )
    world.received(copy)
    world.sync(day(0.1))
    assert world.kinds() == [] and world.kinds("cancelled") == ["awaiting_reply"]
    with world.session() as s:
        assert s.scalars(sa.select(models.Message.list_id)).all() == ["dev.lists.acme-industrie.fr"]


def test_an_address_known_as_a_list_awaits_no_reply(world: World) -> None:
    world.received(
        make(
            "Marc <marc@acme-industrie.fr>",
            LIST,
            "[dev] Planning",
            body="Le planning de la semaine.",
            msgid="l1@acme.fr",
            at=day(-2),
            headers={"List-Id": "<dev.lists.acme-industrie.fr>"},
        )
    )
    world.sync(day(-1.9))
    ask(world, to=LIST)
    world.sent(make(ALICE, [LIST, JEAN], "Réunion", body=ASK, msgid="q3@example.com", at=day(0.1)))
    world.sync(day(0.2))
    # Only the message that also went to Jean waits, for Jean.
    (r,) = world.reminders()
    assert (r.kind, r.contact_email) == ("awaiting_reply", "jean.dupont@acme-industrie.fr")


def test_mail_only_to_our_role_addresses_and_users_awaits_no_reply(world: World) -> None:
    ask(world, to=["Ventes <ventes@example.com>", "Bob Smith <bob@example.com>"])
    world.sync(day(3.5))
    assert world.reminders() == []
