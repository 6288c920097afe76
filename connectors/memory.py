"""An in-memory mailbox for tests and dry runs, shipped with the code.

Accounts live in a process-global registry, by name. A test seeds one through
`MemoryConnector.account(name)`; a connector built from a config whose `store` option names
that account then reads it, exactly as the core would read a real provider:

    acct = MemoryConnector.account("demo")
    acct.add_folder("INBOX", spi.FolderRole.INBOX)
    uid = acct.append("INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n", flags={"\\\\Seen"})

Every change to a folder (append, delete, flag change) takes the folder's next change
sequence number. A cursor is (folder generation, last sequence seen), so deletions and flag
changes come back incrementally. `reset_folder` renumbers the folder's messages under a new
generation, as an IMAP server does when UIDVALIDITY changes: stored cursors then expire.
`fail_next` makes the next `list_folders`/`fetch_changes` raise a chosen error.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import ClassVar

from mailmanager import spi

_accounts: dict[str, MemoryAccount] = {}
_accounts_lock = threading.Lock()
# Generations are unique across folders and accounts, so a folder removed and added again
# never accepts a cursor of its former self.
_generations = itertools.count(1)


@dataclass(frozen=True)
class _Stored:
    message: spi.RawMessage
    seq: int


@dataclass
class _Folder:
    role: spi.FolderRole
    generation: int = field(default_factory=lambda: next(_generations))
    messages: dict[str, _Stored] = field(default_factory=dict)
    # (seq, kind, provider id); kind is "add", "del" or "flags". Index i holds seq i + 1.
    log: list[tuple[int, str, str]] = field(default_factory=list)
    next_uid: int = 1

    def record(self, kind: str, pid: str) -> int:
        seq = len(self.log) + 1
        self.log.append((seq, kind, pid))
        return seq


class MemoryAccount:
    """One in-memory mail account: folders of messages, changed by the methods below.

    Methods raise `KeyError` for an unknown folder or provider id. Thread-safe.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._folders: dict[str, _Folder] = {}
        self._failures: list[Exception] = []

    def add_folder(self, folder_id: str, role: spi.FolderRole = spi.FolderRole.OTHER) -> None:
        """Create a folder (or change the role of an existing one)."""
        with self._lock:
            if folder_id in self._folders:
                self._folders[folder_id].role = role
            else:
                self._folders[folder_id] = _Folder(role)

    def remove_folder(self, folder_id: str) -> None:
        with self._lock:
            del self._folders[folder_id]

    def append(
        self,
        folder_id: str,
        raw: bytes,
        flags: Iterable[str] = (),
        thread_hint: str | None = None,
        internal_date: datetime | None = None,
    ) -> str:
        """Store a message and return its provider id (a growing number, like an IMAP UID)."""
        with self._lock:
            folder = self._folders[folder_id]
            pid = str(folder.next_uid)
            folder.next_uid += 1
            message = spi.RawMessage(pid, bytes(raw), frozenset(flags), thread_hint, internal_date)
            folder.messages[pid] = _Stored(message, folder.record("add", pid))
            return pid

    def delete(self, folder_id: str, provider_id: str) -> None:
        with self._lock:
            folder = self._folders[folder_id]
            del folder.messages[provider_id]
            folder.record("del", provider_id)

    def set_flags(self, folder_id: str, provider_id: str, flags: Iterable[str]) -> None:
        """Replace a message's whole flag set."""
        with self._lock:
            folder = self._folders[folder_id]
            stored = folder.messages[provider_id]
            message = replace(stored.message, flags=frozenset(flags))
            folder.messages[provider_id] = _Stored(message, stored.seq)
            folder.record("flags", provider_id)

    def reset_folder(self, folder_id: str) -> None:
        """Renumber the folder's messages under a new generation (an UIDVALIDITY change)."""
        with self._lock:
            old = self._folders[folder_id]
            new = _Folder(old.role, next_uid=old.next_uid)
            for stored in old.messages.values():
                pid = str(new.next_uid)
                new.next_uid += 1
                message = replace(stored.message, provider_id=pid)
                new.messages[pid] = _Stored(message, new.record("add", pid))
            self._folders[folder_id] = new

    def fail_next(self, exc: Exception, times: int = 1) -> None:
        """Make the next `times` calls of `list_folders`/`fetch_changes` raise `exc`."""
        with self._lock:
            self._failures.extend([exc] * times)

    def clear(self) -> None:
        """Remove every folder and pending failure."""
        with self._lock:
            self._folders.clear()
            self._failures.clear()

    def folder_ids(self) -> list[str]:
        with self._lock:
            return list(self._folders)

    def messages(self, folder_id: str) -> list[spi.RawMessage]:
        """The messages a folder holds now, oldest first."""
        with self._lock:
            return [s.message for s in self._folders[folder_id].messages.values()]

    def _raise_pending(self) -> None:
        with self._lock:
            exc = self._failures.pop(0) if self._failures else None
        if exc is not None:
            raise exc


class MemoryConnector:
    """Reads a `MemoryAccount` named by the `store` option. See `spi.Connector`."""

    name: ClassVar[str] = "memory"
    forkable: ClassVar[bool] = False  # the accounts live in this process (see spi.Connector)
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option("store", default="default", help="name of the in-memory account to read"),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        self.store = str(config.values.get("store") or "default")

    @classmethod
    def account(cls, name: str = "default") -> MemoryAccount:
        """The process-global account `name`, created empty on first use."""
        with _accounts_lock:
            if name not in _accounts:
                _accounts[name] = MemoryAccount(name)
            return _accounts[name]

    @classmethod
    def drop_account(cls, name: str) -> None:
        """Forget an account entirely (tests use it to clean up)."""
        with _accounts_lock:
            _accounts.pop(name, None)

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        """See `Connector.list_folders`. Raises what `fail_next` queued."""
        acct = self.account(self.store)
        acct._raise_pending()
        with acct._lock:
            return [
                spi.RemoteFolder(fid, fid.rsplit("/", 1)[-1], f.role)
                for fid, f in acct._folders.items()
            ]

    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        """See `Connector.fetch_changes`.

        Raises what `fail_next` queued, `ConnectorError` for an unknown folder, and
        `CursorExpiredError` when the folder was reset (or removed and added) since `cursor`.
        """
        acct = self.account(self.store)
        acct._raise_pending()
        with acct._lock:
            state = acct._folders.get(folder.id)
            if state is None:
                raise spi.ConnectorError(f"memory store {self.store!r} has no folder {folder.id!r}")
            since = 0
            if cursor is not None:
                generation, since = _decode(cursor)
                if generation != state.generation or since > len(state.log):
                    raise spi.CursorExpiredError(f"folder {folder.id!r} was reset")
            return _changes(state, since, max(1, limit), full=cursor is None)

    def check(self) -> Sequence[spi.CheckStep]:
        """See `Connector.check`. Reports a queued failure instead of raising it."""
        acct = self.account(self.store)
        with acct._lock:
            folders = len(acct._folders)
            count = sum(len(f.messages) for f in acct._folders.values())
            pending = list(acct._failures)
        steps = [spi.CheckStep("store", True, f"in-memory account {self.store!r}")]
        fix = f"seed it with MemoryConnector.account({self.store!r}).add_folder(...)"
        steps.append(spi.CheckStep("folders found", folders > 0, f"{folders}" if folders else fix))
        steps.append(spi.CheckStep("messages counted", True, f"{count} messages"))
        if pending:
            steps.append(spi.CheckStep("next call", False, f"will fail with {pending[0]!r}"))
        return steps

    def close(self) -> None:
        """See `Connector.close`: nothing to release."""


def _decode(cursor: str) -> tuple[int, int]:
    """Raises `CursorExpiredError` when the cursor is not a memory cursor."""
    try:
        data = json.loads(cursor)
        generation, seq = int(data["g"]), int(data["s"])
    except (ValueError, TypeError, KeyError) as exc:
        raise spi.CursorExpiredError(f"unreadable memory cursor: {exc}") from exc
    return generation, seq


def _changes(folder: _Folder, since: int, limit: int, *, full: bool) -> spi.ChangeBatch:
    """The changes after sequence `since`, stopping before the message past `limit`.

    A full scan is the same walk from 0 that skips deletions and flag changes (the messages
    carry their current flags). Flag changes of messages added after `since` are folded
    into those messages.
    """
    messages: list[spi.RawMessage] = []
    removed: list[str] = []
    flag_changes: dict[str, spi.FlagChange] = {}
    last = since
    for seq, kind, pid in folder.log[since:]:
        stored = folder.messages.get(pid)
        if kind == "add" and stored is not None and stored.seq == seq:
            if len(messages) == limit:
                break
            messages.append(stored.message)
        elif kind == "del" and not full:
            removed.append(pid)
            flag_changes.pop(pid, None)
        elif kind == "flags" and not full and stored is not None and stored.seq <= since:
            flag_changes[pid] = spi.FlagChange(pid, stored.message.flags)
        last = seq
    cursor = json.dumps({"g": folder.generation, "s": last}, separators=(",", ":"))
    return spi.ChangeBatch(
        messages,
        cursor,
        more=last < len(folder.log),
        removed=removed,
        flag_changes=list(flag_changes.values()),
        reset=full,
    )
