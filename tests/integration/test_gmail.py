"""The Gmail connector against the loopback Gmail API: the real google-api-python-client
(built from its shipped discovery document) and google-auth, talking HTTP to
mailmanager/testing/fakes/gmail_server.py. Sync behaviour and faults; auth in
test_gmail_auth.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailmanager import spi
from mailmanager.testing.fakes.gmail_server import GmailFake
from tests.integration.gmail_support import Clock, DictStore, drain, folder, gmail, msg


@pytest.fixture
def fake() -> Iterator[GmailFake]:
    server = GmailFake()
    yield server
    server.close()


def raws(batches: list[spi.ChangeBatch]) -> list[bytes]:
    return [m.raw for b in batches for m in b.messages]


def test_full_scan_pages_lists_and_batches_gets(fake: GmailFake) -> None:
    sent = {
        fake.append(msg(i), ["INBOX", "UNREAD"], thread_id=f"t{i // 3}"): msg(i) for i in range(120)
    }
    starred = fake.append(msg(500), ["SENT", "STARRED"], thread_id="t0")
    conn = gmail(fake, batch_size=40)
    assert [(f.id, f.name, f.role) for f in conn.list_folders()] == [
        ("ALL", "All Mail", spi.FolderRole.ALL)
    ]
    batches, _ = drain(conn, folder(conn), None, limit=50)
    assert [len(b.messages) for b in batches] == [50, 50, 21]
    assert [b.reset for b in batches] == [True, False, False]
    assert [b.more for b in batches] == [True, True, False]
    got = {m.provider_id: m for b in batches for m in b.messages}
    assert {pid: m.raw for pid, m in got.items() if pid in sent} == sent  # byte-identical
    first = got[next(iter(sent))]
    assert first.thread_hint == "t0" and first.labels == {"INBOX", "UNREAD"} and not first.flags
    assert got[starred].flags == {"\\Seen", "\\Flagged"} and got[starred].labels == {
        "SENT",
        "STARRED",
    }
    assert first.internal_date is not None and first.internal_date.year == 2026
    # One list call per page; gets go in batches of at most 40 (50, 50, 21 -> 2 + 2 + 1).
    assert fake.calls["messages"] == 3 and fake.calls["batch.gmail.v1"] == 5
    assert fake.calls["messages.get"] == 121


def test_excluded_labels_never_come_back(fake: GmailFake) -> None:
    news = fake.add_label("Newsletters")
    keep = fake.append(msg(1), ["INBOX"])
    for labels in (["SPAM"], ["TRASH"], ["DRAFT"], ["INBOX", "CATEGORY_PROMOTIONS"],
                   ["INBOX", "CATEGORY_SOCIAL"], ["INBOX", news]):  # fmt: skip
        fake.append(msg(len(fake.messages) + 10), labels)
    conn = gmail(fake, exclude_labels=["SPAM", "TRASH", "DRAFT", "CATEGORY_PROMOTIONS",
                                       "CATEGORY_SOCIAL", "Newsletters"])  # fmt: skip
    batches, _ = drain(conn, folder(conn), None)
    assert [m.provider_id for b in batches for m in b.messages] == [keep]
    # Categories are left out by the search query, SPAM/TRASH by includeSpamTrash=false:
    # only the draft and the user-labelled message were fetched to be filtered.
    assert fake.calls["messages.get"] == 3


def test_history_adds_removes_and_flags(fake: GmailFake) -> None:
    a, b, c, d = (fake.append(msg(i), ["INBOX", "UNREAD"]) for i in range(4))
    conn = gmail(fake)
    inbox = folder(conn)
    _, cursor = drain(conn, inbox, None)
    new = fake.append(msg(10), ["INBOX", "UNREAD"])
    fake.delete(a)
    fake.modify(b, add=["STARRED"], remove=["UNREAD"])
    fake.modify(c, remove=["INBOX"])  # archived: still in All Mail, nothing to report
    fake.modify(d, add=["TRASH"])
    gone_early = fake.append(msg(11))
    fake.delete(gone_early)  # added and deleted between two syncs: never fetched
    batches, cursor = drain(conn, inbox, cursor)
    assert raws(batches) == [msg(10)] and not any(x.reset for x in batches)
    assert sorted(r for x in batches for r in x.removed) == sorted([a, d, gone_early])
    flags = {f.provider_id: f.flags for x in batches for f in x.flag_changes}
    assert flags == {b: {"\\Seen", "\\Flagged"}}
    fake.modify(d, remove=["TRASH"])  # restored: delivered again
    again, cursor = drain(conn, inbox, cursor)
    assert [m.provider_id for m in again[0].messages] == [d]
    assert drain(conn, inbox, cursor)[0][0].messages == [] and new


def test_label_folders_with_roles_and_moves(fake: GmailFake) -> None:
    acme = fake.add_label("Clients/ACME")
    fake.add_label("Perso")
    a = fake.append(msg(1), ["INBOX", acme])
    s = fake.append(msg(2), ["SENT"])
    conn = gmail(fake, folders=["INBOX", "sent", "ARCHIVE", "Clients/*", "NoSuchLabel"])
    listed = {f.id: (f.name, f.role) for f in conn.list_folders()}
    assert listed == {
        "INBOX": ("INBOX", spi.FolderRole.INBOX),
        "SENT": ("SENT", spi.FolderRole.SENT),
        "ARCHIVE": ("Archive", spi.FolderRole.ARCHIVE),
        acme: ("Clients/ACME", spi.FolderRole.OTHER),
    }
    cursors, held = {}, {}
    for fid in listed:
        batches, cursors[fid] = drain(conn, folder(conn, fid), None)
        held[fid] = [m.provider_id for m in batches[0].messages]
    assert held == {"INBOX": [a], "SENT": [s], "ARCHIVE": [], acme: [a]}
    fake.modify(a, remove=["INBOX"])  # archiving moves it from INBOX to ARCHIVE
    inbox, _ = drain(conn, folder(conn, "INBOX"), cursors["INBOX"])
    archive, _ = drain(conn, folder(conn, "ARCHIVE"), cursors["ARCHIVE"])
    client, _ = drain(conn, folder(conn, acme), cursors[acme])
    assert [list(x.removed) for x in inbox] == [[a]]
    assert [m.provider_id for m in archive[0].messages] == [a]
    assert client[0].messages == [] and client[0].removed == []


def test_history_limit_cut_resumes_in_a_fresh_instance(fake: GmailFake) -> None:
    fake.append(msg(0))
    conn = gmail(fake)
    _, cursor = drain(conn, folder(conn), None)
    news = [fake.append(msg(i)) for i in range(1, 6)]
    first = conn.fetch_changes(folder(conn), cursor, 2)
    assert len(first.messages) == 2 and first.more
    fresh = gmail(fake)
    rest, cursor = drain(fresh, folder(fresh), first.cursor, 2)
    assert [len(b.messages) for b in rest] == [2, 1]
    assert [
        m.provider_id for m in [*first.messages, *[m for b in rest for m in b.messages]]
    ] == news
    assert fresh.fetch_changes(folder(fresh), cursor, 2).messages == []


def test_expired_history_means_cursor_expired_then_rescan(fake: GmailFake) -> None:
    ids = [fake.append(msg(i)) for i in range(3)]
    conn = gmail(fake)
    _, cursor = drain(conn, folder(conn), None)
    fake.expire_history()
    with pytest.raises(spi.CursorExpiredError, match="expired"):
        conn.fetch_changes(folder(conn), cursor, 10)
    batches, _ = drain(conn, folder(conn), None)
    assert sorted(m.provider_id for m in batches[0].messages) == sorted(ids)
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder(conn), "not a cursor", 10)


def test_throttling_honours_retry_after(fake: GmailFake) -> None:
    fake.append(msg(1))
    conn = gmail(fake)
    fake.fail("/messages", 429, retry_after="1")
    fake.fail("/profile", 403, reason="userRateLimitExceeded", retry_after="0")
    with Clock() as clock:
        batches, cursor = drain(conn, folder(conn), None)
    assert raws(batches) == [msg(1)] and clock.elapsed >= 1.0
    fake.fail("/history", 429, retry_after="3600")  # longer than max_retry_wait: no sleeping
    with Clock() as clock, pytest.raises(spi.TransientError) as info:
        conn.fetch_changes(folder(conn), cursor, 10)
    assert info.value.retry_after == 3600 and clock.elapsed < 1.0


def test_server_errors_are_retried_then_reported(fake: GmailFake) -> None:
    fake.append(msg(1))
    conn = gmail(fake, max_retries=1)
    fake.fail("/batch/", 503, retry_after="0")  # the whole batch once
    batches, cursor = drain(conn, folder(conn), None)
    assert raws(batches) == [msg(1)]
    fake.fail("/history", 500, times=5, retry_after="0")
    with pytest.raises(spi.TransientError, match="HTTP 500"):
        conn.fetch_changes(folder(conn), cursor, 10)
    assert fake.calls["history"] == 2  # one try plus max_retries = 1


def test_failed_batch_parts_are_requeued(fake: GmailFake) -> None:
    ids = [fake.append(msg(i)) for i in range(6)]
    conn = gmail(fake)
    fake.fail(f"/messages/{ids[2]}", 429, retry_after="0")  # one part of the batch only
    fake.fail(f"/messages/{ids[4]}", 503, retry_after="0")
    batches, _ = drain(conn, folder(conn), None)
    assert sorted(m.provider_id for m in batches[0].messages) == sorted(ids)
    assert fake.calls["batch.gmail.v1"] == 2  # the two failed parts went in a second batch
    fake.fail(f"/messages/{ids[0]}", 503, times=10, retry_after="0")
    with pytest.raises(spi.TransientError, match="still failing"):
        drain(gmail(fake, max_retries=1), folder(conn), None)


def test_token_expiry_mid_sync_refreshes_and_continues(fake: GmailFake) -> None:
    ids = [fake.append(msg(i)) for i in range(6)]
    conn = gmail(fake)
    first = conn.fetch_changes(folder(conn), None, 3)
    assert fake.calls["token"] == 1
    fake.expire_tokens()  # every access token handed out is now refused (401)
    fake.fail(f"/messages/{ids[0]}", 401)  # and one batch part answers 401 on its own
    rest, _ = drain(conn, folder(conn), first.cursor, 3)
    got = [m.provider_id for m in [*first.messages, *(m for b in rest for m in b.messages)]]
    assert sorted(got) == sorted(ids)
    assert fake.calls["token"] == 3  # refreshed on the 401 list, then for the 401 part


def test_revoked_refresh_token_says_to_run_auth(fake: GmailFake) -> None:
    conn = gmail(fake)
    fake.refresh.clear()
    with pytest.raises(spi.AuthError, match=r"invalid_grant.*mailmanager auth alice-gmail"):
        conn.list_folders()


def test_refresh_token_rotation_is_stored(fake: GmailFake) -> None:
    from tests.integration.gmail_support import oauth

    fake.append(msg(1))
    fake.rotate_refresh = True
    client_json, refresh = oauth(fake)
    store = DictStore(refresh_token=refresh)
    conn = gmail(fake, store, client_secret=client_json, refresh_token=None)
    assert conn.list_folders()
    assert store.values["refresh_token"] != refresh and refresh not in fake.refresh
    later = gmail(fake, store, client_secret=client_json, refresh_token=None)
    assert raws(drain(later, folder(later), None)[0]) == [msg(1)]


def test_malformed_items(fake: GmailFake) -> None:
    bad, missing, fine, vanished = (fake.append(msg(i)) for i in range(4))
    fake.corrupt_raw(bad)
    fake.omit_from_batch(missing)
    conn = gmail(fake)
    batches, cursor = drain(conn, folder(conn), None)
    got = {m.provider_id: m.raw for m in batches[0].messages}
    assert got[bad] == b"#not base64url#"  # handed over as is: the core quarantines it
    assert got[missing] == msg(1) and got[fine] == msg(2)  # re-fetched one by one
    assert got[vanished] == msg(3)
    late = fake.append(msg(9))
    fake.vanish(late)  # gone before the get, without a history record: a 404
    after, _ = drain(conn, folder(conn), cursor)
    assert after[0].messages == [] and list(after[0].removed) == [late]
