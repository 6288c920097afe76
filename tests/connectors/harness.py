"""Harnesses that let the connector contract suite (test_contract.py) drive every connector.

How a new connector (IMAP, Gmail, Graph, EWS) joins the suite:
1. Write a class with the members of `Harness`: `entry_point`, the three capability flags,
   `connector()`, `broken_connector()`, `add_folder()`, `append()`, `delete()`, `set_flags()`,
   `reset_folder()` and `close()`. Drive a real peer: Dovecot on loopback for IMAP
   (mailmanager/testing/dovecot.py), a loopback HTTP fake for Gmail, Graph and EWS
   (mailmanager/testing/fakes/). No mocks of our code.
2. `add_folder(name, role)` returns the folder id `list_folders()` will report; `append`
   returns a handle that `delete` and `set_flags` accept (a UID, a file name, an index).
3. Set the flags truthfully: `reports_removed` (a deletion comes back in `removed` rather
   than as `CursorExpiredError`), `stores_flags`, `reports_flags` (incremental flag changes).
4. Add a factory to `FACTORIES`; make it `pytest.skip` when its peer is unavailable.
Every case of test_contract.py then runs against it; provider-only cases go in their own file.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from connectors.memory import MemoryConnector
from mailmanager import registry, spi

_counter = itertools.count(1)
_LETTERS = {"\\Seen": "S", "\\Answered": "R", "\\Flagged": "F", "\\Deleted": "T", "\\Draft": "D"}


class Harness(Protocol):
    entry_point: str
    reports_removed: bool
    stores_flags: bool
    reports_flags: bool

    def connector(self) -> spi.Connector: ...
    def broken_connector(self) -> spi.Connector: ...
    def add_folder(self, name: str, role: spi.FolderRole) -> str: ...
    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str: ...
    def delete(self, folder_id: str, handle: str) -> None: ...
    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None: ...
    def reset_folder(self, folder_id: str) -> None: ...
    def close(self) -> None: ...


def build(entry_point: str, values: dict[str, object], base_dir: str = ".") -> spi.Connector:
    """Build a connector the way the core does: by entry-point name, from a config."""
    cls = registry.load(entry_point)
    defaults = {o.name: o.default for o in cls.options}
    return cls(spi.ConnectorConfig("contract", {**defaults, **values}, base_dir))  # type: ignore[call-arg]


def drain(
    conn: spi.Connector, folder: spi.RemoteFolder, cursor: str | None, limit: int = 1000
) -> tuple[list[spi.ChangeBatch], str]:
    """Call `fetch_changes` until `more` is false; return the batches and the last cursor."""
    batches: list[spi.ChangeBatch] = []
    for _ in range(10_000):
        batch = conn.fetch_changes(folder, cursor, limit)
        batches.append(batch)
        cursor = batch.cursor
        if not batch.more:
            return batches, cursor
    raise AssertionError("fetch_changes never answered more=False")


def messages(batches: list[spi.ChangeBatch]) -> list[spi.RawMessage]:
    return [m for b in batches for m in b.messages]


class MemoryHarness:
    entry_point = "memory"
    reports_removed = True
    stores_flags = True
    reports_flags = True

    def __init__(self, tmp_path: Path) -> None:
        self.store = f"contract-{uuid.uuid4().hex}"
        self.account = MemoryConnector.account(self.store)

    def connector(self) -> spi.Connector:
        return build("memory", {"store": self.store})

    def broken_connector(self) -> spi.Connector:
        return build("memory", {"store": f"{self.store}-never-seeded"})

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        self.account.add_folder(name, role)
        return name

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        return self.account.append(folder_id, raw, flags)

    def delete(self, folder_id: str, handle: str) -> None:
        self.account.delete(folder_id, handle)

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        self.account.set_flags(folder_id, handle, flags)

    def reset_folder(self, folder_id: str) -> None:
        self.account.reset_folder(folder_id)

    def close(self) -> None:
        MemoryConnector.drop_account(self.store)
        MemoryConnector.drop_account(f"{self.store}-never-seeded")


class _DiskHarness:
    """Common ground of the maildir connector's three layouts under tmp_path/mail."""

    entry_point = "maildir"
    reports_removed = False  # a removal below the watermark expires the cursor
    stores_flags = False
    reports_flags = False

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "mail"
        self.root.mkdir()

    def connector(self) -> spi.Connector:
        return build("maildir", {"path": "mail"}, base_dir=str(self.tmp))

    def broken_connector(self) -> spi.Connector:
        return build("maildir", {"path": str(self.tmp / "no-such-dir")})

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        raise NotImplementedError(f"{type(self).__name__} stores no flags")

    def close(self) -> None:
        pass

    def _path(self, folder_id: str) -> Path:
        return self.root if folder_id == "." else self.root / folder_id

    def _rebuild(self, folder: Path) -> None:
        """Replace a directory by a copy (new inode, new file mtimes), as a restore would."""
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        folder.mkdir()
        for child in old.iterdir():
            if child.name in ("cur", "new", "tmp") or child.is_file():
                if child.is_dir():
                    (folder / child.name).mkdir()
                    for f in child.iterdir():
                        shutil.copyfile(f, folder / child.name / f.name)
                else:
                    shutil.copyfile(child, folder / child.name)
            else:
                child.rename(folder / child.name)
        shutil.rmtree(old)


class MaildirHarness(_DiskHarness):
    """Maildir++: the root is the INBOX, other folders are `.Name` beside it."""

    stores_flags = True
    reports_flags = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        for sub in ("cur", "new", "tmp"):
            (self.root / sub).mkdir()

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        if name.upper() == "INBOX":
            return "."
        for sub in ("cur", "new", "tmp"):
            (self.root / f".{name}" / sub).mkdir(parents=True)
        return f".{name}"

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        # Deliver as a MDA does: write into tmp/, then rename into new/ (or cur/ with flags).
        unique = f"{time.time_ns()}.M{next(_counter)}P{os.getpid()}.harness"
        tmp = self._path(folder_id) / "tmp" / unique
        tmp.write_bytes(raw)
        tmp.rename(self._target(folder_id, unique, flags))
        return unique

    def _target(self, folder_id: str, unique: str, flags: frozenset[str]) -> Path:
        if not flags:
            return self._path(folder_id) / "new" / unique
        info = "".join(sorted(_LETTERS[f] for f in flags))
        return self._path(folder_id) / "cur" / f"{unique}:2,{info}"

    def _find(self, folder_id: str, unique: str) -> Path:
        for sub in ("cur", "new"):
            for f in (self._path(folder_id) / sub).iterdir():
                if f.name == unique or f.name.startswith(unique + ":2,"):
                    return f
        raise KeyError(unique)

    def delete(self, folder_id: str, handle: str) -> None:
        self._find(folder_id, handle).unlink()

    def set_flags(self, folder_id: str, handle: str, flags: frozenset[str]) -> None:
        info = "".join(sorted(_LETTERS[f] for f in flags))
        target = self._path(folder_id) / "cur" / f"{handle}:2,{info}"
        self._find(folder_id, handle).rename(target)

    def reset_folder(self, folder_id: str) -> None:
        self._rebuild(self._path(folder_id))


class PlainHarness(_DiskHarness):
    """Directories of `.eml` files, one message per file."""

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        (self.root / name).mkdir()
        return name

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        name = f"{next(_counter):08d}.eml"
        (self._path(folder_id) / name).write_bytes(raw)
        return name

    def delete(self, folder_id: str, handle: str) -> None:
        (self._path(folder_id) / handle).unlink()

    def reset_folder(self, folder_id: str) -> None:
        self._rebuild(self._path(folder_id))


def mbox_escape(raw: bytes) -> bytes:
    """mboxrd quoting: one more `>` before every `>*From ` line."""
    lines = raw.split(b"\n")
    return b"\n".join(b">" + ln if ln.lstrip(b">").startswith(b"From ") else ln for ln in lines)


class MboxHarness(_DiskHarness):
    """One mbox file per folder (`Name.mbox`), appended to as an MDA would."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.messages: dict[str, dict[str, bytes]] = {}

    def add_folder(self, name: str, role: spi.FolderRole) -> str:
        (self.root / f"{name}.mbox").write_bytes(b"")
        self.messages[f"{name}.mbox"] = {}
        return f"{name}.mbox"

    def append(self, folder_id: str, raw: bytes, flags: frozenset[str] = frozenset()) -> str:
        handle = str(next(_counter))
        self.messages[folder_id][handle] = raw
        with (self.root / folder_id).open("ab") as fh:
            fh.write(self._entry(raw))
        return handle

    @staticmethod
    def _entry(raw: bytes) -> bytes:
        return b"From harness@example.com Thu Jan  1 00:00:00 2026\n" + mbox_escape(raw) + b"\n"

    def _rewrite(self, folder_id: str) -> None:
        tmp = self.root / f"{folder_id}.tmp"
        tmp.write_bytes(b"".join(self._entry(r) for r in self.messages[folder_id].values()))
        tmp.replace(self.root / folder_id)

    def delete(self, folder_id: str, handle: str) -> None:
        del self.messages[folder_id][handle]
        self._rewrite(folder_id)

    def reset_folder(self, folder_id: str) -> None:
        self._rewrite(folder_id)


from exchange_harness import ExchangeHarness  # noqa: E402  (EWS against a loopback fake)
from gmail_harness import GmailHarness  # noqa: E402  (Gmail against a loopback API fake)
from graph_harness import GraphHarness  # noqa: E402  (Microsoft Graph against a loopback fake)
from imap_harness import ImapHarness  # noqa: E402  (IMAP against a private Dovecot)

FACTORIES: dict[str, Callable[[Path], Harness]] = {
    "memory": MemoryHarness,
    "maildir": MaildirHarness,
    "maildir-plain": PlainHarness,
    "maildir-mbox": MboxHarness,
    "imap": ImapHarness,
    "gmail": GmailHarness,
    "graph": GraphHarness,
    "exchange": ExchangeHarness,
}
