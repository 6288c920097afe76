"""Reminder lifecycle on a real database (SQLite and PostgreSQL): repeats and escalation,
snooze, the re-check at send time, dormant opportunities, clients at risk, and passes whose
work follows what changed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from mailmanager.db import models, store
from mailmanager.db.models import Reminder
from mailmanager.reminders import actions as reminder_actions
from mailmanager.sync import engine as sync
from tests.mailgen import day, make
from tests.remindergen import ALICE, ASK, JEAN, World

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = World(db_url, tmp_path, "max_repeats = 1\nrepeat_days = 2\nescalate_after = 1\n")
    yield w
    w.close()


def ask(world: World, when: float = 0, msgid: str = "q1@example.com") -> None:
    world.sent(make(ALICE, JEAN, "Devis", body=ASK, msgid=msgid, at=day(when)))


def crm(world: World, status: str = "prospect", stage: str = "open") -> tuple[int, int, int]:
    """Acme (domain acme-industrie.fr), its contact Jean, and Alice's open opportunity."""
    with world.session() as s, s.begin():
        alice = s.scalars(sa.select(models.User).where(models.User.email == "alice@example.com"))
        owner = alice.one_or_none()
        if owner is None:
            owner = models.User(email="alice@example.com", name="Alice Martin")
            s.add(owner)
            s.flush()
        acme = models.Company(name="Acme Industrie")
        s.add(acme)
        s.flush()
        s.add(models.CompanyDomain(company_id=acme.id, domain="acme-industrie.fr"))
        jean = models.Contact(
            first_name="Jean",
            last_name="Dupont",
            company_id=acme.id,
            owner_id=owner.id,
            status=status,
        )
        s.add(jean)
        s.flush()
        s.add(models.ContactEmail(contact_id=jean.id, email="jean.dupont@acme-industrie.fr"))
        opp = models.Opportunity(
            reference="OPP-2041",
            title="Portes coupe-feu",
            owner_id=owner.id,
            company_id=acme.id,
            created_at=day(-10),
            stage=stage,
        )
        s.add(opp)
        s.flush()
        s.add(models.OpportunityContact(opportunity_id=opp.id, contact_id=jean.id))
        return acme.id, jean.id, opp.id


def test_repeats_then_escalates_to_the_manager_then_stops(world: World) -> None:
    ask(world)
    world.sync(day(3.5))
    (first,) = world.send_digest("alice@example.com", day(3.5))  # Thursday 22:00 in Paris
    assert first.repeat == 0
    # Next firing: 2 business days after the sending, counted from Friday 09:00.
    again = datetime(2026, 11, 10, 9, tzinfo=PARIS)
    assert world.evaluate(again - timedelta(minutes=1)).counts == {}
    report = world.evaluate(again)
    assert report.counts == {"repeat": 1, "escalate": 1}
    world.sync(again)
    (second,) = world.send_digest("alice@example.com", again)
    assert (second.reminder_id, second.repeat) == (first.reminder_id, 1)
    (boss,) = world.send_digest("bob@example.com", again)
    assert boss.kind == "awaiting_reply" and boss.escalated_from == "alice@example.com"
    assert boss.thread_id == first.thread_id and boss.reminder_id != first.reminder_id
    # max_repeats = 1: no third sending, no second escalation.
    assert world.evaluate(day(30)).counts == {}
    assert [(r.kind, r.status, r.sent_count) for r in world.reminders()] == [
        ("awaiting_reply", "sent", 2),
        ("escalation:awaiting_reply", "sent", 1),
    ]
    # A reply now cancels nothing that is sent; a new follow-up starts a new cycle.
    ask(world, when=31, msgid="q2@example.com")
    world.sync(day(31.1))
    assert world.kinds() == ["awaiting_reply"]
    assert {r.cycle for r in world.reminders()} == {first.cycle, world.reminders()[-1].cycle}
    assert world.reminders()[-1].cycle != first.cycle


def test_snooze_then_due_again(world: World) -> None:
    ask(world)
    world.sync(day(3.5))
    (item,) = world.due("alice@example.com", day(3.5))
    with store.session_scope(world.factory) as s:
        until = reminder_actions.snooze(s, world.cfg, item.reminder_id, "2bd", day(3.5))
    assert until == datetime(2026, 11, 10, 9, tzinfo=PARIS)
    world.sync(until)
    assert world.due("alice@example.com", until - timedelta(minutes=1)) == []
    (back,) = world.send_digest("alice@example.com", until)
    assert back.reminder_id == item.reminder_id
    (r,) = world.reminders()
    assert (r.status, r.sent_count, r.snoozed_until) == ("sent", 1, None)


def test_dismissed_stays_dismissed_for_its_cycle(world: World) -> None:
    ask(world)
    world.sync(day(3.5))
    (item,) = world.due("alice@example.com", day(3.5))
    with store.session_scope(world.factory) as s:
        reminder_actions.close(s, item.reminder_id, "dismissed")
    world.sync(day(10))
    assert world.evaluate(day(10)).counts == {}
    assert world.due("alice@example.com", day(10)) == []


def test_a_reply_synced_without_the_hook_is_caught_at_send_time(world: World) -> None:
    ask(world)
    world.sync(day(0.1))
    world.received(
        make(
            JEAN,
            ALICE,
            "RE: Devis",
            body="C'est noté, je valide la commande.",
            msgid="r@acme.fr",
            reply_to="q1@example.com",
            at=day(2),
        )
    )
    with time_machine.travel(day(3.5), tick=False):
        sync.Syncer(world.cfg, world.factory, hooks=[]).sync("alice")
    assert world.kinds() == ["awaiting_reply"]  # nobody re-evaluated the thread yet
    assert world.due("alice@example.com", day(3.5)) == []  # the re-check cancels it
    assert world.kinds("cancelled") == ["awaiting_reply"]


def test_dormant_opportunity(world: World) -> None:
    _, _, opp = crm(world)
    ask(world)
    world.received(
        make(
            JEAN,
            ALICE,
            "RE: Devis",
            body="Nous étudions votre offre.",
            msgid="r@acme.fr",
            reply_to="q1@example.com",
            at=day(1),
        )
    )
    world.sent(
        make(
            ALICE,
            JEAN,
            "RE: Devis",
            body="Merci, bonne journée",
            msgid="m@example.com",
            reply_to="r@acme.fr",
            at=day(1.2),
        )
    )
    world.sync(day(1.3))
    with world.session() as s, s.begin():
        tid = s.scalars(sa.select(models.Thread.id)).one()
        s.add(models.Link(thread_id=tid, target_kind="opportunity", target_id=opp, method="manual"))
    assert world.evaluate(day(2)).targets >= 1
    assert world.evaluate(day(31)).counts == {}  # 30 days after day(1.2) is day(31.2)
    assert world.evaluate(day(31.3)).counts == {"create": 1}
    world.sync(day(31.3))
    (item,) = world.due("alice@example.com", day(31.3))
    assert item.kind == "dormant_opportunity" and item.thread_id is None
    assert (item.opportunity_ref, item.opportunity_title) == ("OPP-2041", "Portes coupe-feu")
    assert item.company_name == "Acme Industrie" and item.waiting_since == day(1.2)
    # A new exchange in a linked thread ends the dormancy at once (sync hook).
    world.received(
        make(
            JEAN,
            ALICE,
            "RE: Devis",
            body="Nous revenons vers vous.",
            msgid="r2@acme.fr",
            reply_to="m@example.com",
            at=day(32),
        )
    )
    world.sync(day(32.1))
    assert world.reminders(Reminder.kind == "dormant_opportunity")[0].status == "cancelled"
    # Won: nothing more, and the opportunity leaves the schedule.
    with world.session() as s, s.begin():
        s.get_one(models.Opportunity, opp).stage = "won"
    assert world.evaluate(day(80)).counts.get("create", 0) == 0
    assert (
        world.reminders(Reminder.kind == "dormant_opportunity", Reminder.status == "pending") == []
    )


def test_client_silent_beyond_its_rhythm_is_at_risk(db_url: str, tmp_path: Path) -> None:
    w = World(db_url, tmp_path, "at_risk_factor = 2\n")
    try:
        company, _, _ = crm(w, status="client", stage="won")
        for i, when in enumerate((-364, -273, -182, -91, 0)):
            w.received(
                make(
                    JEAN,
                    ALICE,
                    f"Commande {i}",
                    body="Nouvelle commande ci-jointe.",
                    msgid=f"o{i}@acme.fr",
                    at=day(when),
                )
            )
            w.sent(
                make(
                    ALICE,
                    JEAN,
                    f"RE: Commande {i}",
                    body="Merci, bien reçu.",
                    msgid=f"a{i}@example.com",
                    reply_to=f"o{i}@acme.fr",
                    at=day(when + 0.1),
                )
            )
        w.sync(day(0.5))
        first = w.evaluate(day(1))
        assert first.targets >= 1 and first.counts == {}
        assert w.evaluate(day(180)).counts == {}  # the rhythm is ~91 days: at risk after ~182
        assert w.evaluate(day(183)).counts == {"create": 1}
        (r,) = w.reminders(Reminder.kind == "at_risk_client")
        assert (r.company_id, r.target, r.user_id) == (
            company,
            f"company:{company}",
            w.user_id("alice@example.com"),
        )
        w.sync(day(183))
        (item,) = w.due("alice@example.com", day(183))
        assert item.kind == "at_risk_client" and item.company_name == "Acme Industrie"
        assert "Acme Industrie" in item.reason
    finally:
        w.close()


def test_a_pass_with_nothing_changed_reads_nothing(world: World) -> None:
    crm(world)
    ask(world)
    world.sync(day(0.1))
    first = world.evaluate(day(0.2))
    assert (first.threads, first.targets) == (1, 1)  # the open opportunity, never evaluated
    second = world.evaluate(day(0.3))
    assert (second.threads, second.targets) == (0, 0)
    with world.session() as s:
        checks = s.execute(sa.select(models.ReminderCheck.target_kind)).scalars().all()
    assert sorted(checks) == ["opportunity"]
