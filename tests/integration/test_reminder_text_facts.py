"""What the reminder rules read in message bodies is read once, at sync time, and kept on the
message (`expects_reply`, `expects_reply_reason`, `return_date`): the evaluation reads no
raw bytes for such messages, and reads them (as it always did) only for messages stored
before these columns existed. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from mailmanager.db import models
from mailmanager.db.models import Message
from mailmanager.mail import replies
from mailmanager.reminders import facts as reminder_facts
from tests.mailgen import day, make
from tests.remindergen import ALICE, ASK, JEAN, World

PARIS = ZoneInfo("Europe/Paris")
OOF = "Bonjour,\nJe suis absent, de retour le 23 novembre.\nJean"
THANKS = "Merci beaucoup, bonne journée !\nJean"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = World(db_url, tmp_path)
    # Alice asks; Jean's absence notice answers; in another thread Jean thanks her; and a
    # newsletter, whose body no rule reads.
    w.sent(make(ALICE, JEAN, "Devis", body=ASK, msgid="q1@example.com", at=day(0)))
    w.received(
        make(
            JEAN,
            ALICE,
            "Absent du bureau",
            body=OOF,
            msgid="oof@acme.fr",
            reply_to="q1@example.com",
            at=day(0.02),
            headers={"X-Autoreply": "yes"},
        )
    )
    w.received(make(JEAN, ALICE, "Merci", body=THANKS, msgid="thanks@acme.fr", at=day(0.03)))
    w.received(
        make(
            "News <news@vendor.example>",
            ALICE,
            "Our news",
            body="Could you read our news?",
            msgid="news@vendor.example",
            at=day(0.04),
            headers={"List-Id": "<news.vendor.example>", "List-Unsubscribe": "<mailto:u@x>"},
        )
    )
    w.sync(day(0.1))
    yield w
    w.close()


def _stored(world: World) -> dict[str, tuple[bool | None, str | None, date | None]]:
    with world.session() as s:
        rows = s.execute(
            sa.select(
                Message.message_id,
                Message.expects_reply,
                Message.expects_reply_reason,
                Message.return_date,
            )
        )
        return {mid: (expects, reason, back) for mid, expects, reason, back in rows}


def _texts(world: World) -> dict[int, replies.TextFacts]:
    """Every thread's text facts, as the evaluation loads them."""
    with world.session() as s:
        st = reminder_facts.setting(s, world.cfg)
        ids = list(s.scalars(sa.select(models.Thread.id)))
        infos = reminder_facts.load_threads(s, world.cfg, st, ids)
    return {mid: t for info in infos.values() for mid, t in info.texts.items()}


def test_a_synced_message_carries_its_text_facts(world: World) -> None:
    assert _stored(world) == {
        "q1@example.com": (True, "question or request", None),
        # The return date is read against the notice's date (2 November 2026).
        "oof@acme.fr": (False, "no question or request", date(2026, 11, 23)),
        "thanks@acme.fr": (False, "closing words only", None),
        "news@vendor.example": (None, None, None),  # list mail: never read by a rule
    }
    (r,) = world.reminders()
    assert (r.kind, r.due_at) == ("awaiting_reply", datetime(2026, 11, 24, 9, tzinfo=PARIS))


def test_the_evaluation_reads_no_raw_bytes_for_messages_with_their_facts(world: World) -> None:
    before = _texts(world)
    assert sorted(t.expectation.reason for t in before.values() if t.expectation) == [
        "closing words only",
        "no question or request",
        "question or request",
    ]
    (reminder,) = world.reminders()
    with world.session() as s, s.begin():
        s.execute(sa.delete(models.MessageRaw))
    assert _texts(world) == before
    # A full pass over every thread (a thread's facts are read afresh) changes nothing.
    world.evaluate(day(0.2), [r.thread_id for r in world.reminders() if r.thread_id])
    world.evaluate(day(0.2))
    (after,) = world.reminders()
    assert (after.id, after.status, after.due_at) == (reminder.id, "pending", reminder.due_at)
    assert world.kinds() == ["awaiting_reply"]  # Jean's thank-you still needs no answer


def test_messages_stored_before_their_facts_are_read_from_their_raw_bytes(world: World) -> None:
    before = _texts(world)
    with world.session() as s, s.begin():  # as rows stored before schema 0011 are
        s.execute(
            sa.update(Message).values(
                expects_reply=None, expects_reply_reason=None, return_date=None
            )
        )
    assert _texts(world) == before  # the fallback reads the same facts from the bytes
    with world.session() as s, s.begin():
        s.execute(sa.delete(models.MessageRaw))
    assert _texts(world) == {}  # neither facts nor bytes: nothing is read
