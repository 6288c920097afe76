"""The connector contract (`mailmanager.spi.Connector`), run against every harness."""

from __future__ import annotations

from collections import Counter

import pytest
from harness import Harness, drain, messages

from mailmanager import registry, spi

Role = spi.FolderRole


def make_raw(n: int, tag: str = "contract") -> bytes:
    """A message with the bytes an mbox or a careless copy would mangle."""
    return (
        f"From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: {tag} {n}\n"
        f"Message-ID: <{tag}-{n}@example.com>\nDate: Mon, 1 Jun 2026 10:00:00 +0000\n"
        "\nHello Bob,\nFrom here on, see below.\n>From a quoted line\n\n".encode()
        + b"caf\xe9 8-bit byte, CRLF next\r\n"
        + f"line {n}\n".encode()
    )


def folder_of(conn: spi.Connector, folder_id: str) -> spi.RemoteFolder:
    folders = {f.id: f for f in conn.list_folders()}
    assert folder_id in folders, f"{folder_id!r} not in {sorted(folders)}"
    return folders[folder_id]


def expect(h: Harness, raw: bytes) -> bytes:
    """The bytes the connector must hand back for `raw` (IMAP normalises line ends)."""
    convert = getattr(h, "expected_raw", None)
    return convert(raw) if convert is not None else raw


def seed(h: Harness, count: int, tag: str = "contract") -> tuple[str, dict[bytes, str]]:
    fid = h.add_folder("INBOX", Role.INBOX)
    return fid, {expect(h, raw := make_raw(i, tag)): h.append(fid, raw) for i in range(count)}


def test_class_is_found_by_its_entry_point(harness: Harness) -> None:
    conn = harness.connector()
    cls = registry.load(harness.entry_point)
    assert type(conn) is cls and cls.name == harness.entry_point
    assert isinstance(conn, spi.Connector)
    names = [o.name for o in cls.options]
    assert all(isinstance(o, spi.Option) for o in cls.options) and len(set(names)) == len(names)


def test_list_folders_reports_seeded_folders_with_roles(harness: Harness) -> None:
    seeded = {
        harness.add_folder(name, role): role
        for name, role in [
            ("INBOX", Role.INBOX),
            ("Sent", Role.SENT),
            ("Archive", Role.ARCHIVE),
            ("Clients", Role.OTHER),
        ]
    }
    listed = {f.id: f.role for f in harness.connector().list_folders()}
    assert {fid: listed.get(fid) for fid in seeded} == seeded


@pytest.mark.parametrize("limit", [1, 3, 1000])
def test_full_scan_returns_each_message_once(harness: Harness, limit: int) -> None:
    fid, handles = seed(harness, 7)
    conn = harness.connector()
    batches, _ = drain(conn, folder_of(conn, fid), None, limit)
    assert [b.reset for b in batches] == [True] + [False] * (len(batches) - 1)
    assert all(len(b.messages) <= limit for b in batches)
    assert [b.more for b in batches] == [True] * (len(batches) - 1) + [False]
    found = messages(batches)
    assert Counter(m.raw for m in found) == Counter(list(handles))  # byte-identical, once each
    assert len({m.provider_id for m in found}) == 7
    assert len(batches) >= 7 // limit


def test_empty_folder_scans_to_nothing(harness: Harness) -> None:
    fid = harness.add_folder("Archive", Role.ARCHIVE)
    conn = harness.connector()
    batches, cursor = drain(conn, folder_of(conn, fid), None)
    assert messages(batches) == [] and batches[0].reset
    again = conn.fetch_changes(folder_of(conn, fid), cursor, 10)
    assert (again.messages, again.more, again.reset) == ([], False, False)


def test_rerun_from_final_cursor_returns_nothing(harness: Harness) -> None:
    fid, _ = seed(harness, 4)
    conn = harness.connector()
    folder = folder_of(conn, fid)
    _, cursor = drain(conn, folder, None, 3)
    again = conn.fetch_changes(folder, cursor, 100)
    assert list(again.messages) == [] and list(again.removed) == []
    assert list(again.flag_changes) == [] and not again.more and not again.reset


def test_new_messages_after_cursor_come_back_alone(harness: Harness) -> None:
    fid, _ = seed(harness, 3)
    conn = harness.connector()
    folder = folder_of(conn, fid)
    _, cursor = drain(conn, folder, None)
    later = {
        expect(harness, raw := make_raw(i, "later")): harness.append(fid, raw) for i in range(2)
    }
    batches, cursor = drain(conn, folder, cursor, 1)
    assert Counter(m.raw for m in messages(batches)) == Counter(list(later))
    assert not any(b.reset for b in batches)
    assert messages(drain(conn, folder, cursor)[0]) == []


def test_cursor_resumes_in_a_fresh_instance(harness: Harness) -> None:
    fid, handles = seed(harness, 5)
    first = harness.connector()
    batch = first.fetch_changes(folder_of(first, fid), None, 2)
    first.close()
    assert batch.more and len(batch.messages) == 2
    second = harness.connector()
    rest, cursor = drain(second, folder_of(second, fid), batch.cursor, 2)
    got = [*batch.messages, *messages(rest)]
    assert Counter(m.raw for m in got) == Counter(list(handles))
    third = harness.connector()
    assert messages(drain(third, folder_of(third, fid), cursor)[0]) == []


def test_provider_ids_are_stable_across_full_scans(harness: Harness) -> None:
    fid, _ = seed(harness, 4)
    conn = harness.connector()
    once = {m.raw: m.provider_id for m in messages(drain(conn, folder_of(conn, fid), None, 3)[0])}
    fresh = harness.connector()
    twice = {m.raw: m.provider_id for m in messages(drain(fresh, folder_of(fresh, fid), None)[0])}
    assert once == twice


def test_deleted_message_is_reported_or_expires_cursor(harness: Harness) -> None:
    fid, handles = seed(harness, 3)
    conn = harness.connector()
    folder = folder_of(conn, fid)
    batches, cursor = drain(conn, folder, None)
    pids = {m.raw: m.provider_id for m in messages(batches)}
    gone = expect(harness, make_raw(1))
    harness.delete(fid, handles[gone])
    if harness.reports_removed:
        after, _ = drain(conn, folder, cursor)
        assert [r for b in after for r in b.removed] == [pids[gone]]
        assert messages(after) == []
    else:
        with pytest.raises(spi.CursorExpiredError):
            conn.fetch_changes(folder, cursor, 10)
    rescan = messages(drain(conn, folder_of(conn, fid), None)[0])
    assert sorted(m.raw for m in rescan) == sorted(r for r in handles if r != gone)


def test_reset_folder_expires_cursor(harness: Harness) -> None:
    fid, handles = seed(harness, 2)
    conn = harness.connector()
    _, cursor = drain(conn, folder_of(conn, fid), None)
    harness.reset_folder(fid)
    with pytest.raises(spi.CursorExpiredError):
        drain(conn, folder_of(conn, fid), cursor)
    batches, _ = drain(conn, folder_of(conn, fid), None)
    assert batches[0].reset and Counter(m.raw for m in messages(batches)) == Counter(list(handles))


def test_flags_come_back_and_changes_appear(harness: Harness) -> None:
    if not harness.stores_flags:
        pytest.skip(f"{type(harness).__name__} stores no flags")
    fid = harness.add_folder("INBOX", Role.INBOX)
    seen, plain = make_raw(1), make_raw(2)
    handles = {
        seen: harness.append(fid, seen, frozenset({"\\Seen", "\\Flagged"})),
        plain: harness.append(fid, plain),
    }
    handles = {expect(harness, raw): pid for raw, pid in handles.items()}
    seen, plain = expect(harness, seen), expect(harness, plain)
    conn = harness.connector()
    folder = folder_of(conn, fid)
    batches, cursor = drain(conn, folder, None)
    got = {m.raw: m for m in messages(batches)}
    assert got[seen].flags == {"\\Seen", "\\Flagged"} and got[plain].flags == frozenset()
    if not harness.reports_flags:
        return
    harness.set_flags(fid, handles[plain], frozenset({"\\Seen", "\\Answered"}))
    harness.set_flags(fid, handles[seen], frozenset())
    after, _ = drain(conn, folder, cursor)
    reported = {c.provider_id: c.flags for b in after for c in b.flag_changes}
    reported.update({m.provider_id: m.flags for m in messages(after)})
    assert reported == {
        got[plain].provider_id: {"\\Seen", "\\Answered"},
        got[seen].provider_id: set(),
    }


def test_close_twice_is_fine_and_a_closed_connector_reconnects(harness: Harness) -> None:
    fid, _ = seed(harness, 1)
    conn = harness.connector()
    folders = conn.list_folders()
    assert folders
    conn.close()
    conn.close()
    # The sync engine closes its connector before forking the fetch worker, which goes on
    # with the same object: it must connect again on its own.
    assert [f.id for f in conn.list_folders()] == [f.id for f in folders]
    batches, _ = drain(conn, folder_of(conn, fid), None)
    assert sum(len(b.messages) for b in batches) == 1
    conn.close()


def test_check_passes_on_a_healthy_mailbox(harness: Harness) -> None:
    seed(harness, 2)
    steps = harness.connector().check()
    assert steps and all(isinstance(s, spi.CheckStep) for s in steps)
    assert [s.step for s in steps if not s.ok] == []


def test_check_reports_a_broken_mailbox_without_raising(harness: Harness) -> None:
    steps = harness.broken_connector().check()
    assert steps and not all(s.ok for s in steps)
    assert all(s.detail for s in steps if not s.ok)
