"""Thread reminders on real synced threads (memory connector → sync → database), on SQLite and
PostgreSQL: what creates, cancels, postpones or replaces an awaiting-reply or needs-response
reminder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from mailmanager.db import models
from mailmanager.db.models import Reminder
from tests.mailgen import day, make
from tests.remindergen import ALICE, ASK, JEAN, MARIE, World, dsn

PARIS = ZoneInfo("Europe/Paris")
# day(0) is Monday 2 November 2026, 09:00 UTC (10:00 in Paris); 11 November is a holiday.
THURSDAY_10H = datetime(2026, 11, 5, 10, tzinfo=PARIS)


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = World(db_url, tmp_path)
    yield w
    w.close()


def ask(world: World, msgid: str = "q1@example.com", body: str = ASK, to: str = JEAN) -> None:
    world.sent(make(ALICE, to, "Devis portes coupe-feu", body=body, msgid=msgid, at=day(0)))


def test_awaiting_reply_waits_for_the_sync_then_a_reply_cancels_it(world: World) -> None:
    ask(world)
    world.sync(day(0.05))
    (r,) = world.reminders()
    assert (r.kind, r.status, r.contact_email) == (
        "awaiting_reply",
        "pending",
        "jean.dupont@acme-industrie.fr",
    )
    assert r.due_at == THURSDAY_10H  # 3 business days, in Alice's time zone
    assert r.waiting_since == day(0) and r.user_id == world.user_id("alice@example.com")

    # Due, but the mailbox was last synced before the due time: a reply may be waiting.
    assert world.due("alice@example.com", day(3.5)) == []
    world.sync(day(3.5))
    (item,) = world.due("alice@example.com", day(3.5))
    assert item.kind == "awaiting_reply" and item.reminder_id == r.id
    assert item.subject == "Devis portes coupe-feu"
    assert item.contact_email == "jean.dupont@acme-industrie.fr"
    assert item.business_days_waiting == 3 and item.waiting_since == day(0)
    assert item.mailbox == "alice" and item.repeat == 0 and item.escalated_from is None
    assert "confirmer la commande" in item.last_snippet and item.last_from == "Alice Martin"

    reply = "Bonjour Alice,\nNous validons la commande, livraison lundi.\nJean"
    world.received(
        make(
            JEAN,
            ALICE,
            "RE: Devis",
            body=reply,
            msgid="r1@acme.fr",
            reply_to="q1@example.com",
            at=day(3.6),
        )
    )
    world.sync(day(3.7))  # the sync hook re-evaluates the thread in the batch transaction
    assert world.kinds("cancelled") == ["awaiting_reply"]
    assert world.due("alice@example.com", day(3.7)) == []
    # The reply (Friday 00:24 in Paris) now waits for Alice: 4 business hours from 09:00.
    (answer,) = world.reminders(Reminder.status == "pending")
    assert answer.kind == "needs_response"
    assert answer.due_at == datetime(2026, 11, 6, 13, tzinfo=PARIS)


def test_auto_reply_does_not_cancel_and_out_of_office_postpones(world: World) -> None:
    ask(world)
    ack = make(
        JEAN,
        ALICE,
        "Accusé de réception",
        body="Votre demande est enregistrée.",
        msgid="ack@acme.fr",
        reply_to="q1@example.com",
        at=day(0.01),
        headers={"Auto-Submitted": "auto-replied"},
    )
    world.received(ack)
    world.sync(day(0.05))
    (r,) = world.reminders()
    assert (r.kind, r.status, r.due_at) == ("awaiting_reply", "pending", THURSDAY_10H)

    oof = make(
        JEAN,
        ALICE,
        "Absent du bureau",
        msgid="oof@acme.fr",
        reply_to="q1@example.com",
        body="Bonjour,\nJe suis absent, de retour le 23 novembre.\nJean",
        at=day(0.02),
        headers={"X-Autoreply": "yes"},
    )
    world.received(oof)
    world.sync(day(0.1))
    (r,) = world.reminders()
    assert r.status == "pending"
    # One business day after the return date, at the start of the working day.
    assert r.due_at == datetime(2026, 11, 24, 9, tzinfo=PARIS)
    world.sync(day(4))
    assert world.due("alice@example.com", day(4)) == []  # postponed: nothing due yet


def test_out_of_office_without_a_date_postpones_by_the_configured_days(
    db_url: str, tmp_path: Path
) -> None:
    w = World(db_url, tmp_path, "out_of_office_days = 7\n")
    try:
        ask(w)
        w.received(
            make(
                JEAN,
                ALICE,
                "Out of Office: Devis",
                body="I am out of the office.",
                msgid="oof@acme.fr",
                reply_to="q1@example.com",
                at=day(0.02),
            )
        )
        w.sync(day(0.1))
        (r,) = w.reminders()
        # 7 business days after the notice (Monday 2 → Wednesday 11 is a holiday → Thursday 12).
        assert r.due_at == datetime(2026, 11, 12, 10, 28, 48, tzinfo=PARIS)
    finally:
        w.close()


def test_bounce_gives_a_bounced_item_and_marks_the_address_invalid(world: World) -> None:
    with world.session() as s, s.begin():
        contact = models.Contact(first_name="Jean", last_name="Dupont")
        s.add(contact)
        s.flush()
        s.add(models.ContactEmail(contact_id=contact.id, email="jean.dupont@acme-industrie.fr"))
    ask(world)
    world.received(dsn("q1@example.com", "jean.dupont@acme-industrie.fr", day(0.01)))
    world.sync(day(0.05))
    (r,) = world.reminders()
    assert (r.kind, r.status, r.contact_id) == ("bounced", "pending", contact.id)
    assert r.due_at <= day(0.05)  # due at once (Monday is business time)
    with world.session() as s:
        invalid = s.scalar(sa.select(models.ContactEmail.invalid_since))
    assert invalid == day(0.01)
    (item,) = world.due("alice@example.com", day(0.05))
    assert item.kind == "bounced" and item.contact_name == "Jean Dupont"


def test_a_delayed_delivery_notice_is_not_a_bounce(world: World) -> None:
    ask(world)
    world.received(dsn("q1@example.com", "jean.dupont@acme-industrie.fr", day(0.01), "4.4.1"))
    world.sync(day(0.05))
    assert world.kinds() == ["awaiting_reply"]


def test_bouncing_one_recipient_of_two_still_awaits_the_other(world: World) -> None:
    ask(world, to=f"{JEAN}, {MARIE}")
    world.received(dsn("q1@example.com", "marie@acme-industrie.fr", day(0.01)))
    world.sync(day(0.05))
    assert sorted(world.kinds()) == ["awaiting_reply", "bounced"]
    awaiting = world.reminders(Reminder.kind == "awaiting_reply")[0]
    assert awaiting.contact_email == "jean.dupont@acme-industrie.fr"


@pytest.mark.parametrize(
    "body",
    [
        "Merci, bonne journée\n\nAlice",
        "Bien reçu, merci !\nCordialement,\nAlice Martin",
        "Voici la documentation technique, comme convenu.",
    ],
)
def test_closers_and_statements_create_no_awaiting_reply(world: World, body: str) -> None:
    ask(world, body=body)
    world.sync(day(0.05))
    world.evaluate(day(10))
    assert world.reminders() == []


def test_thread_override_always_and_never(world: World) -> None:
    from mailmanager.reminders import actions as reminder_actions

    ask(world, body="Merci, bonne journée")
    world.sync(day(0.05))
    assert world.reminders() == []
    with world.session() as s:
        tid = s.scalars(sa.select(models.Thread.id)).one()
    with world.session() as s, s.begin():
        reminder_actions.set_expect(s, world.cfg, tid, "always", day(0.06))
    assert world.kinds() == ["awaiting_reply"]
    with world.session() as s, s.begin():
        reminder_actions.set_expect(s, world.cfg, tid, "never", day(0.07))
    assert world.kinds("cancelled") == ["awaiting_reply"]


def test_needs_response_only_when_addressed_in_to(world: World) -> None:
    question = "Bonjour, pouvez-vous m'envoyer le tarif ?"
    world.received(make(JEAN, ALICE, "Tarif", body=question, msgid="a@acme.fr", at=day(0)))
    world.received(
        make(
            MARIE,
            "sales@acme-industrie.fr",
            "Info",
            body=question,
            msgid="b@acme.fr",
            at=day(0),
            cc=ALICE,
        )
    )
    world.sync(day(0.05))
    (r,) = world.reminders()
    assert r.kind == "needs_response" and r.contact_email == "jean.dupont@acme-industrie.fr"
    assert r.due_at == datetime(2026, 11, 2, 14, tzinfo=PARIS)
    # Alice answers: done, and her answer is a question that now awaits a reply.
    world.sent(
        make(
            ALICE,
            JEAN,
            "RE: Tarif",
            body="Voici le tarif. Une remise vous intéresse ?",
            msgid="c@example.com",
            reply_to="a@acme.fr",
            at=day(0.1),
        )
    )
    world.sync(day(0.15))
    assert world.kinds("cancelled") == ["needs_response"]
    assert world.kinds() == ["awaiting_reply"]


def test_a_thank_you_from_the_contact_needs_no_response(world: World) -> None:
    world.received(
        make(
            JEAN,
            ALICE,
            "Merci",
            body="Merci beaucoup, bonne journée !\nJean",
            msgid="a@acme.fr",
            at=day(0),
        )
    )
    world.sync(day(0.05))
    assert world.reminders() == []


@pytest.mark.parametrize("from_company", [True, False])
def test_a_reply_from_a_colleague_of_the_contact(
    db_url: str, tmp_path: Path, from_company: bool
) -> None:
    w = World(db_url, tmp_path, f"reply_from_company = {str(from_company).lower()}\n")
    try:
        ask(w)
        w.sync(day(0.05))
        w.received(
            make(
                MARIE,
                ALICE,
                "RE: Devis",
                body="Jean est absent, je m'en occupe.",
                msgid="m@acme.fr",
                reply_to="q1@example.com",
                at=day(1),
            )
        )
        w.sync(day(1.1))
        awaiting = w.reminders(Reminder.kind == "awaiting_reply")
        assert [r.status for r in awaiting] == ["cancelled" if from_company else "pending"]
    finally:
        w.close()


def test_require_contact_ignores_threads_without_a_crm_contact(db_url: str, tmp_path: Path) -> None:
    w = World(db_url, tmp_path, 'require = "contact"\n')
    try:
        ask(w)
        w.sync(day(0.05))
        assert w.reminders() == []
        with w.session() as s, s.begin():
            c = models.Contact(first_name="Jean", last_name="Dupont")
            s.add(c)
            s.flush()
            s.add(models.ContactEmail(contact_id=c.id, email="jean.dupont@acme-industrie.fr"))
            tid = s.scalars(sa.select(models.Thread.id)).one()
        w.evaluate(day(0.1), thread_ids=[tid])
        (r,) = w.reminders()
        assert r.kind == "awaiting_reply" and r.contact_id == c.id
    finally:
        w.close()


def test_old_threads_get_no_new_reminder_on_a_first_sync(world: World) -> None:
    ask(world)
    world.sync(day(45))  # first synced long after: older than max_age_days (30)
    assert world.reminders() == []
    assert world.evaluate(day(45)).counts == {}


def test_merging_two_threads_with_reminders_keeps_both(world: World) -> None:
    ask(world, msgid="q1@example.com")
    world.sent(
        make(
            ALICE,
            JEAN,
            "Autre sujet",
            body="Pouvez-vous rappeler ?",
            msgid="q2@example.com",
            at=day(0.01),
        )
    )
    world.sync(day(0.05))
    assert len(world.reminders()) == 2
    both = ["q1@example.com", "q2@example.com"]
    world.received(
        make(
            JEAN,
            ALICE,
            "RE: les deux",
            body="Je vous rappelle demain pour les deux.",
            msgid="r@acme.fr",
            reply_to=both,
            at=day(1),
        )
    )
    report = world.sync(day(1.1))
    assert report.status == "ok" and report.total("quarantined") == 0
    with world.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.Thread)) == 1
    assert world.kinds("cancelled") == ["awaiting_reply", "awaiting_reply"]
    assert world.kinds() == ["needs_response"]
