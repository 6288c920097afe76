"""The graph connector against the loopback Graph fake: delta paging, removals and moves,
flags, throttling, 5xx, token expiry mid-sync, malformed items, bounded concurrency, and a
full sync through the engine on SQLite and PostgreSQL.

The fake (mailmanager/testing/fakes/graph_server.py) is a real HTTPS server; the real msal
and httpx talk to it. Provider-neutral behaviour is in tests/connectors/test_contract.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.graph import folders as graph_folders
from connectors.graph.connector import GraphConnector
from connectors.graph.http import retry_after
from mailmanager import config, spi
from mailmanager.db import models
from mailmanager.sync import engine as sync
from tests.conftest import ConfigWriter
from tests.connectors.graph_harness import GraphHarness
from tests.mailgen import make

CLIENT = "Jean Dupont <jean@acme-industrie.fr>"
ALICE = "Alice Martin <alice@example.com>"


@pytest.fixture
def h(tmp_path) -> Iterator[GraphHarness]:  # type: ignore[no-untyped-def]
    harness = GraphHarness(tmp_path)
    harness.fake.clear_faults()
    harness.fake.record = True
    yield harness
    harness.close()
    harness.fake.clear_faults()
    harness.fake.record = False


def conn_of(h: GraphHarness, **overrides: object) -> GraphConnector:
    conn = h._build(**overrides)
    assert isinstance(conn, GraphConnector)
    conn.client.retry_wait = 0.01  # exponential backoff without Retry-After: keep tests fast
    return conn


def mail(n: int, tag: str = "g", **kw: object) -> bytes:
    return make(CLIENT, ALICE, f"Devis {tag} {n}", msgid=f"{tag}-{n}@acme-industrie.fr", **kw)  # type: ignore[arg-type]


def folder(conn: GraphConnector, role: spi.FolderRole) -> spi.RemoteFolder:
    return next(f for f in conn.list_folders() if f.role is role)


def drain(
    conn: GraphConnector, f: spi.RemoteFolder, cursor: str | None, limit: int = 100
) -> tuple[list[spi.ChangeBatch], str]:
    batches: list[spi.ChangeBatch] = []
    while True:
        batch = conn.fetch_changes(f, cursor, limit)
        batches.append(batch)
        cursor = batch.cursor
        if not batch.more:
            return batches, cursor


def got(batches: list[spi.ChangeBatch]) -> list[spi.RawMessage]:
    return [m for b in batches for m in b.messages]


def test_requests_use_immutable_ids_minimal_select_and_page_size(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    for i in range(5):
        h.append(inbox, mail(i))
    conn = conn_of(h, page_size=2)
    batches, _ = drain(conn, folder(conn, spi.FolderRole.INBOX), None, limit=3)
    assert [len(b.messages) for b in batches] == [2, 2, 1]  # min(limit, page_size) per page
    graph = [(t, hd) for _, t, hd in h.fake.requests if t.startswith("/v1.0/")]
    assert graph and all('IdType="ImmutableId"' in hd.get("prefer", "") for _, hd in graph)
    deltas = [(t, hd) for t, hd in graph if "/messages/delta" in t]
    assert all("odata.maxpagesize=2" in hd["prefer"] for _, hd in deltas)
    first = parse_qs(urlsplit(deltas[0][0]).query)
    assert set(first["$select"][0].split(",")) == {
        "id", "internetMessageId", "receivedDateTime", "isRead", "isDraft", "flag",
        "categories", "parentFolderId",
    }  # fmt: skip
    assert "0x1081" in unquote(first["$expand"][0])
    assert "$skiptoken" in deltas[1][0]  # later pages follow @odata.nextLink as given
    assert not any("discovery/instance" in t for _, t, _ in h.fake.requests)


def test_flags_labels_dates_and_no_conversation_hint(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    when = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
    a = h.fake.append(h.upn, inbox, mail(1), read=True, flagged=True, verb=103,
                      categories=["Client VIP", "Devis"], received=when)  # fmt: skip
    b = h.fake.append(h.upn, inbox, mail(2), verb=104, draft=True)
    conn = conn_of(h)
    by_id = {
        m.provider_id: m for m in got(drain(conn, folder(conn, spi.FolderRole.INBOX), None)[0])
    }
    assert by_id[a].flags == {"\\Seen", "\\Flagged", "\\Answered"}
    assert by_id[a].labels == {"Client VIP", "Devis"} and by_id[a].internal_date == when
    assert by_id[b].flags == {"$Forwarded", "\\Draft"}
    assert by_id[a].thread_hint is None and by_id[a].raw == mail(1)
    plain = conn_of(h, answered_flag=False)
    again = got(drain(plain, folder(plain, spi.FolderRole.INBOX), None)[0])
    assert {m.provider_id: m.flags for m in again}[a] == {"\\Seen", "\\Flagged"}
    assert not any("$expand" in t for _, t, _ in h.fake.requests[-3:])


def test_move_keeps_the_provider_id_and_is_removed_from_the_source(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    archive = h.add_folder("Archive", spi.FolderRole.ARCHIVE)
    keep, moving = h.append(inbox, mail(1)), h.append(inbox, mail(2))
    conn = conn_of(h)
    fin, farch = folder(conn, spi.FolderRole.INBOX), folder(conn, spi.FolderRole.ARCHIVE)
    _, cin = drain(conn, fin, None)
    _, carch = drain(conn, farch, None)
    h.fake.move(h.upn, moving, archive)
    after_in, _ = drain(conn, fin, cin)
    after_arch, _ = drain(conn, farch, carch)
    assert [r for b in after_in for r in b.removed] == [moving] and got(after_in) == []
    assert [(m.provider_id, m.raw) for m in got(after_arch)] == [(moving, mail(2))]
    assert keep not in {m.provider_id for m in got(after_arch)}


def test_server_ignoring_page_size_still_honours_limit_across_instances(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    ids = [h.append(inbox, mail(i)) for i in range(7)]
    h.fake.forced_page_size = 5  # pages of 5 whatever we prefer
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):  # a fresh connector per call: the cursor alone carries the position
        conn = conn_of(h)
        batch = conn.fetch_changes(folder(conn, spi.FolderRole.INBOX), cursor, 2)
        conn.close()
        assert len(batch.messages) <= 2
        seen += [m.provider_id for m in batch.messages]
        cursor = batch.cursor
        if not batch.more:
            break
    assert sorted(seen) == sorted(ids)  # each once, none lost at page boundaries
    later = h.append(inbox, mail(99))
    conn = conn_of(h)
    assert [
        m.provider_id for m in got(drain(conn, folder(conn, spi.FolderRole.INBOX), cursor)[0])
    ] == [later]


def test_throttling_honours_retry_after_then_succeeds(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    h.append(inbox, mail(1))
    conn = conn_of(h)
    f = folder(conn, spi.FolderRole.INBOX)
    h.fake.fail("delta", 429, retry_after=1, code="ApplicationThrottled")
    h.fake.fail("value", 503, retry_after=0.2)
    started = time.perf_counter()
    batches, _ = drain(conn, f, None)
    assert len(got(batches)) == 1 and time.perf_counter() - started >= 1.1
    assert h.fake.calls["delta"] == 2 and h.fake.calls["value"] == 2


def test_long_retry_after_ends_the_run_at_once_with_its_delay(h: GraphHarness) -> None:
    h.append(h.add_folder("INBOX", spi.FolderRole.INBOX), mail(1))
    conn = conn_of(h, max_retry_wait=30)
    f = folder(conn, spi.FolderRole.INBOX)
    h.fake.fail("delta", 429, retry_after=120)
    started = time.perf_counter()
    with pytest.raises(spi.TransientError) as caught:
        conn.fetch_changes(f, None, 10)
    assert caught.value.retry_after == 120 and time.perf_counter() - started < 1


def test_5xx_backs_off_then_gives_up_with_transient_error(h: GraphHarness) -> None:
    h.append(h.add_folder("INBOX", spi.FolderRole.INBOX), mail(1))
    conn = conn_of(h)
    f = folder(conn, spi.FolderRole.INBOX)
    h.fake.fail("delta", 500, times=2)
    assert len(conn.fetch_changes(f, None, 10).messages) == 1  # third try answers
    h.fake.fail("delta", 502, times=50)
    with pytest.raises(spi.TransientError):
        conn.fetch_changes(f, None, 10)
    assert h.fake.calls["delta"] == 3 + conn.client.retry_attempts


def test_token_expiring_mid_sync_is_renewed_once(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    for i in range(6):
        h.append(inbox, mail(i))
    conn = conn_of(h, concurrency=1)
    f = folder(conn, spi.FolderRole.INBOX)
    h.fake.expire_tokens_after(3)  # a few Graph calls in, every issued token dies
    assert len(got(drain(conn, f, None, limit=2)[0])) == 6
    assert h.fake.calls["token"] == 2  # the first token, then one renewal


def test_token_refused_even_when_fresh_is_an_auth_error(h: GraphHarness) -> None:
    h.append(h.add_folder("INBOX", spi.FolderRole.INBOX), mail(1))
    conn = conn_of(h)
    f = folder(conn, spi.FolderRole.INBOX)
    h.fake.fail("delta", 401, times=2, code="InvalidAuthenticationToken")
    with pytest.raises(spi.AuthError, match="fresh token"):
        conn.fetch_changes(f, None, 10)


def test_expired_delta_raises_cursor_expired_and_rescan_keeps_ids(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    ids = {h.append(inbox, mail(i)) for i in range(3)}
    conn = conn_of(h)
    f = folder(conn, spi.FolderRole.INBOX)
    _, cursor = drain(conn, f, None, limit=2)
    h.fake.reset_folder(h.upn, inbox)  # the server dropped the sync state: 410 Gone
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(f, cursor, 10)
    batches, _ = drain(conn, f, None)
    assert batches[0].reset and {m.provider_id for m in got(batches)} == ids
    with pytest.raises(spi.CursorExpiredError):  # a cursor of another graph_url
        conn.fetch_changes(f, cursor.replace("127.0.0.1", "graph.example.net"), 10)
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(f, "not a cursor", 10)


def test_content_gone_after_listing_is_reported_removed(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    a, b = h.append(inbox, mail(1)), h.append(inbox, mail(2))
    conn = conn_of(h)
    h.fake.delete_on_fetch(a)  # deleted between the delta page and its $value
    batch = conn.fetch_changes(folder(conn, spi.FolderRole.INBOX), None, 10)
    assert [m.provider_id for m in batch.messages] == [b] and list(batch.removed) == [a]
    assert not batch.more


def test_content_not_readable_yet_does_not_move_the_cursor(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    _, cursor = drain(conn := conn_of(h), f := folder(conn, spi.FolderRole.INBOX), None)
    late = h.append(inbox, mail(1))
    h.fake.hide_content(late)  # listed by delta, $value 404, yet still in the folder
    with pytest.raises(spi.TransientError):
        conn.fetch_changes(f, cursor, 10)
    h.fake.hidden.clear()
    assert [m.provider_id for m in conn.fetch_changes(f, cursor, 10).messages] == [late]


def test_malformed_entries_are_skipped_and_missing_message_id_is_fine(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    bare = b"From: x@acme-industrie.fr\r\nSubject: no id\r\n\r\nhello\r\n"
    pid = h.append(inbox, bare)
    h.fake.inject(h.upn, inbox, {"@odata.type": "#microsoft.graph.message", "isRead": True})
    h.fake.inject(h.upn, inbox, {"id": "AAkALgBroken", "isRead": False})
    conn = conn_of(h)
    batches, _ = drain(conn, folder(conn, spi.FolderRole.INBOX), None)
    assert [(m.provider_id, m.raw) for m in got(batches)] == [(pid, bare)]
    assert [r for b in batches for r in b.removed] == ["AAkALgBroken"]  # gone, says Graph


def test_downloads_are_concurrent_and_bounded(h: GraphHarness) -> None:
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    for i in range(12):
        h.append(inbox, mail(i))
    h.fake.value_delay = 0.05
    for concurrency, expected in ((4, 4), (1, 1)):
        h.fake.inflight_max = 0
        conn = conn_of(h, concurrency=concurrency)
        assert len(got(drain(conn, folder(conn, spi.FolderRole.INBOX), None)[0])) == 12
        assert h.fake.inflight_max == expected
    h.fake.inflight_max = 0
    two = [conn_of(h), conn_of(h)]  # two instances on one mailbox share its 4 slots
    runs = [threading.Thread(target=drain, args=(c, folder(c, spi.FolderRole.INBOX), None))
            for c in two]  # fmt: skip
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert h.fake.inflight_max == 4


def test_folder_selection_by_well_known_name_path_and_wildcard(h: GraphHarness) -> None:
    clients = h.fake.add_folder(h.upn, "Clients")
    acme = h.fake.add_folder(h.upn, "Acme", parent=clients)
    h.fake.add_folder(h.upn, "Globex", parent=clients)

    def names(c: GraphConnector) -> list[tuple[str, spi.FolderRole]]:
        return [(f.name, f.role) for f in c.list_folders()]

    default = conn_of(h, folders=graph_folders.DEFAULT_FOLDERS)
    assert names(default) == [("Inbox", "inbox"), ("Sent Items", "sent"), ("Archive", "archive")]
    picked = conn_of(h, folders=["sentitems", "Clients/*"], exclude_folders=["clients/globex"])
    assert names(picked) == [("Sent Items", "sent"), ("Clients/Acme", "other")]
    assert [f.id for f in picked.list_folders()][1] == acme
    assert names(conn_of(h, folders=["clients"])) == [("Clients", "other")]
    everything = names(conn_of(h, folders=["*"]))
    assert ("Deleted Items", "trash") in everything and ("Clients/Globex", "other") in everything


def test_config_errors_name_the_key() -> None:
    base: dict[str, object] = {
        "client_id": "c",
        "tenant_id": "t",
        "user": "u@x",
        "client_secret": "s",
    }
    cases: list[tuple[dict[str, object], str]] = [
        ({"client_id": ""}, "client_id"),
        ({"client_secret": None}, "client_secret"),
        ({"graph_url": "http://graph.example.net/v1.0"}, "graph_url"),
        ({"authority_url": "http://login.example.net"}, "authority_url"),
        ({"user": ""}, "user"),
    ]
    for change, key in cases:
        with pytest.raises(spi.ConfigError) as caught:
            GraphConnector(spi.ConnectorConfig("m", {**base, **change}))
        assert caught.value.key == f"mailboxes.m.{key}"
    GraphConnector(spi.ConnectorConfig("m", {"client_id": "c", "auth": "device"}))  # no network


# ------------------------------------------------------------------- through the engine
@pytest.fixture
def graph_cfg(
    h: GraphHarness, db_url: str, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> config.Config:
    monkeypatch.setenv("GRAPH_TEST_SECRET", h.secret)
    path = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice-m365"
        connector = "graph"
        owner = "alice@example.com"
        tenant_id = "{h.fake.tenant_id}"
        client_id = "{h.app.client_id}"
        client_secret_env = "GRAPH_TEST_SECRET"
        user = "{h.upn}"
        authority_url = "{h.fake.authority_url}"
        graph_url = "{h.fake.graph_url}"
        ssl_ca_file = "{h.fake.ca_file}"
        [sync]
        batch_size = 3
        parse_workers = 0
        """,
    )
    return config.load(path)


def count(factory: sessionmaker[Session], model: type[models.Base]) -> int:
    with factory() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_sync_engine_end_to_end_with_move_and_expired_delta(h, graph_cfg, factory) -> None:  # type: ignore[no-untyped-def]
    inbox = h.add_folder("INBOX", spi.FolderRole.INBOX)
    sent = h.add_folder("Sent", spi.FolderRole.SENT)
    archive = h.add_folder("Archive", spi.FolderRole.ARCHIVE)
    first = [h.append(inbox, mail(i)) for i in range(5)]
    h.append(sent, make(ALICE, CLIENT, "Re: Devis g 0", msgid="r0@example.com",
                        reply_to="g-0@acme-industrie.fr"))  # fmt: skip
    syncer = sync.Syncer(graph_cfg, factory)
    report = syncer.sync("alice-m365")
    assert report.status == "ok", report.error
    assert count(factory, models.Message) == 6 and count(factory, models.MessageLocation) == 6
    with factory() as s:
        replied = s.scalars(
            sa.select(models.Message).where(models.Message.message_id.like("r0@%"))
        ).one()
        original = s.scalars(
            sa.select(models.Message).where(models.Message.message_id.like("g-0@%"))
        ).one()
        assert replied.thread_id == original.thread_id
    h.fake.move(h.upn, first[0], archive)
    h.fake.reset_folder(h.upn, sent)  # Sent's delta token expires: a rescan keeps everything
    report = syncer.sync("alice-m365")
    assert report.status == "ok", report.error
    assert any(f.rescanned for f in report.folders)
    assert count(factory, models.Message) == 6 and count(factory, models.MessageLocation) == 6
    with factory() as s:
        where = s.execute(
            sa.select(models.Folder.role).join(models.MessageLocation)
            .where(models.MessageLocation.provider_id == first[0])
        ).scalars().all()  # fmt: skip
    assert where == ["archive"]
    assert syncer.sync("alice-m365").total("new_messages") == 0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def asked(value: str) -> float | None:
        return retry_after(httpx.Response(429, headers={"Retry-After": value}))

    now = datetime.now(UTC)  # wall clock: a Retry-After date is read against the real clock
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert asked("7") == 7 and asked("garbage") is None
    assert 80 < (asked(later) or 0) <= 90 and asked("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_check_reports_an_unreachable_authority(h: GraphHarness) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    steps = conn_of(h, authority_url=f"https://127.0.0.1:{port}").check()
    assert [(s.step, s.ok) for s in steps] == [("token", False)]
    assert "cannot reach" in steps[0].detail and "retry later" in steps[0].detail
