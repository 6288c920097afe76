"""Digests end to end on SQLite and PostgreSQL: synced mail → reminders (the real rules) →
digest in the outbox, in the transaction that marks them sent → a real SMTP server
(aiosmtpd on 127.0.0.1). Mail is dated relative to a working morning in Paris after a fixed
instant, and the clock is pinned there: no outcome depends on the day the suite runs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.orm import Session, sessionmaker

from connectors.memory import MemoryAccount, MemoryConnector
from mailmanager import config, spi
from mailmanager.db import models
from mailmanager.notify import notifier as notify
from mailmanager.notify import outbox
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.integration.notify_support import (
    Sink,
    evaluate,
    outbox_rows,
    reminder_statuses,
    working_morning,
)
from tests.mailgen import make

ALICE = "Alice Martin <alice@example.com>"
JEAN = "Jean Dupont <jean.dupont@acme-industrie.fr>"
INJECTED_SUBJECT = "Devis =?UTF-8?Q?=0A?=Bcc: injected@example.com portes coupe-feu"
INJECTED_NAME = "=?UTF-8?Q?J=C3=A9r=C3=B4me=0D=0ABcc:_evil@example.com?="
# A Tuesday; the clock is pinned to it (see `pinned_clock`).
REFERENCE = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
# 08:35 in Paris on the next working day (Wednesday 2 December): the 08:30 slot is open.
SLOT = working_morning(REFERENCE)
PARIS = ZoneInfo("Europe/Paris")


def paris(day: datetime, hhmm: str) -> datetime:
    """`hhmm` Paris time on the (Paris) date of `day`, in UTC."""
    local = day.astimezone(PARIS).date()
    return datetime.combine(local, time.fromisoformat(hhmm), tzinfo=PARIS).astimezone(UTC)


def raw(sender: str, to: str, subject: str, body: str, msgid: str, at: datetime) -> bytes:
    """A message written byte by byte: mailgen (EmailMessage) refuses such headers."""
    date = at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    text = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: <{msgid}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    return text.encode("utf-8")


@dataclass
class Env:
    factory: sessionmaker[Session]
    sink: Sink
    account: MemoryAccount
    configure: Callable[[str], config.Config]

    def sync(self, cfg: config.Config, now: datetime = SLOT) -> None:
        syncer = sync.Syncer(cfg, self.factory)
        syncer.sync("alice")
        syncer.sync("bob")
        evaluate(self.factory, cfg, now)

    def contact(self, first: str, last: str, email: str, company: str = "") -> None:
        with self.factory() as s, s.begin():
            c = models.Contact(first_name=first, last_name=last)
            if company:
                co = models.Company(name=company)
                s.add(co)
                s.flush()
                c.company_id = co.id
            s.add(c)
            s.flush()
            s.add(models.ContactEmail(contact_id=c.id, email=email))

    def quotes(self) -> None:
        """Alice's two unanswered quotes to Acme, 7 and 8 days before the slot."""
        self.contact("Jean", "Dupont", "jean.dupont@acme-industrie.fr", "Acme Industrie")
        body = "Bonjour Jean,\nvoici l'offre révisée, à très bientôt. Pouvez-vous confirmer ?\n"
        at = SLOT - timedelta(days=7)
        self.account.append(
            "Sent", make(ALICE, JEAN, "Offre maintenance été", body, "q2@example.com", at=at)
        )
        self.account.append(
            "Sent",
            make(ALICE, JEAN, "Portes coupe-feu", "Qu'en pensez-vous ?\n", "q1@example.com",
                 at=SLOT - timedelta(days=8)),
        )  # fmt: skip


@pytest.fixture(autouse=True)
def pinned_clock() -> Iterator[None]:
    """Code that reads the wall clock (outbox retries, sync stamps) sees the reference day."""
    with time_machine.travel(REFERENCE, tick=True):
        yield


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink().start()
    yield s
    s.stop()


@pytest.fixture
def env(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, sink: Sink
) -> Iterator[Env]:
    name = f"notify-{uuid.uuid4().hex[:8]}"
    acct = MemoryConnector.account(name)
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    acct.add_folder("Sent", spi.FolderRole.SENT)
    bob = MemoryConnector.account(f"{name}-bob")
    bob.add_folder("Sent", spi.FolderRole.SENT)

    def make_config(extra: str = "") -> config.Config:
        path = write_config(
            db_url,
            f"""
            [[mailboxes]]
            name = "alice"
            connector = "memory"
            store = "{name}"
            owner = "alice@example.com"
            [[mailboxes]]
            name = "bob"
            connector = "memory"
            store = "{name}-bob"
            owner = "bob@example.com"
            [sync]
            parse_workers = 0
            [smtp]
            host = "127.0.0.1"
            port = {sink.port}
            security = "none"
            from = "Mailmanager <mailmanager@example.com>"
            """,
            extra,
        )
        return config.load(path)

    yield Env(factory, sink, acct, make_config)
    acct.clear()
    bob.clear()


def test_french_digest_reaches_a_real_smtp_server_once(env: Env) -> None:
    cfg = env.configure("")
    env.quotes()
    env.sync(cfg)
    due = reminder_statuses(env.factory)
    assert len(due) == 2 and set(due.values()) == {"pending"}

    report = notify.run(cfg, env.factory, SLOT)
    assert [d["items"] for d in report.digests] == [2]
    assert set(reminder_statuses(env.factory).values()) == {"sent"}  # same transaction
    flushed = outbox.flush(cfg, env.factory)
    assert len(flushed.sent) == 1 and not flushed.retried

    assert len(env.sink.received) == 1
    mail_from, rcpt, data = env.sink.received[0]
    assert mail_from == "mailmanager@example.com" and rcpt == ["alice@example.com"]
    msg = env.sink.messages()[0]
    assert msg["Subject"] == "[mailmanager] 2 relances à faire"
    assert msg["To"].addresses[0].addr_spec == "alice@example.com"
    assert msg["To"].addresses[0].display_name == "Alice Martin"
    assert msg["From"].addresses[0].addr_spec == "mailmanager@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"
    slot_key = f"digest:{SLOT.astimezone(PARIS).date().isoformat()}T08:30"
    key = f"{slot_key}:alice@example.com"
    assert msg["Message-ID"] == outbox.message_id(key, "mailmanager@example.com")
    assert msg["Date"].datetime == SLOT
    assert data.isascii()  # RFC 2047 headers and quoted-printable bodies
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert "Bonjour Alice Martin," in body and "Vous avez 2 relances à faire" in body
    assert "Offre maintenance été" in body and "Portes coupe-feu" in body
    assert re.search(r"depuis \d+ jours ouvrés", body)
    assert "Vous attendez une réponse de Jean Dupont" in body
    assert "Jean Dupont <jean.dupont@acme-industrie.fr> — Acme Industrie" in body
    assert "voici l'offre révisée, à très bientôt." in body
    page = html.get_content()
    assert '<html lang="fr">' in page and re.search(r"depuis \d+ jours ouvrés", page)
    assert "voici l&#39;offre révisée" in page  # autoescaped

    # The same slot later, another tick, another flush: nothing more goes out.
    again = notify.run(cfg, env.factory, SLOT + timedelta(minutes=20))
    assert again.digests == [] and again.empty == []
    assert outbox.flush(cfg, env.factory).sent == []
    assert len(env.sink.received) == 1
    with env.factory() as s:
        note = s.scalars(sa.select(models.Notification)).one()
        assert (note.slot, note.item_count, note.kind) == (slot_key, 2, "digest")
        assert sorted(int(x) for x in note.reminder_ids.split()) == sorted(due)


def test_english_user_gets_english_digest(env: Env) -> None:
    cfg = env.configure("")
    bob_slot = working_morning(REFERENCE, "Europe/London", "GB")
    bob = MemoryConnector.account(env.account.name + "-bob")
    bob.append(
        "Sent",
        make("Bob Smith <bob@example.com>", "Ann Lee <ann@client.co.uk>", "Renewal quote",
             "Hi Ann,\ncould you confirm the renewal?\n", "b1@example.com",
             at=bob_slot - timedelta(days=7)),
    )  # fmt: skip
    env.sync(cfg, bob_slot)
    report = notify.run(cfg, env.factory, bob_slot)  # 08:35 in London
    assert [d["user"] for d in report.digests] == ["bob@example.com"]
    outbox.flush(cfg, env.factory)
    msg = env.sink.messages()[0]
    assert msg["Subject"] == "[mailmanager] 1 follow-up due"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "You have 1 follow-up due:" in body
    assert re.search(r"for \d+ business days?", body) and "Renewal quote" in body


def _next(weekday_or_holiday: str, after: datetime) -> datetime:
    day = after.astimezone(PARIS).date() + timedelta(days=1)
    fr = holidays.country_holidays("FR", years=range(day.year, day.year + 2))
    while not (
        day.weekday() == 5
        if weekday_or_holiday == "saturday"
        else (day in fr and day.weekday() < 5)
    ):
        day += timedelta(days=1)
    return paris(datetime.combine(day, time(12), tzinfo=UTC), "08:35")


@pytest.mark.parametrize(
    "when",
    ["saturday", "holiday", "08:25 (before the first slot)", "12:00 (past the 3 h catch-up)"],
)
def test_no_digest_outside_an_open_slot_on_a_working_day(env: Env, when: str) -> None:
    cfg = env.configure("")
    env.quotes()
    env.sync(cfg)
    now = {
        "saturday": lambda: _next("saturday", SLOT),
        "holiday": lambda: _next("holiday", SLOT),
    }.get(when, lambda: paris(SLOT, when[:5]))()
    evaluate(env.factory, cfg, now)
    assert notify.due_slot(cfg, cfg.users[0], now) is None
    report = notify.run(cfg, env.factory, now, users=["alice@example.com"])
    assert report.digests == [] and report.empty == []
    assert outbox_rows(env.factory) == []


def test_catch_up_quiet_hours_and_empty_slots(env: Env) -> None:
    cfg = env.configure(
        """
        [notifications]
        digest_times = ["08:30", "14:00"]
        quiet_hours = "20:00-08:00"
        catch_up_minutes = 120
        """
    )
    alice = ["alice@example.com"]
    # 08:40, nothing due yet: the 08:30 slot is consumed, empty.
    first = notify.run(cfg, env.factory, paris(SLOT, "08:40"), users=alice)
    slot_day = SLOT.astimezone(PARIS).date().isoformat()
    assert first.empty == [f"alice@example.com digest:{slot_day}T08:30"]
    # Reminders found due at 09:10 wait for the 14:00 slot, not for the next tick.
    env.quotes()
    env.sync(cfg, paris(SLOT, "09:10"))
    assert notify.run(cfg, env.factory, paris(SLOT, "09:10"), users=alice).digests == []
    # 14:00, caught up at 15:20 (the daemon was down until then).
    late = notify.run(cfg, env.factory, paris(SLOT, "15:20"), users=alice)
    assert [d["slot"] for d in late.digests] == [f"digest:{slot_day}T14:00"]
    # Quiet hours win over a user's own schedule; they may span midnight.
    user = config.UserConfig(**{**cfg.users[0].__dict__, "digest_times": ("21:00",)})
    assert notify.due_slot(cfg, user, paris(SLOT, "21:05")) is None
    assert notify.in_quiet_hours("20:00-08:00", time(23, 0))
    assert notify.in_quiet_hours("12:00-13:30", time(12, 15))
    assert not notify.in_quiet_hours("20:00-08:00", time(9, 0))


def test_immediate_mail_for_needs_response(env: Env) -> None:
    cfg = env.configure(
        """
        [notifications]
        immediate = ["needs_response"]
        """
    )
    env.contact("Jean", "Dupont", "jean.dupont@acme-industrie.fr")
    env.account.append(
        "INBOX",
        make(JEAN, ALICE, "Question livraison", "Pouvez-vous me donner la date de livraison ?\n",
             "n1@acme-industrie.fr", at=SLOT - timedelta(days=2)),
    )  # fmt: skip
    env.sync(cfg)
    (rid,) = reminder_statuses(env.factory)
    # 11:00 on a working day: no digest slot is open, the immediate mail goes anyway.
    now = paris(SLOT, "11:00")
    report = notify.run(cfg, env.factory, now, users=["alice@example.com"])
    assert [d["slot"] for d in report.immediate] == [f"immediate:{rid}:0"]
    assert report.digests == []
    assert notify.run(cfg, env.factory, now, users=["alice@example.com"]).immediate == []
    outbox.flush(cfg, env.factory)
    msg = env.sink.messages()[0]
    assert msg["Subject"] == "[mailmanager] À répondre : Jean Dupont — Question livraison"
    assert "Jean Dupont attend votre réponse" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert reminder_statuses(env.factory) == {rid: "sent"}


def test_preview_writes_nothing_and_manual_digest(env: Env) -> None:
    cfg = env.configure("")
    env.quotes()
    env.sync(cfg)
    before = reminder_statuses(env.factory)
    shown = notify.preview(cfg, env.factory, "alice@example.com", SLOT)
    assert shown is not None and shown.subject == "[mailmanager] 2 relances à faire"
    assert "Offre maintenance été" in shown.text and "<ol>" in shown.html
    assert reminder_statuses(env.factory) == before and outbox_rows(env.factory) == []
    assert notify.preview(cfg, env.factory, "bob@example.com", SLOT) is None
    with pytest.raises(notify.UnknownUserError):
        notify.preview(cfg, env.factory, "nobody@example.com", SLOT)
    # --force: a Saturday, no slot; the digest goes anyway under a per-minute manual slot.
    saturday = _next("saturday", SLOT)
    forced = notify.run(cfg, env.factory, saturday, users=["alice@example.com"], force=True)
    assert [d["slot"] for d in forced.digests] == [f"manual:{saturday.strftime('%Y-%m-%dT%H:%MZ')}"]


def test_injection_attempts_from_synced_mail_are_neutralised(env: Env) -> None:
    cfg = env.configure(
        """
        [notifications]
        immediate = ["needs_response"]
        """
    )
    # A contact record whose name was imported with a line break and an encoded word.
    env.contact("Jérôme\r\nBcc: evil@example.com", "=?UTF-8?Q?=0A?=Cc: x@example.com",
                "jerome@acme-industrie.fr")  # fmt: skip
    env.account.append(
        "INBOX",
        raw(f'"{INJECTED_NAME}" <jerome@acme-industrie.fr>', ALICE, INJECTED_SUBJECT,
            "Pouvez-vous me rappeler ?", "x1@acme-industrie.fr", SLOT - timedelta(days=2)),
    )  # fmt: skip
    env.sync(cfg)
    report = notify.run(cfg, env.factory, paris(SLOT, "11:00"))
    assert len(report.immediate) == 1
    assert len(outbox.flush(cfg, env.factory).sent) == 1
    (_, rcpt, data), msg = env.sink.received[0], env.sink.messages()[0]
    assert rcpt == ["alice@example.com"]
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0].lower() for line in head.split("\r\n") if not line[:1].isspace()]
    assert sorted(names) == sorted(
        ["from", "to", "subject", "date", "message-id", "auto-submitted",
         "x-auto-response-suppress", "mime-version", "content-type"]
    )  # fmt: skip
    subject = str(msg["Subject"])
    assert subject.startswith("[mailmanager] À répondre : Jérôme Bcc: evil@example.com")
    assert "portes coupe-feu" in subject and "\n" not in subject and "\r" not in subject
    assert "=?" not in subject  # no encoded word left for the reader's client to decode
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "\nBcc:" not in body and "Jérôme Bcc: evil@example.com" in body
