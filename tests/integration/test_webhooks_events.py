"""Every event type comes from the stage that makes it, in its transaction, and reaches a real
receiver: `message.linked` and `thread.replied` from a real Maildir sync, `mailbox.failed`
from a mailbox whose sync fails (once, not at every failed sync), `link.changed` from a
manual unlink (and the matcher's re-run), `reminder.due` when a reminder is marked sent,
`reminder.closed` when it is done. Nothing is recorded while no subscription exists."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, daemon
from mailmanager.db import models, tokens
from mailmanager.notify import webhooks as delivery
from mailmanager.reminders import actions
from mailmanager.reminders import evaluation as reminders
from mailmanager.services import curation, webhooks
from tests.conftest import ConfigWriter
from tests.integration.notify_support import write_maildir_message
from tests.integration.webhook_support import Receiver

SETTINGS = """
    [webhooks]
    allow_private = ["127.0.0.0/8"]
    [reminders]
    enabled = false
    """
T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv(tokens.ENV_KEY, tokens.new_key())
    r = Receiver().start()
    yield r
    r.stop()


def _mail(root: Path, n: int, sender: str, to: str, reply_to: str = "") -> None:
    extra = f"In-Reply-To: <{reply_to}>\r\nReferences: <{reply_to}>\r\n" if reply_to else ""
    raw = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Devis\r\nMessage-ID: <e{n}@x.fr>\r\n{extra}"
        f"Date: Tue, 10 Nov 2026 0{n}:00:00 +0000\r\n\r\nTexte {n}\r\n"
    )
    write_maildir_message(root, "INBOX", raw.encode())


def test_each_event_type_from_its_stage(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter,
    receiver: Receiver, tmp_path: Path,
) -> None:  # fmt: skip
    root = tmp_path / "mail"
    _mail(root, 1, "alice@example.com", "jean@client.fr")
    boxes = f"""
        [[mailboxes]]
        name = "alice-inbox"
        connector = "maildir"
        path = "{root}"
        owner = "alice@example.com"
        [[mailboxes]]
        name = "broken"
        connector = "maildir"
        path = "{tmp_path / "missing"}"
        owner = "bob@example.com"
        """
    cfg = config.load(write_config(db_url, boxes, SETTINGS))
    with factory() as s, s.begin():
        contact = models.Contact(first_name="Jean", last_name="Dupont")
        s.add(contact)
        s.flush()
        s.add(models.ContactEmail(contact_id=contact.id, email="jean@client.fr"))
        contact_id = contact.id
    daemon.run_once(cfg, factory)  # no subscription yet: nothing recorded
    with factory() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.WebhookEvent)) == 0
        alice = s.scalar(sa.select(models.User.id).where(models.User.email == "alice@example.com"))
        s.execute(sa.update(models.Mailbox).values(last_error=None))
        s.commit()
    with factory() as s, s.begin():
        made = webhooks.create(s, cfg, receiver.url, list(webhooks.EVENT_TYPES), "test:admin")
    receiver.secret = made.secret
    _mail(root, 2, "jean@client.fr", "alice@example.com", reply_to="e1@x.fr")
    reports = {r.mailbox: r for r in daemon.run_once(cfg, factory)}
    assert reports["alice-inbox"].status == "ok" and reports["broken"].status == "error"
    daemon.run_once(cfg, factory)  # the broken mailbox fails again: no second event
    with factory() as s, s.begin():
        reply = s.scalars(sa.select(models.Message).where(models.Message.message_id == "e2@x.fr"))
        message = reply.one()
        assert message.thread_id is not None
        target = curation.Target("contact", contact_id, "Jean Dupont")
        curation.unlink(s, cfg, curation.Scope(message.thread_id, message.id), target, "alice")
        rem = models.Reminder(thread_id=message.thread_id, user_id=alice, kind="needs_response",
                              cycle=message.id, due_at=T0, status="pending")  # fmt: skip
        s.add(rem)
        s.flush()
        reminders.mark_sent(s, [rem.id], T0 + timedelta(hours=1))
        actions.close(s, rem.id, "done", actor="alice")
    assert delivery.deliver(cfg, factory).dead == []
    assert receiver.bad_signatures == 0
    bodies = list(receiver.bodies.values())
    kinds = receiver.types()
    assert kinds["message.linked"] == 1  # the reply (the first mail came before)
    assert kinds["thread.replied"] == 1 and kinds["mailbox.failed"] == 1
    assert kinds["reminder.due"] == 1 and kinds["reminder.closed"] == 1
    assert kinds["link.changed"] >= 1
    by_type = {b["type"]: b["data"] for b in bodies}
    assert by_type["thread.replied"]["message_id"] == message.id
    assert by_type["thread.replied"]["direction"] == "inbound"
    assert by_type["mailbox.failed"]["mailbox"] == "broken"
    assert by_type["reminder.closed"]["status"] == "done"
    assert by_type["reminder.due"]["kind"] == "needs_response"
    removed = [b["data"] for b in bodies if b["type"] == "link.changed"]
    assert {"action": "remove", "kind": "contact", "id": contact_id, "by": "alice"}.items() <= (
        next(d for d in removed if d["by"] == "alice").items()
    )
