"""A small world for reminder tests: a config (Alice, her manager Bob), Alice's in-memory
mailbox, a real database, and helpers to sync and evaluate at chosen times (time-machine),
so that `Mailbox.synced_until` and every "now" are under the test's control."""

from __future__ import annotations

import textwrap
import uuid
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import time_machine
from sqlalchemy.orm import Session

from connectors.memory import MemoryConnector
from mailmanager import config, spi
from mailmanager.db import models, store
from mailmanager.reminders import evaluation as reminders
from mailmanager.sync import engine as sync
from tests.mailgen import T0

ALICE = "Alice Martin <alice@example.com>"
BOB = "Bob Smith <bob@example.com>"
JEAN = "Jean Dupont <jean.dupont@acme-industrie.fr>"
MARIE = "Marie Curie <marie@acme-industrie.fr>"
ASK = "Bonjour Jean,\n\nPourriez-vous me confirmer la commande ?\n\nAlice\n"


class World:
    def __init__(self, db_url: str, tmp_path: Path, reminders_toml: str = "") -> None:
        self.store_name = f"rem-{uuid.uuid4().hex[:8]}"
        text = textwrap.dedent(
            f"""
            [database]
            url = "{db_url}"
            [organization]
            domains = ["example.com"]
            [[users]]
            email = "alice@example.com"
            name = "Alice Martin"
            locale = "fr"
            timezone = "Europe/Paris"
            manager = "bob@example.com"
            [[users]]
            email = "bob@example.com"
            name = "Bob Smith"
            timezone = "Europe/London"
            holiday_country = "GB"
            [[mailboxes]]
            name = "alice"
            connector = "memory"
            store = "{self.store_name}"
            owner = "alice@example.com"
            [sync]
            parse_workers = 0
            [reminders]
            """
        ) + textwrap.dedent(reminders_toml)
        path = tmp_path / f"{self.store_name}.toml"
        path.write_text(text)
        self.cfg = config.load(path)
        self.config_path = path
        self.engine = store.make_engine(db_url)
        self.factory = store.session_factory(self.engine)
        self.account = MemoryConnector.account(self.store_name)
        self.account.add_folder("INBOX", spi.FolderRole.INBOX)
        self.account.add_folder("Sent", spi.FolderRole.SENT)

    def close(self) -> None:
        self.account.clear()
        self.engine.dispose()

    def sent(self, raw: bytes) -> None:
        self.account.append("Sent", raw)

    def received(self, raw: bytes) -> None:
        self.account.append("INBOX", raw)

    def sync(self, at: datetime) -> sync.SyncReport:
        """Sync Alice's mailbox at `at`: her mailbox then counts as synced up to `at`."""
        with time_machine.travel(at, tick=False):
            return sync.Syncer(self.cfg, self.factory).sync("alice")

    def evaluate(self, at: datetime, thread_ids: list[int] | None = None) -> Any:
        with time_machine.travel(at, tick=False), store.session_scope(self.factory) as s:
            return reminders.evaluate(s, self.cfg, at, thread_ids)

    def user_id(self, email: str) -> int:
        with self.factory() as s:
            return int(s.scalars(sa.select(models.User.id).where(models.User.email == email)).one())

    def due(self, email: str, at: datetime) -> list[reminders.DigestItem]:
        with time_machine.travel(at, tick=False), store.session_scope(self.factory) as s:
            return reminders.due_items(s, self.cfg, self.user_id(email), at)

    def send_digest(self, email: str, at: datetime) -> list[reminders.DigestItem]:
        """What the notifier does: read the due items and mark them sent, in one transaction."""
        with time_machine.travel(at, tick=False), store.session_scope(self.factory) as s:
            items = reminders.due_items(s, self.cfg, self.user_id(email), at)
            reminders.mark_sent(s, [i.reminder_id for i in items], at)
            return items

    def reminders(self, *where: Any) -> list[models.Reminder]:
        with self.factory() as s:
            return list(
                s.scalars(sa.select(models.Reminder).where(*where).order_by(models.Reminder.id))
            )

    def kinds(self, status: str = "pending") -> list[str]:
        return [r.kind for r in self.reminders(models.Reminder.status == status)]

    def session(self) -> Session:
        return self.factory()


def dsn(original_msgid: str, recipient: str, when: datetime, status: str = "5.1.1") -> bytes:
    """A delivery status notification (RFC 3464, RFC 6522) reporting `recipient` failed
    (5.x.x) or delayed (4.x.x), quoting the headers of our message `original_msgid`."""
    action = "failed" if status.startswith("5") else "delayed"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: alice@example.com
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(when)}
Message-ID: <dsn-{uuid.uuid4().hex[:8]}@mx.example.com>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

Your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}

--BOUNDARY
Content-Type: text/rfc822-headers

From: alice@example.com
To: {recipient}
Message-ID: <{original_msgid}>
Subject: Devis

--BOUNDARY--
"""
    return text.replace("\n", "\r\n").encode()


def at(days: float) -> datetime:
    from tests.mailgen import day

    return day(days)


__all__ = ["ALICE", "ASK", "BOB", "JEAN", "MARIE", "T0", "World", "at", "dsn"]
