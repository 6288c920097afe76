"""The Exchange (EWS) connector: real exchangelib over HTTP against the loopback EWS fake
(mailmanager/testing/fakes/ews_server.py). Sync behaviour, faults and malformed items;
diagnostics, TLS, OAuth and the sync engine are in test_exchange_check.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest

from connectors.exchange import ews as exchange_ews
from connectors.exchange import soap as exchange_soap
from connectors.exchange.connector import ExchangeConnector
from mailmanager import spi
from mailmanager.testing.fakes.ews_server import EwsServer, FakeMailbox
from tests.drain import drain
from tests.mailgen import make

EMAIL = "alice@corp.example"
Role = spi.FolderRole
Connect = Callable[..., ExchangeConnector]


def msg(n: int, body: str = "") -> bytes:
    text = body or f"Bonjour, message {n}.\n"
    return make("client@acme.fr", EMAIL, f"Subject {n}", text, msgid=f"m{n}@acme.fr")


@pytest.fixture
def ews() -> Iterator[EwsServer]:
    with EwsServer(auth="basic", username="corp\\alice", password="secret") as server:
        yield server


@pytest.fixture
def mailbox(ews: EwsServer) -> FakeMailbox:
    return ews.add_mailbox(EMAIL)


@pytest.fixture
def connect(ews: EwsServer) -> Iterator[Connect]:
    made: list[ExchangeConnector] = []

    def build(**overrides: object) -> ExchangeConnector:
        values = {o.name: o.default for o in ExchangeConnector.options}
        values.update(email=EMAIL, service_endpoint=ews.url, auth_type="basic",
                      username="corp\\alice", password="secret", version="15.1.2.3")  # fmt: skip
        values.update(overrides)
        conn = ExchangeConnector(spi.ConnectorConfig("alice", values))
        conn.retry_wait = 0.01
        made.append(conn)
        return conn

    yield build
    for conn in made:
        conn.close()


def inbox_of(conn: ExchangeConnector) -> spi.RemoteFolder:
    return next(f for f in conn.list_folders() if f.role is Role.INBOX)


# ------------------------------------------------------------------------------ folders
def test_folders_by_role_glob_and_exclusion(mailbox: FakeMailbox, connect: Connect) -> None:
    archive = mailbox.add_folder("Archives")  # French Outlook's one-click archive folder
    clients = mailbox.add_folder("Clients")
    acme = mailbox.add_folder("ACME", parent=clients)
    mailbox.add_folder("Old", parent=clients)
    mailbox.add_folder("Calendrier", folder_class="IPF.Appointment")
    nested = mailbox.add_folder("Archive", parent=clients)  # not top-level: not the role

    default = connect().list_folders()
    assert [(f.name, f.role) for f in default] == [
        ("Inbox", Role.INBOX), ("Sent Items", Role.SENT), ("Archives", Role.ARCHIVE)
    ]  # fmt: skip
    assert default[2].id == archive
    chosen = connect(folders=["inbox", "clients/*"], exclude_folders=["*/old"]).list_folders()
    assert [(f.name, f.id) for f in chosen][1:] == [
        ("Clients/ACME", acme),
        ("Clients/Archive", nested),
    ]
    everything = {f.name for f in connect(folders=["*"]).list_folders()}
    assert "Calendrier" not in everything and {"Drafts", "Junk Email", "Clients"} <= everything


def test_folder_renamed_keeps_its_id_and_cursor(mailbox: FakeMailbox, connect: Connect) -> None:
    fid = mailbox.add_folder("Clients")
    mailbox.append(fid, msg(1))
    conn = connect(folders=["Clients", "Customers"])
    [folder] = conn.list_folders()
    first = drain(conn, folder, None)
    mailbox.folder(fid).name = "Customers"
    mailbox.append(fid, msg(2))
    [renamed] = conn.list_folders()
    assert (renamed.id, renamed.name) == (fid, "Customers")
    assert [m.raw for m in drain(conn, renamed, first.cursor).messages] == [msg(2)]


# ------------------------------------------------------------------------------ sync
def test_full_scan_then_incremental_changes(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect
) -> None:
    ids = [mailbox.append("inbox", msg(i), is_read=i == 0) for i in range(5)]
    conn = connect()
    inbox = inbox_of(conn)
    full = drain(conn, inbox, None, limit=2)
    assert [len(b.messages) for b in full.batches] == [2, 2, 1]
    assert full.batches[0].reset and not any(b.reset for b in full.batches[1:])
    assert [m.raw for m in full.messages] == [msg(i) for i in range(5)]
    assert [m.provider_id for m in full.messages] == ids
    assert full.messages[0].flags == {"\\Seen"} and full.messages[1].flags == frozenset()
    assert all(m.internal_date is not None for m in full.messages)

    mailbox.delete(ids[0])
    mailbox.set_props(ids[1], is_read=True)  # a ReadFlagChange
    mailbox.set_props(ids[2], flag_status=2)  # an Update
    mailbox.set_props(ids[3], is_read=True, last_verb=102)  # replied to
    mailbox.set_props(ids[4], last_verb=104)  # forwarded
    new = mailbox.append("inbox", msg(9), kind="MeetingRequest")
    gets = ews.count("GetItem")
    after = drain(conn, inbox, full.cursor)
    assert [m.provider_id for m in after.messages] == [new] and after.messages[0].raw == msg(9)
    assert after.removed == [ids[0]]
    assert after.flag_changes == {
        ids[1]: {"\\Seen"},
        ids[2]: {"\\Flagged"},
        ids[3]: {"\\Seen", "\\Answered"},
        ids[4]: {"$Forwarded"},
    }
    assert ews.count("GetItem") == gets + 2  # the new message, and the read change's flags
    assert drain(conn, inbox, after.cursor).batches[0].messages == []


def test_read_flag_change_after_unseen_update_is_a_full_update(
    mailbox: FakeMailbox, connect: Connect
) -> None:
    iid = mailbox.append("inbox", msg(1))
    conn = connect()
    inbox = inbox_of(conn)
    cursor = drain(conn, inbox, None).cursor
    mailbox.set_props(iid, flag_status=2)
    mailbox.set_props(iid, is_read=True)
    assert drain(conn, inbox, cursor).flag_changes == {iid: {"\\Seen", "\\Flagged"}}


def test_byte_budget_keeps_undelivered_items_in_the_cursor(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect
) -> None:
    big = "x" * 70 + "\n"
    for i in range(6):
        mailbox.append("inbox", msg(i, big * 60))  # ~5.5 KB each (Size adds 1.2 KB)
    conn = connect(fetch_batch_bytes=14_000)
    inbox = inbox_of(conn)
    first = conn.fetch_changes(inbox, None, 100)
    assert len(first.messages) == 2 and first.more and first.reset
    assert ews.count("SyncFolderItems") == 1
    fresh = connect(fetch_batch_bytes=14_000)  # another process resumes from the cursor
    rest = drain(fresh, inbox, first.cursor)
    assert ews.count("SyncFolderItems") == 1  # that page was the last: pending items only
    assert [m.raw for m in [*first.messages, *rest.messages]] == [
        msg(i, big * 60) for i in range(6)
    ]


def test_pending_item_deleted_before_delivery_is_dropped_quietly(
    mailbox: FakeMailbox, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [mailbox.append("inbox", msg(i, "y" * 8000)) for i in range(3)]
    conn = connect(fetch_batch_bytes=5_000)
    inbox = inbox_of(conn)
    first = conn.fetch_changes(inbox, None, 100)
    assert [m.provider_id for m in first.messages] == ids[:1]
    mailbox.delete(ids[1])
    with caplog.at_level(logging.WARNING, logger="connectors"):
        rest = drain(conn, inbox, first.cursor)
    assert [m.provider_id for m in rest.messages] == ids[2:] and caplog.records == []
    assert drain(conn, inbox, rest.cursor).removed == [ids[1]]  # at the next pass


def test_invalid_sync_state_expires_the_cursor(mailbox: FakeMailbox, connect: Connect) -> None:
    mailbox.append("inbox", msg(1))
    conn = connect()
    inbox = inbox_of(conn)
    cursor = drain(conn, inbox, None).cursor
    mailbox.reset_folder("inbox")
    with pytest.raises(spi.CursorExpiredError, match="ErrorInvalidSyncStateData"):
        conn.fetch_changes(inbox, cursor, 10)
    again = drain(conn, inbox, None)
    assert again.batches[0].reset and [m.raw for m in again.messages] == [msg(1)]
    with pytest.raises(spi.CursorExpiredError, match="unreadable"):
        conn.fetch_changes(inbox, '{"v": 7}', 10)


def test_deleted_folder(mailbox: FakeMailbox, connect: Connect) -> None:
    fid = mailbox.add_folder("Clients")
    mailbox.append(fid, msg(1))
    conn = connect(folders=["Clients"])
    [folder] = conn.list_folders()
    cursor = drain(conn, folder, None).cursor
    mailbox.remove_folder(fid)
    with pytest.raises(spi.CursorExpiredError, match="no longer exists"):
        conn.fetch_changes(folder, cursor, 10)
    scan = conn.fetch_changes(folder, None, 10)
    assert (scan.messages, scan.reset, scan.more) == ([], True, False)
    still = conn.fetch_changes(folder, scan.cursor, 10)
    assert (still.messages, still.reset, still.more) == ([], False, False)


# ------------------------------------------------------------------------------ faults
def test_server_busy_is_retried_after_the_back_off(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect
) -> None:
    mailbox.append("inbox", msg(1))
    conn = connect()
    inbox = inbox_of(conn)
    ews.fail("busy", times=2, operation="SyncFolderItems", back_off_ms=150)
    started = time.perf_counter()
    assert [m.raw for m in drain(conn, inbox, None).messages] == [msg(1)]
    assert time.perf_counter() - started >= 0.3  # twice the server's BackOffMilliseconds
    assert ews.count("SyncFolderItems") == 3


def test_long_back_off_goes_to_the_core_at_once(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect
) -> None:
    conn = connect()
    inbox = inbox_of(conn)
    ews.fail("busy", times=5, back_off_ms=297_749)
    started = time.perf_counter()
    with pytest.raises(spi.TransientError) as err:
        conn.fetch_changes(inbox, None, 10)
    assert err.value.retry_after == pytest.approx(297.749)
    assert time.perf_counter() - started < 2 and ews.count("SyncFolderItems") == 1


@pytest.mark.parametrize("kind", ["http500", "http503", "drop"])
def test_server_errors_are_retried_then_reported(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect, kind: str
) -> None:
    mailbox.append("inbox", msg(1))
    conn = connect()
    inbox = inbox_of(conn)
    ews.fail(kind, times=1, operation="GetItem")
    assert [m.raw for m in drain(conn, inbox, None).messages] == [msg(1)]
    ews.fail(kind, times=10, operation="SyncFolderItems")
    before = ews.count("SyncFolderItems")
    with pytest.raises(spi.TransientError):
        conn.fetch_changes(inbox, None, 10)
    assert ews.count("SyncFolderItems") - before == conn.retry_attempts


def test_wrong_password_is_an_auth_error_without_retries(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect
) -> None:
    with pytest.raises(spi.AuthError, match="credentials rejected"):
        connect(password="wrong").list_folders()
    assert ews.count("GetFolder") == 1


def test_access_denied_is_an_auth_error(mailbox: FakeMailbox, connect: Connect) -> None:
    mailbox.denied = True
    with pytest.raises(spi.AuthError, match="ErrorAccessDenied"):
        connect().list_folders()


def test_impersonation_reads_the_named_mailbox(ews: EwsServer, connect: Connect) -> None:
    other = ews.add_mailbox("bob@corp.example")
    other.append("inbox", msg(7))
    ews.add_mailbox(EMAIL).append("inbox", msg(1))
    conn = connect(email="bob@corp.example", access="impersonation")
    assert [m.raw for m in drain(conn, inbox_of(conn), None).messages] == [msg(7)]


def test_unpinned_version_is_asked_of_the_server(
    mailbox: FakeMailbox, ews: EwsServer, connect: Connect
) -> None:
    mailbox.append("inbox", msg(1))
    conn = connect(version=None)
    assert [m.raw for m in drain(conn, inbox_of(conn), None).messages] == [msg(1)]
    assert ews.count("ConvertId") == 1  # exchangelib's version probe


# ------------------------------------------------------------------------------ items
def test_malformed_items_are_skipped_with_a_warning(
    mailbox: FakeMailbox, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "CONFIDENTIAL-BODY-TEXT"
    good = mailbox.append("inbox", msg(1, secret))
    bad = {kind: mailbox.append("inbox", msg(2, secret)) for kind in
           ("bad_base64", "no_mime", "conversion_failed")}  # fmt: skip
    for kind, iid in bad.items():
        mailbox.corrupt(iid, kind)
    last = mailbox.append("inbox", msg(3))
    conn = connect()
    inbox = inbox_of(conn)
    with caplog.at_level(logging.DEBUG, logger="connectors"):
        got = drain(conn, inbox, None)
    assert [m.provider_id for m in got.messages] == [good, last]
    skipped = {
        vars(r)["item"]: vars(r)["problem"]
        for r in caplog.records
        if vars(r).get("action") == "ews_item_skipped"
    }
    assert skipped.keys() == set(bad.values())
    assert "base64" in skipped[bad["bad_base64"]] and "no MimeContent" in skipped[bad["no_mime"]]
    assert "ErrorMimeContentConversionFailed" in skipped[bad["conversion_failed"]]
    assert secret not in caplog.text
    assert drain(conn, inbox, got.cursor).messages == []  # the cursor moved past them


def test_mime_decoding_tolerates_missing_padding_only() -> None:
    assert exchange_soap.decode_mime("U3ViamVjdDogaGk") == b"Subject: hi"
    assert exchange_soap.decode_mime("U3Vi\r\namVjdDogaGk=") == b"Subject: hi"
    for bad in ("U3ViamVjdDogaGkx2", "U3Vi*mVj"):
        with pytest.raises(ValueError):
            exchange_soap.decode_mime(bad)


# ------------------------------------------------------------------------------ Exchange Online
@pytest.mark.parametrize(
    "url",
    [
        "https://outlook.office365.com/EWS/Exchange.asmx",
        "https://eur01.outlook.com/ews/exchange.asmx",
    ],
)
def test_exchange_online_is_refused_with_graph_advice(connect: Connect, url: str) -> None:
    conn = connect(service_endpoint=url)
    with pytest.raises(spi.UnsupportedError, match='connector = "graph"'):
        conn.list_folders()
    [step] = conn.check()
    assert not step.ok and "2027-04-01" in step.detail and "graph" in step.detail


def test_exchange_online_hosts() -> None:
    online = ["https://outlook.office365.com/x", "https://outlook.office.com/x",
              "https://xyz.outlook.com/x", "https://outlook.office365.us/x"]  # fmt: skip
    onprem = ["https://mail.corp.example/EWS/Exchange.asmx", "https://outlook.corp.example/x",
              "https://office365.com.corp.example/x"]  # fmt: skip
    assert [exchange_ews.is_exchange_online(u) for u in online] == [True] * 4
    assert [exchange_ews.is_exchange_online(u) for u in onprem] == [False] * 3


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ({"email": "alice"}, "email", "not an address"),
        ({"service_endpoint": None}, "service_endpoint", "autodiscover"),
        (
            {"service_endpoint": "http://mail.corp.example/EWS/Exchange.asmx"},
            "service_endpoint",
            "https",
        ),
        ({"service_endpoint": "mail.corp.example"}, "service_endpoint", "not a URL"),
        ({"password": None}, "password", "username and password"),
        ({"auth_type": "oauth", "client_id": "x"}, "client_secret", "oauth"),
        ({"auth_type": "oauth", "client_id": "x", "client_secret": "y"}, "tenant_id", "AD FS"),
        ({"version": "2016"}, "version", "15.1"),
    ],
)
def test_config_errors_name_the_key(
    connect: Connect, override: dict[str, object], key: str, words: str
) -> None:
    with pytest.raises(spi.ConfigError) as err:
        connect(**override)
    assert err.value.key == f"mailboxes.alice.{key}" and words in str(err.value)
