"""The maildir connector on its own ground: mixed trees, mbox growth and rewrites, the corpus."""

from __future__ import annotations

import builtins
import errno
import logging
import mailbox
import os
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import build, drain, messages

from connectors.maildir.connector import MaildirConnector, folder_role
from mailmanager import spi
from mailmanager.testing.corpus import corpus_messages

Role = spi.FolderRole
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def msg(n: int | str, body: str = "hello") -> bytes:
    return f"Subject: m{n}\nMessage-ID: <{n}@example.com>\n\n{body}\n".encode()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def connect(root: Path, **values: object) -> MaildirConnector:
    conn = build("maildir", {"path": str(root), **values})
    assert isinstance(conn, MaildirConnector)
    return conn


def scan(conn: MaildirConnector, folder_id: str, limit: int = 1000) -> list[spi.RawMessage]:
    folder = {f.id: f for f in conn.list_folders()}[folder_id]
    return messages(drain(conn, folder, None, limit)[0])


def mbox_of(*raws: bytes) -> bytes:
    return b"".join(b"From x@example.com Thu Jan  1 00:00:00 2026\n" + r + b"\n" for r in raws)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree mixing Maildir++, notmuch nesting, plain folders and mbox files."""
    root = tmp_path / "mail"
    put(root / "cur" / "1:2,SR", msg(1))
    put(root / "new" / "2", msg(2))
    put(root / "tmp" / "3", msg(3))  # a delivery in progress: never read
    for junk in ("dovecot-uidlist", "dovecot.index", "maildirfolder", "subscriptions"):
        put(root / junk, b"3 V1 N1\n")
    put(root / ".Sent" / "cur" / "4:2,S", msg(4))
    (root / ".Sent" / "new").mkdir()
    nfd = unicodedata.normalize("NFD", ".Éléments envoyés")  # as macOS writes it
    put(root / nfd / "cur" / "5:2,", msg(5))
    put(root / "Gesendete Objekte" / "a.eml", msg(6))
    put(root / "notmuch" / "foo" / "06:2,", msg(7))  # notmuch: loose file beside cur/
    put(root / "notmuch" / "foo" / "cur" / "07:2,F", msg(8))
    put(root / "notmuch" / "foo" / "baz" / "cur" / "11:2,", msg(9))
    put(root / "plain" / "x.eml", msg(10))
    put(root / "plain" / "y", msg(11))
    put(root / "plain" / "email.07", msg(12))
    put(root / "plain" / "notes.md", b"# not mail\n")
    put(root / "plain" / "empty.eml", b"")
    put(root / "plain" / "archive.txt", mbox_of(msg(13), msg(14)))  # mbox by content
    put(root / "plain" / "bom.mbox.txt", b"\xef\xbb\xbf" + mbox_of(msg(15), msg(16)))
    put(root / "Spam.mbox", b"")
    put(root / "Archives" / "2025" / "z.msg", msg(17))
    put(root / ".notmuch" / "xapian" / "record.DB", b"\0\0")
    return root


def test_mixed_tree_folders_roles_and_messages(tree: Path) -> None:
    conn = connect(tree)
    roles = {f.id: f.role for f in conn.list_folders()}
    nfd = unicodedata.normalize("NFD", ".Éléments envoyés")
    assert roles == {
        ".": Role.INBOX,
        ".Sent": Role.SENT,
        nfd: Role.SENT,
        "Archives/2025": Role.OTHER,
        "Gesendete Objekte": Role.SENT,
        "Spam.mbox": Role.JUNK,
        "notmuch/foo": Role.OTHER,
        "notmuch/foo/baz": Role.OTHER,
        "plain": Role.OTHER,
        "plain/archive.txt": Role.ARCHIVE,
        "plain/bom.mbox.txt": Role.OTHER,
    }
    inbox = {m.provider_id: m.flags for m in scan(conn, ".")}
    assert inbox == {"1": {"\\Seen", "\\Answered"}, "2": frozenset()}
    assert {m.provider_id: m.flags for m in scan(conn, "notmuch/foo")} == {
        "06": frozenset(),
        "07": {"\\Flagged"},
    }
    assert sorted(m.raw for m in scan(conn, "plain")) == [msg(10), msg(11), msg(12)]
    assert [m.raw for m in scan(conn, "plain/archive.txt")] == [msg(13), msg(14)]
    assert [m.raw for m in scan(conn, "plain/bom.mbox.txt")] == [msg(15), msg(16)]
    assert scan(conn, "Spam.mbox") == []
    assert all(m.internal_date and m.internal_date.tzinfo for m in scan(conn, "plain"))


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("INBOX", Role.INBOX),
        ("sent items", Role.SENT),
        ("Messages envoyés", Role.SENT),
        (".Gesendet", Role.SENT),
        ("ENVIADOS", Role.SENT),
        ("Inviati", Role.SENT),
        ("Archiv", Role.ARCHIVE),
        ("Brouillons", Role.DRAFTS),
        ("Deleted Items", Role.TRASH),
        ("Corbeille", Role.TRASH),
        ("Courrier indésirable", Role.JUNK),
        (".INBOX.Sent", Role.SENT),
        ("Clients", Role.OTHER),
    ],
)
def test_folder_roles_from_names(name: str, role: spi.FolderRole) -> None:
    assert folder_role(name) == role


def test_folder_globs_include_and_exclude(tree: Path) -> None:
    conn = connect(tree, folders=["notmuch/*", "plain*", "!notmuch/foo/baz", "!*.txt"])
    assert [f.id for f in conn.list_folders()] == ["notmuch/foo", "plain"]
    only_out = connect(tree, folders=["!.*", "!plain/*"])
    assert "." not in {f.id for f in only_out.list_folders()}
    assert "plain/archive.txt" not in {f.id for f in only_out.list_folders()}


def test_missing_path_is_reported_with_a_fix(tmp_path: Path) -> None:
    conn = connect(tmp_path / "nowhere")  # the constructor never fails on it
    with pytest.raises(spi.ConnectorError, match=r"nowhere.*fix `path`"):
        conn.list_folders()
    steps = conn.check()
    assert [(s.step, s.ok) for s in steps] == [("path exists", False)]
    assert "nowhere" in steps[0].detail


def test_relative_path_resolves_against_base_dir(tmp_path: Path) -> None:
    put(tmp_path / "conf" / "mail" / "a.eml", msg(1))
    conn = build("maildir", {"path": "mail"}, base_dir=str(tmp_path / "conf"))
    assert [m.raw for m in scan(conn, ".")] == [msg(1)]  # type: ignore[arg-type]


def test_single_mbox_file_as_path(tmp_path: Path) -> None:
    path = put(tmp_path / "Sent", mbox_of(msg(1), msg(2), msg(3)))
    conn = connect(path)
    assert [(f.id, f.role) for f in conn.list_folders()] == [(".", Role.SENT)]
    found = scan(conn, ".", limit=2)
    assert [m.raw for m in found] == [msg(1), msg(2), msg(3)]
    data = path.read_bytes()
    assert all(data[int(m.provider_id) :].startswith(b"From ") for m in found)
    assert all(m.internal_date is None for m in found)


def test_mbox_growth_by_append_returns_only_new(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    path = tmp_path / "mail" / "INBOX"
    box = mailbox.mbox(path)
    for n in range(3):
        box.add(msg(n, f"body {n}\nFrom the start of a line"))
    box.flush()
    conn = connect(tmp_path / "mail")
    folder = conn.list_folders()[0]
    first, cursor = drain(conn, folder, None, 2)
    assert [m.raw.split(b"\n", 1)[0] for m in messages(first)] == [
        b"Subject: m0",
        b"Subject: m1",
        b"Subject: m2",
    ]
    assert b"\nFrom the start" in messages(first)[0].raw  # the writer's >From is undone
    for n in range(3, 5):
        box.add(msg(n))
    box.flush()
    box.close()
    later, cursor = drain(connect(tmp_path / "mail"), folder, cursor, 1)
    assert [m.raw for m in messages(later)] == [msg(3), msg(4)]
    offsets = [int(m.provider_id) for m in messages(later)]
    assert [path.read_bytes()[o : o + 5] for o in offsets] == [b"From "] * 2
    assert messages(drain(conn, folder, cursor)[0]) == []


def test_mbox_rewrite_expires_cursor(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    path = tmp_path / "mail" / "INBOX"
    box = mailbox.mbox(path)
    keys = [box.add(msg(n)) for n in range(3)]
    box.flush()
    conn = connect(tmp_path / "mail")
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    box.remove(keys[1])
    box.flush()  # mailbox rewrites the file through a temporary copy
    box.close()
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, cursor, 10)


def test_mbox_truncated_and_refilled_in_place_expires_cursor(tmp_path: Path) -> None:
    path = put(tmp_path / "mail" / "box.mbox", mbox_of(msg(1), msg(2)))
    conn = connect(tmp_path / "mail")
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    with path.open("r+b") as fh:  # same inode, larger, different history
        fh.truncate(0)
        fh.write(mbox_of(msg(7), msg(8), msg(9)))
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, cursor, 10)


def test_mbox_partial_last_message_is_never_lost(tmp_path: Path) -> None:
    path = put(
        tmp_path / "mail" / "box.mbox",
        mbox_of(msg(1)) + b"From x Thu Jan  1 00:00:00 2026\nSubject: m2\n",
    )
    conn = connect(tmp_path / "mail")
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    with path.open("ab") as fh:  # the writer finishes the message it was appending
        fh.write(b"Message-ID: <2@example.com>\n\nhello\n\n")
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, cursor, 10)
    assert [m.raw for m in messages(drain(conn, folder, None)[0])] == [msg(1), msg(2)]


def test_maildir_flag_rename_keeps_provider_id(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    new = put(root / "new" / "1700000000.M1P2.host", msg(1))
    put(root / "cur" / "1700000001.M2P2.host:2,", msg(2))
    (root / "tmp").mkdir()
    conn = connect(root)
    folder = conn.list_folders()[0]
    batches, cursor = drain(conn, folder, None)
    before = {m.raw: m.provider_id for m in messages(batches)}
    new.rename(root / "cur" / "1700000000.M1P2.host:2,RS")  # read and answered by a MUA
    after, cursor = drain(conn, folder, cursor)
    assert messages(after) == []
    changes = {c.provider_id: c.flags for b in after for c in b.flag_changes}
    assert changes[before[msg(1)]] == {"\\Seen", "\\Answered"}
    assert {m.raw: m.provider_id for m in scan(conn, ".")} == before
    assert drain(conn, folder, cursor)[0][0].flag_changes == []


def test_file_arriving_below_the_watermark_expires_cursor(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    put(root / "b.eml", msg("b"))
    conn = connect(root)
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    late = put(root / "a.eml", msg("a"))
    os.utime(late, ns=(0, 10**9))  # copied with `cp -p`: an old mtime
    with pytest.raises(spi.CursorExpiredError):
        conn.fetch_changes(folder, cursor, 10)
    assert sorted(m.raw for m in scan(conn, ".")) == [msg("a"), msg("b")]


def test_future_mtime_does_not_hold_the_watermark(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    future = put(root / "f.eml", msg("f"))
    os.utime(future, ns=(0, time.time_ns() + 86400 * 10**9))
    conn = connect(root)
    folder = conn.list_folders()[0]
    _, cursor = drain(conn, folder, None)
    put(root / "g.eml", msg("g"))
    assert [m.raw for m in messages(drain(conn, folder, cursor)[0])] == [msg("g")]


def test_damaged_cursor_expires(tmp_path: Path) -> None:
    put(tmp_path / "mail" / "a.eml", msg(1))
    put(tmp_path / "mail" / "box.mbox", mbox_of(msg(2)))
    conn = connect(tmp_path / "mail")
    folders = {f.id: f for f in conn.list_folders()}
    _, mbox_cursor = drain(conn, folders["box.mbox"], None)
    for cursor in ("not json", '{"v":1,"t":"f"}', mbox_cursor):
        with pytest.raises(spi.CursorExpiredError):
            conn.fetch_changes(folders["."], cursor, 10)


def failing_open(monkeypatch: pytest.MonkeyPatch, name: str, error: int) -> None:
    """Make the OS refuse to open one file, as a dying disk or a wrong chmod would."""
    real, real_os = builtins.open, os.open

    def fake(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith(name):
            raise OSError(error, os.strerror(error), str(file))
        return real(file, *args, **kwargs)

    def fake_os(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).endswith(name):
            raise OSError(error, os.strerror(error), str(file))
        return real_os(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake)
    monkeypatch.setattr(os, "open", fake_os)  # messages are opened with os.open (O_NOFOLLOW)


def test_unreadable_file_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        put(tmp_path / "mail" / f"{n}.eml", msg(n))
    conn = connect(tmp_path / "mail")
    folder = conn.list_folders()[0]
    failing_open(monkeypatch, "1.eml", errno.EACCES)
    with caplog.at_level(logging.WARNING, logger="connectors.maildir.connector"):
        batches, _ = drain(conn, folder, None, 10)
    assert [m.raw for m in messages(batches)] == [msg(0), msg(2)]
    assert [r.action for r in caplog.records] == ["maildir_skip_unreadable"]  # type: ignore[attr-defined]
    assert b"hello" not in caplog.text.encode()


def test_transient_read_error_never_advances_the_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        put(tmp_path / "mail" / f"{n}.eml", msg(n))
    conn = connect(tmp_path / "mail")
    folder = conn.list_folders()[0]
    with monkeypatch.context() as patch:
        failing_open(patch, "1.eml", errno.EIO)
        batch = conn.fetch_changes(folder, None, 10)
        assert [m.raw for m in batch.messages] == [msg(0)] and batch.more
        with pytest.raises(spi.TransientError):
            conn.fetch_changes(folder, batch.cursor, 10)
    rest, _ = drain(connect(tmp_path / "mail"), folder, batch.cursor)
    assert [m.raw for m in messages(rest)] == [msg(1), msg(2)]


def test_twenty_thousand_files_list_and_return_fast(tmp_path: Path) -> None:
    cur = tmp_path / "mail" / "cur"
    cur.mkdir(parents=True)
    for n in range(20_000):
        (cur / f"{1700000000 + n}.M{n}P1.host:2,S").write_bytes(msg(n))
    started = time.perf_counter()
    conn = connect(tmp_path / "mail")
    batches, cursor = drain(conn, conn.list_folders()[0], None, 500)
    assert sum(len(b.messages) for b in batches) == 20_000
    again = connect(tmp_path / "mail").fetch_changes(conn.list_folders()[0], cursor, 500)
    assert again.messages == [] and not again.more
    assert time.perf_counter() - started < 15  # about 0.5 s on a 2-core CI runner


def test_corpus_is_listed_completely(tmp_path: Path) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is absent ({CORPUS})")
    conn = connect(CORPUS)
    total, started = Counter[str](), time.perf_counter()
    for folder in conn.list_folders():
        found = messages(drain(conn, folder, None, 250)[0])
        assert len({m.provider_id for m in found}) == len(found), folder.id
        total[folder.id] = len(found)
    elapsed = time.perf_counter() - started
    assert sum(total.values()) == len(corpus_messages(CORPUS))
    assert total["notmuch/lkml"] == 210 and total["ponymail/maven-dev-2017-11-listsao.mbox"] == 320
    assert elapsed < 10  # about 0.2 s here
