"""The IMAP connector against a real Dovecot on loopback (see conftest.py for the servers)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from connectors.imap import adapter as imap_adapter
from connectors.imap.connector import ImapConnector
from mailmanager import spi
from mailmanager.testing.dovecot import DovecotServer, free_port
from tests.drain import drain
from tests.integration.conftest import ImapAccount
from tests.mailgen import make

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def msg(n: int, size: int = 0) -> bytes:
    body = f"Message {n}.\n" + ("x" * 70 + "\n") * (size // 71)
    return make("client@acme.fr", "alice@example.com", f"Subject {n}", body, msgid=f"m{n}@t")


# ---------------------------------------------------------------------------- basics
def test_initial_sync_in_limited_batches(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    raws = [msg(i) for i in range(5)]
    uids = server.append(user, "INBOX", raws)
    server.append(user, "Sent", [msg(99)])
    conn = imap_account.connector()

    folders = {f.id: f.role for f in conn.list_folders()}
    assert folders == {
        "INBOX": spi.FolderRole.INBOX,
        "Sent": spi.FolderRole.SENT,
        "Archive": spi.FolderRole.ARCHIVE,
    }
    got = drain(conn, imap_account.folder(), None, limit=2)
    assert [len(b.messages) for b in got.batches] == [2, 2, 1]
    assert [b.reset for b in got.batches] == [True, False, False]
    assert [m.provider_id for m in got.messages] == [str(u) for u in uids]
    assert [m.raw for m in got.messages] == [r for r in raws]
    assert all(m.internal_date is not None and m.internal_date.tzinfo for m in got.messages)
    assert json.loads(got.cursor or "")["u"] == uids[-1]


def test_new_mail_then_nothing(any_account: ImapAccount) -> None:
    server, user = any_account.server, any_account.user
    server.append(user, "INBOX", [msg(1), msg(2)])
    conn = any_account.connector()
    first = drain(conn, any_account.folder(), None)
    assert len(first.messages) == 2

    server.deliver(user, msg(3))  # through LMTP, the real delivery path
    second = drain(conn, any_account.folder(), first.cursor)
    assert len(second.messages) == 1
    assert second.messages[0].raw.endswith(msg(3))  # after LMTP's Return-Path/Received
    assert not second.batches[0].reset

    third = drain(conn, any_account.folder(), second.cursor)
    assert (third.messages, third.removed, third.flag_changes) == ([], [], {})
    assert third.cursor == second.cursor


def test_flag_change_is_reported(any_account: ImapAccount) -> None:
    server, user = any_account.server, any_account.user
    uids = server.append(user, "INBOX", [msg(i) for i in range(3)])
    conn = any_account.connector()
    first = drain(conn, any_account.folder(), None)
    with server.session(user) as imap:
        imap.select_folder("INBOX")
        imap.add_flags([uids[1]], [b"\\Flagged", b"$Important"])
    second = drain(conn, any_account.folder(), first.cursor)
    assert second.messages == []
    assert second.flag_changes[str(uids[1])] == {"\\Flagged", "$Important"}
    # Mode "p" may report a whole block of UIDs; the others must be unchanged if reported.
    for uid in (uids[0], uids[2]):
        assert second.flag_changes.get(str(uid), frozenset()) == frozenset()
    assert drain(conn, any_account.folder(), second.cursor).flag_changes == {}


def test_expunge_is_reported(any_account: ImapAccount) -> None:
    server, user = any_account.server, any_account.user
    uids = server.append(user, "INBOX", [msg(i) for i in range(4)])
    conn = any_account.connector()
    first = drain(conn, any_account.folder(), None)
    with server.session(user) as imap:
        imap.select_folder("INBOX")
        imap.delete_messages([uids[1], uids[3]])
        imap.expunge()
    second = drain(conn, any_account.folder(), first.cursor)
    assert sorted(second.removed) == sorted([str(uids[1]), str(uids[3])])
    assert drain(conn, any_account.folder(), second.cursor).removed == []


def test_server_flags_never_change(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    uids = server.append(user, "INBOX", [msg(i) for i in range(3)])
    with server.session(user) as imap:
        imap.select_folder("INBOX", readonly=True)
        before = imap.get_flags(uids)
    assert all(b"\\Seen" not in f for f in before.values())
    conn = imap_account.connector()
    got = drain(conn, imap_account.folder(), None)
    assert len(got.messages) == 3
    with server.session(user) as imap:
        imap.select_folder("INBOX", readonly=True)
        assert imap.get_flags(uids) == before


def test_fetch_groups_follow_the_byte_budget(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    server.append(user, "INBOX", [msg(i, size=4000) for i in range(7)])
    conn = imap_account.connector(fetch_batch_bytes=9000)
    got = drain(conn, imap_account.folder(), None, limit=100)
    assert [len(b.messages) for b in got.batches] == [2, 2, 2, 1]
    assert len({m.provider_id for m in got.messages}) == 7


# ------------------------------------------------------------- folder life events
def test_uidvalidity_change_expires_the_cursor(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    server.append(user, "Projects", [msg(1)])
    conn = imap_account.connector(folders=["INBOX", "Projects"])
    folder = imap_account.folder("Projects")
    first = drain(conn, folder, None)
    with server.session(user) as imap:
        imap.delete_folder("Projects")
        imap.create_folder("Projects")
    server.append(user, "Projects", [msg(2)])
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, first.cursor, 10)
    rescan = drain(conn, folder, None)
    assert rescan.batches[0].reset
    assert [m.raw for m in rescan.messages] == [msg(2)]


def test_rename_keeps_the_cursor(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    server.append(user, "Projects", [msg(1), msg(2)])
    conn = imap_account.connector(folders=["INBOX", "Proj*"])
    old = imap_account.folder("Projects")
    first = drain(conn, old, None)
    with server.session(user) as imap:
        imap.rename_folder("Projects", "Projects 2026")
    server.append(user, "Projects 2026", [msg(3)])

    assert "Projects 2026" in [f.id for f in conn.list_folders()]
    followed = drain(conn, old, first.cursor)  # the old id follows the rename
    assert [m.raw for m in followed.messages] == [msg(3)]
    carried = drain(conn, imap_account.folder("Projects 2026"), first.cursor)
    assert len(carried.messages) == 1 and not carried.batches[0].reset


def test_deleted_folder(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    server.append(user, "Old", [msg(1)])
    conn = imap_account.connector(folders=["*"])
    first = drain(conn, imap_account.folder("Old"), None)
    with server.session(user) as imap:
        imap.delete_folder("Old")
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(imap_account.folder("Old"), first.cursor, 10)
    rescan = conn.fetch_changes(imap_account.folder("Old"), None, 10)
    assert rescan.reset and not rescan.messages and not rescan.more


def test_move_is_expunge_here_and_new_there(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    uids = server.append(user, "INBOX", [msg(1), msg(2)])
    conn = imap_account.connector()
    archive = spi.RemoteFolder("Archive", "Archive", spi.FolderRole.ARCHIVE)
    inbox_state = drain(conn, imap_account.folder(), None)
    archive_state = drain(conn, archive, None)
    assert archive_state.messages == []
    with server.session(user) as imap:
        imap.select_folder("INBOX")
        imap.move([uids[0]], "Archive")
    assert drain(conn, imap_account.folder(), inbox_state.cursor).removed == [str(uids[0])]
    moved = drain(conn, archive, archive_state.cursor).messages
    assert [m.raw for m in moved] == [msg(1)]


def test_folder_selection_by_role_glob_and_exclusion(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    for name in ("Clients/Acme", "Clients/Globex", "Clients/Old", "Perso"):
        server.append(user, name, [msg(1)])
    conn = imap_account.connector(folders=["\\Sent", "Clients/*"], exclude_folders=["Clients/Old"])
    assert [(f.id, f.role) for f in conn.list_folders()] == [
        ("Sent", spi.FolderRole.SENT),
        ("Clients/Acme", spi.FolderRole.OTHER),
        ("Clients/Globex", spi.FolderRole.OTHER),
    ]


# -------------------------------------------------------------------- resilience
def test_server_killed_between_batches_then_restarted(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    server.append(user, "INBOX", [msg(i) for i in range(12)])
    conn = imap_account.connector()
    first = conn.fetch_changes(imap_account.folder(), None, 4)
    assert len(first.messages) == 4 and first.more

    server.kill()  # SIGKILL the master by PID: no goodbye to the client
    restarter = threading.Timer(0.3, server.start)
    restarter.start()
    try:
        second = conn.fetch_changes(imap_account.folder(), first.cursor, 4)  # reconnects
    finally:
        restarter.join()
    rest = drain(conn, imap_account.folder(), second.cursor, limit=4)
    ids = [m.provider_id for m in [*first.messages, *second.messages, *rest.messages]]
    assert ids == [str(i) for i in range(1, 13)]


def test_server_down_raises_transient_then_resumes(imap_account: ImapAccount) -> None:
    server, user = imap_account.server, imap_account.user
    server.append(user, "INBOX", [msg(i) for i in range(6)])
    conn = imap_account.connector()
    first = conn.fetch_changes(imap_account.folder(), None, 3)
    server.kill()
    try:
        with pytest.raises(spi.TransientError):
            conn.fetch_changes(imap_account.folder(), first.cursor, 3)
    finally:
        server.start()
    rest = drain(conn, imap_account.folder(), first.cursor, limit=3)
    assert [m.provider_id for m in rest.messages] == ["4", "5", "6"]


def test_at_most_two_connections_per_account(imap_account: ImapAccount) -> None:
    conns = [imap_account.connector(timeout=1) for _ in range(3)]
    conns[2].retry_attempts = 1
    conns[0].list_folders()
    conns[1].list_folders()
    with pytest.raises(spi.TransientError, match="connections"):
        conns[2].list_folders()
    conns[0].close()
    assert conns[2].list_folders()


def test_idle_wakes_up_on_delivery(imap_account: ImapAccount) -> None:
    conn = imap_account.connector(idle=True)
    assert conn.wait_for_changes(0.2) is False
    timer = threading.Timer(0.3, imap_account.server.deliver, (imap_account.user, msg(1)))
    timer.start()
    started = time.monotonic()
    assert conn.wait_for_changes(10) is True
    assert time.monotonic() - started < 5
    timer.join()


# ---------------------------------------------------------------- bytes and TLS
# Not here: a bare CR, which Dovecot stores as CRLF (so it is not byte-stable over IMAP).
MALFORMED = [
    b"From: no-close-bracket <a@b\r\nSubject: =?utf-8?q?broken=ZZ?=\r\n\r\nbody\r\n",
    b"Subject: missing boundary\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nhi\r\n",
    b"Subject: \xff\xfe latin-1 \xe9t\xe9 in a header\r\nX-Bad\r\n\r\n\xe9\xe8 8-bit body\r\n",
    b"Subject: a header line far too long " + b"y" * 3000 + b"\r\n\r\nbody",
    b"no headers at all, only a line\r\n",
]


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_malformed_messages_come_back_byte_identical(imap_account: ImapAccount) -> None:
    samples = list(MALFORMED)
    if CORPUS.is_dir():
        for name in ("mikel-mail/error_emails", "flanker/messages"):
            folder = CORPUS / name
            if folder.is_dir():
                files = sorted(p for p in folder.rglob("*") if p.is_file())[:8]
                # IMAP is a CRLF protocol (RFC 3501 §2.2): compare CRLF-normalised bytes.
                samples += [crlf(p.read_bytes()) for p in files]
    samples = [s for s in samples if s and b"\x00" not in s]
    imap_account.server.append(imap_account.user, "INBOX", samples)
    got = drain(imap_account.connector(), imap_account.folder(), None)
    assert [m.raw for m in got.messages] == samples


def test_self_signed_certificate_rejected_by_default(tls_account: ImapAccount) -> None:
    server = tls_account.server
    conn = tls_account.connector(security="tls", port=server.imaps_port, ssl_ca_file=None)
    with pytest.raises(imap_adapter.TlsError, match="self-signed") as err:
        conn.list_folders()
    assert "ssl_ca_file" in str(err.value)
    steps = {s.step: s for s in conn.check()}
    assert steps["reach"].ok and not steps["tls"].ok
    assert "self-signed" in steps["tls"].detail


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_private_ca_accepted_with_ssl_ca_file(tls_account: ImapAccount, security: str) -> None:
    server = tls_account.server
    port = server.imaps_port if security == "tls" else server.imap_port
    conn = tls_account.connector(security=security, port=port)
    server.append(tls_account.user, "INBOX", [msg(1)])
    assert "INBOX" in [f.id for f in conn.list_folders()]
    assert len(drain(conn, tls_account.folder(), None).messages) == 1
    assert all(step.ok for step in conn.check())


# ----------------------------------------------------------------------- check()
def test_check_reports_each_step(imap_account: ImapAccount) -> None:
    steps = imap_account.connector().check()
    assert [s.step for s in steps] == ["reach", "tls", "login", "capabilities", "folders"]
    assert all(s.ok for s in steps), steps
    assert "QRESYNC" in steps[3].detail
    assert "\\Sent -> Sent" in steps[4].detail and "\\Archive -> Archive" in steps[4].detail


# Dovecot's anvil delays each further failed login from one IP (2, 4, 8 s...): one failure
# per server instance keeps these tests fast.
def test_check_wrong_password(imap_account: ImapAccount) -> None:
    steps = imap_account.connector(password="wrong").check()
    assert [(s.step, s.ok) for s in steps][-1] == ("login", False)
    assert "password" in steps[-1].detail


def test_wrong_password_raises_auth_error(dovecot_condstore: DovecotServer) -> None:
    user = DovecotServer.new_user()
    conn = ImapConnector(spi.ConnectorConfig(user, dovecot_condstore.options(user, password="x")))
    started = time.monotonic()
    with pytest.raises(spi.AuthError, match="rejected the login"):
        conn.list_folders()
    assert time.monotonic() - started < 3  # not retried like a transient failure
    conn.close()


def test_check_connection_refused(imap_account: ImapAccount) -> None:
    steps = imap_account.connector(port=free_port()).check()
    assert [(s.step, s.ok) for s in steps] == [("reach", False)]
    assert "refused" in steps[0].detail


def test_check_fallback_server_names_missing_capabilities(dovecot_plain: DovecotServer) -> None:
    user = DovecotServer.new_user()
    conn = ImapConnector(spi.ConnectorConfig(user, dovecot_plain.options(user)))
    try:
        caps = {s.step: s for s in conn.check()}["capabilities"]
    finally:
        conn.close()
    assert caps.ok and "missing CONDSTORE, QRESYNC" in caps.detail


# ----------------------------------------------------------------------- config
def test_example_config_values_build_a_connector() -> None:
    values = {"host": "127.0.0.1", "port": 10143, "security": "none", "username": "alice",
              "password": "from-env", "owner": "alice@example.com"}  # fmt: skip
    conn = ImapConnector(spi.ConnectorConfig("alice", values))
    assert (conn.settings.port, conn.settings.security) == (10143, "none")
    assert conn.folders == ["INBOX", "\\Sent", "\\Archive"]
    assert ImapConnector.name == "imap"
    assert {o.name for o in ImapConnector.options if o.secret} == {"password", "oauth2_token"}


def test_plaintext_refused_for_remote_hosts() -> None:
    values = {"host": "imap.example.com", "security": "none", "username": "a", "password": "x"}
    with pytest.raises(spi.ConfigError, match="tls") as err:
        ImapConnector(spi.ConnectorConfig("alice", values))
    assert err.value.key == "mailboxes.alice.security"
    tls = ImapConnector(spi.ConnectorConfig("alice", {**values, "security": "tls"}))
    assert tls.settings.port == 993
