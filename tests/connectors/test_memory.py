"""The memory connector's own helpers: seeding through the global store, failures, resets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from harness import build, drain, messages

from connectors.memory import MemoryAccount, MemoryConnector
from mailmanager import spi


@pytest.fixture
def account() -> Iterator[MemoryAccount]:
    name = f"memtest-{uuid.uuid4().hex}"
    acct = MemoryConnector.account(name)
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    yield acct
    MemoryConnector.drop_account(name)


def test_connector_built_from_config_reads_the_seeded_account(account: MemoryAccount) -> None:
    pid = account.append("INBOX", b"Subject: a\r\n\r\nx\r\n", thread_hint="t1")
    conn = build("memory", {"store": account.name})
    [folder] = conn.list_folders()
    [got] = messages(drain(conn, folder, None)[0])
    assert (got.provider_id, got.raw, got.thread_hint) == (pid, b"Subject: a\r\n\r\nx\r\n", "t1")
    assert MemoryConnector.account(account.name) is account


def test_default_store_is_named_default() -> None:
    conn = build("memory", {})
    assert isinstance(conn, MemoryConnector) and conn.store == "default"


def test_fail_next_raises_once_then_recovers(account: MemoryAccount) -> None:
    conn = build("memory", {"store": account.name})
    folder = conn.list_folders()[0]
    account.fail_next(spi.TransientError("throttled", retry_after=30))
    assert not all(s.ok for s in conn.check())  # check reports it and does not consume it
    with pytest.raises(spi.TransientError) as caught:
        conn.fetch_changes(folder, None, 10)
    assert caught.value.retry_after == 30
    assert conn.fetch_changes(folder, None, 10).reset
    assert all(s.ok for s in conn.check())


def test_reset_renumbers_messages_under_a_new_generation(account: MemoryAccount) -> None:
    before = [account.append("INBOX", f"Subject: {n}\r\n\r\n".encode()) for n in range(3)]
    conn = build("memory", {"store": account.name})
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    account.reset_folder("INBOX")
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, cursor, 10)
    after = [m.provider_id for m in messages(drain(conn, folder, None)[0])]
    assert len(after) == 3 and not set(after) & set(before)


def test_removed_then_recreated_folder_rejects_old_cursor(account: MemoryAccount) -> None:
    account.append("INBOX", b"Subject: x\r\n\r\n")
    conn = build("memory", {"store": account.name})
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    account.clear()
    with pytest.raises(spi.ConnectorError, match="no folder"):
        conn.fetch_changes(folder, cursor, 10)
    account.add_folder("INBOX", spi.FolderRole.INBOX)
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, cursor, 10)


def test_changes_of_a_message_added_after_the_cursor_fold_into_it(account: MemoryAccount) -> None:
    conn = build("memory", {"store": account.name})
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    pid = account.append("INBOX", b"Subject: y\r\n\r\n")
    account.set_flags("INBOX", pid, {"\\Seen"})
    gone = account.append("INBOX", b"Subject: z\r\n\r\n")
    account.delete("INBOX", gone)
    [batch] = drain(conn, folder, cursor)[0]
    assert [(m.provider_id, m.flags) for m in batch.messages] == [(pid, frozenset({"\\Seen"}))]
    assert list(batch.flag_changes) == [] and list(batch.removed) == [gone]
