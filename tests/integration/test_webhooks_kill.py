"""Webhooks from real work and across a crash: a real `mailmanager run` delivering to a real
receiver is killed with -9 right after a receiver's 2xx and before its commit; after a
restart every event is delivered, and the only events a receiver accepted twice are ones it
had accepted before the kill, whose rows were re-queued as possible duplicates. And a sync
of a Maildir with a subscription active posts `message.linked` with the link's record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time as clock
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config, daemon
from mailmanager.db import models, tokens, webhookevents
from mailmanager.db.models import WebhookDelivery
from mailmanager.notify import outbox
from mailmanager.notify import webhooks as delivery
from mailmanager.services import webhooks
from tests.conftest import ConfigWriter
from tests.integration.notify_support import write_maildir_message
from tests.integration.webhook_support import Receiver

REPO = Path(__file__).resolve().parents[2]
SETTINGS = """
    [webhooks]
    allow_private = ["127.0.0.0/8"]
    interval = 1
    concurrency = 2
    retry_base = 1
    [notifications]
    enabled = false
    [reminders]
    enabled = false
    [workers]
    engine = "embedded"
    """


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, value)
    return value


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _run(path: Path, key: str, pause: str | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAILMANAGER_CONFIG", outbox.PAUSE_ENV)}
    env[tokens.ENV_KEY] = key
    if pause:
        env[outbox.PAUSE_ENV] = pause
    return subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "--config", str(path), "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO,
        start_new_session=True,
    )  # fmt: skip


def subscribe_and_record(
    factory: sessionmaker[Session], cfg: config.Config, receiver: Receiver, n: int
) -> list[str]:
    """Subscribe `receiver` to `reminder.due` and record `n` such events; their ids."""
    with factory() as s, s.begin():
        made = webhooks.create(s, cfg, receiver.url, ["reminder.due"], "test:admin")
        events = [webhookevents.NewEvent("reminder.due", {"n": i}) for i in range(n)]
        ids = webhookevents.record(s, events)
    receiver.secret = made.secret
    return ids


def _statuses(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s:
        d = WebhookDelivery
        rows = s.execute(sa.select(d.status, sa.func.count()).group_by(d.status)).all()
    return {status: int(n) for status, n in rows}


def test_kill_minus_nine_after_a_2xx_loses_nothing_and_duplicates_only_that_window(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, key: str,
    receiver: Receiver,
) -> None:  # fmt: skip
    path = write_config(db_url, "", SETTINGS)
    cfg = config.load(path)
    ids = subscribe_and_record(factory, cfg, receiver, 30)
    proc = _run(path, key, pause="webhook_after_2xx")
    assert proc.stderr is not None
    seen = []
    while not seen or "PAUSED webhook_after_2xx" not in seen[-1]:  # a 2xx came back: paused
        seen.append(proc.stderr.readline().decode())
        assert seen[-1] and len(seen) < 100, seen
    clock.sleep(0.3)  # the other slot may reach its own 2xx: a second row in the window
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before_kill = receiver.snapshot()
    assert 1 <= len(before_kill) <= cfg.webhooks.concurrency
    assert _statuses(factory).get("sending", 0) >= 1  # the killed worker's rows
    proc = _run(path, key)
    try:
        deadline = clock.monotonic() + 60
        while _statuses(factory) != {"delivered": len(ids)}:
            assert clock.monotonic() < deadline, _statuses(factory)
            clock.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    accepted = receiver.snapshot()
    assert set(accepted) == set(ids)  # every event delivered
    twice = {wid for wid, n in accepted.items() if n > 1}
    assert all(n <= 2 for n in accepted.values())
    assert twice <= set(before_kill)  # a duplicate only for a 2xx answered before the kill
    assert twice  # the paused row's 2xx was never committed: it was sent again
    with factory() as s:
        flagged = set(
            s.scalars(
                sa.select(models.WebhookEvent.event_id)
                .join(WebhookDelivery, WebhookDelivery.event_id == models.WebhookEvent.id)
                .where(WebhookDelivery.possible_duplicate)
            )
        )
    assert twice <= flagged and flagged <= set(before_kill)
    assert receiver.bad_signatures == 0


def test_sync_of_a_maildir_posts_message_linked_with_the_record(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter, key: str,
    receiver: Receiver, tmp_path: Path,
) -> None:  # fmt: skip
    root = tmp_path / "maildir"
    for i, sender in enumerate(["jean@client.fr", "jean@client.fr", "nobody@else.org"]):
        raw = (
            f"From: {sender}\r\nTo: alice@example.com\r\nSubject: Devis {i}\r\n"
            f"Message-ID: <m{i}@client.fr>\r\nDate: Tue, 10 Nov 2026 09:0{i}:00 +0000\r\n"
            f"\r\nBonjour {i}\r\n"
        ).encode()
        write_maildir_message(root, "INBOX", raw)
    mailbox = f"""
        [[mailboxes]]
        name = "alice-inbox"
        connector = "maildir"
        path = "{root}"
        owner = "alice@example.com"
        """
    cfg = config.load(write_config(db_url, mailbox, SETTINGS))
    with factory() as s, s.begin():
        company = models.Company(name="Client SA")
        s.add(company)
        s.flush()
        contact = models.Contact(first_name="Jean", last_name="Dupont", company_id=company.id)
        s.add(contact)
        s.flush()
        s.add(models.ContactEmail(contact_id=contact.id, email="jean@client.fr"))
        made = webhooks.create(s, cfg, receiver.url, ["message.linked"], "test:admin")
        contact_id = contact.id
    receiver.secret = made.secret
    [report] = daemon.run_once(cfg, factory)
    assert report.status == "ok"
    assert delivery.deliver(cfg, factory).dead == []
    bodies = list(receiver.bodies.values())
    assert sorted(b["data"]["message"]["subject"] for b in bodies) == ["Devis 0", "Devis 1"]
    for body in bodies:
        assert body["type"] == "message.linked"
        links = {(x["kind"], x["id"]): x for x in body["data"]["links"]}
        assert links[("contact", contact_id)]["name"] == "Jean Dupont"
        assert body["data"]["message"]["from"] == "jean@client.fr"
    # A second pass over the same mail records nothing new.
    daemon.run_once(cfg, factory)
    assert delivery.deliver(cfg, factory).delivered == []
    assert len(receiver.snapshot()) == 2
