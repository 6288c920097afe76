"""`[sync] max_message_size` honoured at fetch (issue #16): a message over the limit is never
downloaded whole where the provider tells its size first. It is stored as its headers and
the same note the parse-time path writes (`mime.oversize_stub`), its size is the provider's,
the sync's peak memory stays far below the message's size, and the message after it (a
canary) is stored."""

from __future__ import annotations

import multiprocessing
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.exchange.connector import ExchangeConnector
from connectors.gmail.connector import GmailConnector
from connectors.graph.connector import GraphConnector
from connectors.imap import ImapConnector
from mailmanager import config, spi
from mailmanager.db import models
from mailmanager.db.models import Message
from mailmanager.sync import engine as sync
from mailmanager.testing.dovecot import PASSWORD, DovecotServer
from mailmanager.testing.fakes.ews_server import EwsServer
from mailmanager.testing.fakes.gmail_server import GmailFake
from tests.conftest import ConfigWriter
from tests.connectors.graph_harness import GraphHarness
from tests.integration.conftest import ImapAccount
from tests.integration.gmail_support import oauth
from tests.mailgen import make

ALICE = "alice@example.com"
CLIENT = "jean@acme.fr"
LIMIT = 1_048_576
BIG_SIZE = 60 * 1_048_576
PEAK_BOUND = 12 * 1_048_576  # a fifth of the message: it was never held whole


def big_message(size: int = BIG_SIZE) -> bytes:
    """A message of `size` bytes (LF line ends, as Dovecot stores them) with a base64-looking
    attachment."""
    head = (
        f"From: Jean <{CLIENT}>\nTo: {ALICE}\nSubject: Catalogue complet\n"
        "Message-ID: <big@acme.fr>\nDate: Mon, 2 Nov 2026 09:00:00 +0000\n"
        "MIME-Version: 1.0\nContent-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: base64\n\n"
    ).encode()
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size]


CANARY = make(CLIENT, ALICE, "Canari", msgid="canary@acme.fr").replace(b"\r\n", b"\n")


def peak_while(run: Callable[[], object]) -> int:
    """Peak bytes Python allocated while `run` ran (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_stub_and_canary(factory: sessionmaker[Session], size: int) -> None:
    with factory() as s:
        row = s.execute(
            sa.select(Message.subject, Message.snippet, Message.size, Message.sha256).where(
                Message.message_id == "big@acme.fr"
            )
        ).one()
        data = s.scalar(sa.select(models.MessageRaw.data).where(models.MessageRaw.sha256 == row[3]))
        ids = set(s.scalars(sa.select(Message.message_id)))
    assert row[0] == "Catalogue complet"
    assert row[1].startswith(f"[Message too large: {size} bytes"), row[1]
    assert row[2] == size
    assert data is not None and len(data) < 4096 and b"QUJD" not in data
    assert b"Subject: Catalogue complet" in data and b"[Message too large" in data
    assert "canary@acme.fr" in ids


# --------------------------------------------------------------------------------- IMAP


def test_imap_connector_fetches_only_the_headers_of_an_oversize_message(
    imap_account: ImapAccount,
) -> None:
    server, user = imap_account.server, imap_account.user
    server.write_maildir(user, [big_message(3 * LIMIT), CANARY])
    values = server.options(user)
    conn = imap_account.connector()  # no limit: the whole message, as before
    whole = conn.fetch_changes(imap_account.folder(), None, 10).messages
    assert [len(m.raw) > 3 * LIMIT - 10 and not m.truncated for m in whole] == [True, False]
    limited = spi.ConnectorConfig(mailbox=user, values=values, max_message_size=LIMIT)
    conn2 = ImapConnector(limited)
    try:
        first, canary = conn2.fetch_changes(imap_account.folder(), None, 10).messages
    finally:
        conn2.close()
    assert first.truncated and first.size is not None and first.size >= 3 * LIMIT
    assert len(first.raw) < 1024 and first.raw.rstrip().endswith(b"base64")
    assert not canary.truncated and b"Canari" in canary.raw


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_imap_sync_of_a_60_mb_message_stores_headers_and_a_note(
    dovecot: DovecotServer,
    db_url: str,
    factory: sessionmaker[Session],
    write_config: ConfigWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = DovecotServer.new_user()
    raw = big_message()
    crlf_size = len(raw) + raw.count(b"\n")  # RFC822.SIZE: what the server sends, CRLF
    dovecot.write_maildir(user, [raw, CANARY])
    del raw
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", PASSWORD)
    mailbox = f"""
        [[mailboxes]]
        name = "alice"
        connector = "imap"
        host = "127.0.0.1"
        port = {dovecot.imap_port}
        security = "none"
        username = "{user}"
        password_env = "ALICE_IMAP_PASSWORD"
        owner = "{ALICE}"
        [sync]
        parse_workers = 0
        max_message_size = {LIMIT}
        """
    cfg = config.load(write_config(db_url, mailbox))
    reports: list[sync.SyncReport] = []
    peak = peak_while(lambda: reports.append(sync.Syncer(cfg, factory).sync("alice")))
    assert reports[0].status == "ok", reports[0].error
    assert peak < PEAK_BOUND, f"peak {peak} bytes"
    assert_stub_and_canary(factory, crlf_size)


# ---------------------------------------------------- Gmail, Graph, EWS (loopback fakes)
# The fakes serve from a thread of this process; the fetch runs in a forked child so that
# only its own allocations are measured.


def fetch_in_child(fetch: Callable[[], list[spi.RawMessage]]) -> tuple[int, list[spi.RawMessage]]:
    """(peak bytes allocated, messages) of `fetch` run in a forked child under tracemalloc."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()

    def run() -> None:
        try:
            tracemalloc.start()
            messages = fetch()
            theirs.send((tracemalloc.get_traced_memory()[1], messages))
        except BaseException as exc:
            theirs.send((-1, repr(exc)))

    child = ctx.Process(target=run, daemon=True)
    child.start()
    try:
        assert ours.poll(120), "the fetch did not end"
        peak, found = ours.recv()
    finally:
        child.join(10)
    assert peak >= 0, found
    return peak, found


def assert_headers_only(found: list[spi.RawMessage], at_least: int) -> None:
    big = next(m for m in found if b"Catalogue complet" in m.raw)
    canary = next(m for m in found if b"Canari" in m.raw)
    assert big.truncated and big.size is not None and big.size >= at_least
    assert len(big.raw) < 4096 and b"QUJD" not in big.raw
    assert b"big@acme.fr" in big.raw
    assert not canary.truncated


def drain_messages(conn: spi.Connector, folder: spi.RemoteFolder) -> list[spi.RawMessage]:
    found: list[spi.RawMessage] = []
    cursor: str | None = None
    for _ in range(20):
        batch = conn.fetch_changes(folder, cursor, 50)
        found += batch.messages
        cursor = batch.cursor
        if not batch.more:
            break
    conn.close()
    return found


def test_gmail_fetches_metadata_for_an_oversize_message() -> None:
    fake = GmailFake()
    try:
        fake.append(big_message(), ["INBOX"])
        fake.append(CANARY, ["INBOX"])
        conn = gmail_with_limit(fake)
        folder = next(f for f in conn.list_folders() if f.id == "ALL")
        peak, found = fetch_in_child(lambda: drain_messages(conn, folder))
    finally:
        fake.close()
    assert_headers_only(found, BIG_SIZE)
    assert peak < PEAK_BOUND, f"peak {peak} bytes"


def gmail_with_limit(fake: GmailFake) -> spi.Connector:
    values: dict[str, object] = {o.name: o.default for o in GmailConnector.options}
    client_json, refresh = oauth(fake)
    values.update(api_endpoint=fake.url, max_retries=2, max_retry_wait=5,
                  client_secret=client_json, refresh_token=refresh)  # fmt: skip
    return GmailConnector(spi.ConnectorConfig("g", values, max_message_size=LIMIT))


def test_graph_fetches_internet_headers_for_an_oversize_message(tmp_path: Path) -> None:
    h = GraphHarness(tmp_path)
    try:
        inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
        h.append(inbox, big_message())
        h.append(inbox, CANARY)
        conn = GraphConnector(spi.ConnectorConfig("x", h.options(), max_message_size=LIMIT))
        conn.client.retry_wait = 0.01
        folder = next(f for f in conn.list_folders() if f.role is spi.FolderRole.INBOX)
        peak, found = fetch_in_child(lambda: drain_messages(conn, folder))
    finally:
        h.close()
    assert_headers_only(found, BIG_SIZE)
    assert peak < PEAK_BOUND, f"peak {peak} bytes"


def test_ews_fetches_internet_headers_for_an_oversize_message() -> None:
    with EwsServer(auth="basic", username="corp\\alice", password="secret") as ews:
        box = ews.add_mailbox("alice@corp.example")
        box.append("inbox", big_message())
        box.append("inbox", CANARY)
        values = {o.name: o.default for o in ExchangeConnector.options}
        values.update(email="alice@corp.example", service_endpoint=ews.url, auth_type="basic",
                      username="corp\\alice", password="secret", version="15.1.2.3")  # fmt: skip
        conn = ExchangeConnector(spi.ConnectorConfig("e", values, max_message_size=LIMIT))
        folder = next(f for f in conn.list_folders() if f.role is spi.FolderRole.INBOX)
        peak, found = fetch_in_child(lambda: drain_messages(conn, folder))
    assert_headers_only(found, BIG_SIZE)
    assert peak < PEAK_BOUND, f"peak {peak} bytes"
