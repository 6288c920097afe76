"""The maildir connector never reads outside its configured root (issue #16): a symlink in
`cur/` or `new/` to a file outside is quarantined with a reason saying so, a directory
symlink out of the root is no folder, symlinks inside the root are followed, and a file over
the size limit is read up to its headers only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.maildir.connector import MaildirConnector
from connectors.maildir.safety import OutsideRoot, Root
from mailmanager import spi


def msg(n: int | str, body: str = "hello") -> bytes:
    return f"Subject: m{n}\nMessage-ID: <{n}@example.com>\n\n{body}\n".encode()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def scan(conn: MaildirConnector, folder_id: str = ".") -> list[spi.RawMessage]:
    folder = {f.id: f for f in conn.list_folders()}[folder_id]
    found: list[spi.RawMessage] = []
    cursor: str | None = None
    while True:
        batch = conn.fetch_changes(folder, cursor, 100)
        found += batch.messages
        cursor = batch.cursor
        if not batch.more:
            return found


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A private file outside the Maildir (as a 0600 file of the mailmanager user)."""
    path = put(tmp_path / "outside" / "secret.txt", b"Subject: secret\n\nthe password\n")
    path.chmod(0o600)
    return path


def test_a_file_symlink_out_of_the_root_is_quarantined_not_read(
    tmp_path: Path, secret: Path
) -> None:
    root = tmp_path / "mail"
    put(root / "cur" / "1:2,S", msg(1))
    (root / "new").mkdir()
    os.symlink(secret, root / "cur" / "2:2,S")
    os.symlink("/etc/passwd", root / "new" / "3")
    conn = MaildirConnector(spi.ConnectorConfig("m", {"path": str(root)}))
    found = {m.provider_id: m for m in scan(conn)}
    assert found["1"].problem is None and b"Subject: m1" in found["1"].raw
    for pid, target in (("2", str(secret)), ("3", "/etc/passwd")):
        item = found[pid]
        assert item.raw == b"" and item.problem is not None
        assert "outside the maildir root" in item.problem and target in item.problem


def test_symlinks_inside_the_root_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    real = put(root / "Archive" / "cur" / "9:2,S", msg(9))
    put(root / "cur" / "1:2,S", msg(1))
    os.symlink(real, root / "cur" / "2:2,S")
    os.symlink(root / "Archive", root / "Alias")
    conn = MaildirConnector(spi.ConnectorConfig("m", {"path": str(root)}))
    ids = {f.id for f in conn.list_folders()}  # the same directory once, under one name
    assert "." in ids and len(ids & {"Archive", "Alias"}) == 1
    found = {m.provider_id: m for m in scan(conn)}
    assert found["2"].raw == msg(9) and found["2"].problem is None


def test_a_directory_symlink_out_of_the_root_is_not_a_folder(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    put(outside / "cur" / "1:2,S", msg("x"))
    put(tmp_path / "box.mbox", b"From a@b Thu Jan  1 00:00:00 2026\n" + msg("y"))
    root = tmp_path / "mail"
    put(root / "cur" / "1:2,S", msg(1))
    os.symlink(outside, root / "Leak")
    os.symlink(outside, root / ".Leak2")
    os.symlink(tmp_path / "box.mbox", root / "old.mbox")
    conn = MaildirConnector(spi.ConnectorConfig("m", {"path": str(root)}))
    ids = {f.id for f in conn.list_folders()}
    assert ids == {"."}, ids
    with pytest.raises(spi.ConnectorError, match="outside"):
        conn.fetch_changes(spi.RemoteFolder("Leak", "Leak"), None, 10)


def test_cur_itself_a_symlink_out_of_the_root_is_not_listed(tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "mail"
    root.mkdir()
    os.symlink(secret.parent, root / "cur")
    conn = MaildirConnector(spi.ConnectorConfig("m", {"path": str(root)}))
    assert list(conn.list_folders()) == []  # not a Maildir: its cur/ is elsewhere
    batch = conn.fetch_changes(spi.RemoteFolder(".", "mail"), None, 10)  # asked all the same
    assert batch.messages == []


def test_the_check_is_made_on_the_file_opened(tmp_path: Path, secret: Path) -> None:
    """An intermediate directory swapped for a symlink after the listing (TOCTOU): the
    kernel's own path of the opened file is checked."""
    root = tmp_path / "mail"
    put(root / "cur" / "x", b"Subject: x\n\nx\n")
    guard = Root(str(root))
    os.rename(root / "cur", root / "cur.old")
    os.symlink(secret.parent, root / "cur")
    os.rename(secret, secret.parent / "x")
    with pytest.raises(OutsideRoot):
        guard.read(str(root / "cur" / "x"))


def test_a_file_over_the_limit_is_read_up_to_its_headers(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    big = b"Subject: big\nMessage-ID: <big@example.com>\n\n" + b"x" * 300_000
    put(root / "cur" / "1:2,S", big)
    put(root / "cur" / "2:2,S", msg(2))
    config = spi.ConnectorConfig("m", {"path": str(root)}, max_message_size=100_000)
    found = {m.provider_id: m for m in scan(MaildirConnector(config))}
    assert found["1"].truncated and found["1"].size == len(big)
    assert found["1"].raw == b"Subject: big\nMessage-ID: <big@example.com>\n\n"
    assert not found["2"].truncated and found["2"].raw == msg(2)
