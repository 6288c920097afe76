"""Local mail on disk: Maildir folders, folders of one-message files, and mbox files.

The tree under `path` may mix three kinds of folder, all read without locks and never written:

* a Maildir: a directory with `cur/` (and usually `new/`, `tmp/`), in the notmuch layout
  (nested directories) or the Maildir++ one (`.Sent` beside the root INBOX). `tmp/` is never
  read: a delivery is complete only once renamed out of it (https://cr.yp.to/proto/maildir.html).
* a plain folder: a directory holding one message per file (`.eml`, `.msg`, `.txt`, no
  extension, Maildir-style `1:2,S` names).
* an mbox file, recognised by content (its first line starts with `From `): its own folder.

A file folder's cursor is a watermark on (mtime_ns, provider id), the order files are returned
in, plus the count and an order-independent hash of every provider id at or below it, plus
per-bucket hashes of their flags. On resume, when the files at or below the watermark are not
exactly those the cursor saw (one removed, or one arrived with an old mtime: `cp -p`, a slow
Maildir delivery), the cursor is expired and the core re-scans: a file is never missed, at
the price of a re-read. A Maildir flag change renames the file but keeps its mtime and
provider id, so it only moves a flag bucket, answered with `FlagChange`s for that bucket.
An mbox cursor is (inode, bytes scanned, hash of the last 4 KiB scanned): when the file only
grew, reading resumes at that offset; a rewrite expires it.

Nothing outside `path` is ever read (see `connectors.maildir.safety`): a symlink is followed
only when it resolves inside the root. A message file that is (or resolves to) a file
outside is not read: it is handed over empty with a `problem` naming its target, and the
core quarantines it; a directory or mbox symlink out of the root is not a folder (skipped
with a warning). A file over `ConnectorConfig.max_message_size` is read up to the end of
its header block only and handed over `truncated` with its size.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import ClassVar

from connectors import _cursor
from connectors.maildir import mbox as _mbox
from connectors.maildir import safety
from mailmanager import spi

log = logging.getLogger(__name__)

Role = spi.FolderRole
_SENT = "sent|sent items|sent messages|sent mail|envoyés|éléments envoyés|messages envoyés|"
_SENT += "gesendet|gesendete objekte|gesendete elemente|enviados|inviati"
_ROLE_NAMES: dict[str, Role] = {
    "inbox": Role.INBOX,
    **dict.fromkeys(_SENT.split("|"), Role.SENT),
    **dict.fromkeys(["archive", "archives", "archiv"], Role.ARCHIVE),
    **dict.fromkeys(["drafts", "draft", "brouillons"], Role.DRAFTS),
    **dict.fromkeys(["trash", "corbeille", "deleted items", "deleted messages"], Role.TRASH),
    **dict.fromkeys(["junk", "spam", "courrier indésirable", "junk e-mail"], Role.JUNK),
}
# Maildir info suffix: "unique:2,FLAGS"; mbsync and Windows tools write "!" for ":".
_INFO = re.compile(r"^(?P<id>.+?)[:!]2,(?P<flags>[^:!]*)$")
_FLAG_LETTERS = {
    "S": "\\Seen",
    "R": "\\Answered",
    "F": "\\Flagged",
    "T": "\\Deleted",
    "D": "\\Draft",
}
_MESSAGE_EXTS = {"eml", "msg", "txt", "mbox", "mbx", "mail"}
_MBOX_EXTS = {"mbox", "mbx"}
# Index and state files that Dovecot, Courier and Maildir++ quota keep beside the messages.
_NOT_MAIL = re.compile(r"^(dovecot|courierimap|maildirfolder$|maildirsize$|subscriptions$)")
_BUCKETS = 16
_CACHE_SECONDS = 60.0
_FUTURE_SLACK_NS = 60 * 10**9


def folder_role(name: str) -> spi.FolderRole:
    """The role a folder's (possibly localised) name implies; Maildir++ leading dot ignored."""
    text = unicodedata.normalize("NFC", name).strip().lstrip(".").casefold()
    role = _ROLE_NAMES.get(text)
    if role is None and "." in text:  # Maildir++ hierarchy: ".INBOX.Sent"
        role = _ROLE_NAMES.get(text.rsplit(".", 1)[1])
    return role or Role.OTHER


def _is_candidate(name: str) -> bool:
    """Whether a file in a plain folder may hold a message (by its name only)."""
    if name.startswith(".") or _NOT_MAIL.match(name.lower()):
        return False
    if _INFO.match(name) or "." not in name or re.match(r"\d{9,}\.", name):
        return True
    ext = name.rsplit(".", 1)[1].lower()
    return ext in _MESSAGE_EXTS or ext.isdigit()


def _hash64(text: str) -> int:
    data = text.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True)
class _Spot:
    """Where one folder lives on disk: kind is "maildir", "files" or "mbox"."""

    folder: spi.RemoteFolder
    path: str
    kind: str


BATCH_BYTES = 8 * 1024 * 1024  # raw bytes per answer, at least one message


@dataclass(frozen=True)
class _Entry:
    """One message file, as listed (not read), with the hashes its cursor sums need."""

    key: tuple[int, str]
    mtime_ns: int
    pid: str
    path: str
    flags: frozenset[str]
    id_hash: int
    flag_hash: int


@dataclass
class _Sums:
    """Count, id hash and flag buckets of the entries at or below a watermark."""

    count: int = 0
    ids: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * _BUCKETS)

    def add(self, entry: _Entry) -> None:
        self.count += 1
        self.ids = (self.ids + entry.id_hash) % 2**64
        bucket = entry.id_hash % _BUCKETS
        self.buckets[bucket] = (self.buckets[bucket] + entry.flag_hash) % 2**32

    def copy(self) -> _Sums:
        return _Sums(self.count, self.ids, list(self.buckets))


@dataclass
class _Cached:
    """A listing kept between the answers of one `more=True` loop of one instance."""

    cursor: str
    entries: list[_Entry]
    position: int
    mark: tuple[int, str]
    sums: _Sums
    expires: float


class MaildirConnector:
    """Reads Maildir folders, plain message folders and mbox files under one path.

    See `spi.Connector` for the contract and the module docstring for the cursors.
    """

    name: ClassVar[str] = "maildir"
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option("path", kind="path", required=True, help="a directory or one mbox file"),
        spi.Option(
            "folders",
            kind="list",
            default=[],
            help='shell globs on folder ids ("." = files under the root); "!" excludes',
        ),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        raw = os.path.expanduser(str(config.values.get("path") or ""))
        self.root = os.path.normpath(os.path.join(config.base_dir, raw))
        self.safe = safety.Root(self.root)
        self.max_size = config.max_message_size
        patterns = config.values.get("folders") or []
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = [str(p) for p in patterns] if isinstance(patterns, list | tuple) else []
        self._sniffed: dict[str, tuple[int, int, int, bool]] = {}
        self._cache: dict[str, _Cached] = {}

    # -- folders -------------------------------------------------------------------------

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        """See `Connector.list_folders`. Raises `ConnectorError` when `path` is missing."""
        return [spot.folder for spot in self._spots()]

    def _spots(self) -> list[_Spot]:
        if not os.path.exists(self.root):
            raise spi.ConnectorError(
                f"maildir path {self.root} does not exist: create it or fix `path` in the "
                "mailbox's configuration"
            )
        if os.path.isfile(self.root):
            if not self._is_mbox(self.root):
                raise spi.ConnectorError(
                    f"{self.root} is a file but not an mbox (its first line must start with "
                    "'From '): set `path` to a directory or an mbox file"
                )
            name = os.path.basename(self.root)
            return [_Spot(spi.RemoteFolder(".", name, _mbox_role(name)), self.root, "mbox")]
        try:
            spots = list(self._walk(self.root, ".", set()))
        except OSError as exc:
            raise spi.ConnectorError(f"cannot read {self.root}: {exc.strerror}") from exc
        return sorted((s for s in spots if self._wanted(s.folder.id)), key=lambda s: s.folder.id)

    def _wanted(self, folder_id: str) -> bool:
        includes = [p for p in self.patterns if not p.startswith("!")]
        if includes and not any(fnmatchcase(folder_id, p) for p in includes):
            return False
        return not any(fnmatchcase(folder_id, p[1:]) for p in self.patterns if p.startswith("!"))

    def _walk(self, path: str, rel: str, seen: set[tuple[int, int]]) -> Iterator[_Spot]:
        """Yield the folders at and under `path`. Raises `OSError` only for the root."""
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                return
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if rel == ".":
                raise
            log.warning(
                "skipping unreadable folder %s: %s",
                path,
                exc.strerror,
                extra={"action": "maildir_skip_folder"},
            )
            return
        outside = [e for e in entries if e.is_symlink() and not self.safe.holds(e.path)]
        for e in outside:  # never a folder nor an mbox; a message file is quarantined
            if e.is_dir():
                log.warning(
                    "skipping folder %s: a symlink out of the maildir root",
                    e.path,
                    extra={"action": "maildir_skip_symlink"},
                )
        dirs = {e.name: e for e in entries if e.is_dir() and e not in outside}
        maildir = "cur" in dirs
        has_files = False
        for e in entries:
            if e.name in dirs or not _is_candidate(e.name) or not e.is_file():
                continue
            child = e.name if rel == "." else f"{rel}/{e.name}"
            if self._is_mbox(e.path):
                yield _Spot(spi.RemoteFolder(child, e.name, _mbox_role(e.name)), e.path, "mbox")
            elif e.stat().st_size:
                has_files = True
        empty_leaf = not [e for e in entries if not e.name.startswith(".")]
        if maildir or has_files or empty_leaf:
            name = os.path.basename(os.path.abspath(path)) if rel == "." else rel.split("/")[-1]
            if rel == "." and maildir:  # the root of a Maildir++ tree is the INBOX
                name = "INBOX"
            elif maildir:
                name = name.lstrip(".") or name
            role = folder_role(name)
            kind = "maildir" if maildir else "files"
            yield _Spot(spi.RemoteFolder(rel, name, role), path, kind)
        for name, e in dirs.items():
            if maildir and name in ("cur", "new", "tmp"):
                continue
            if name.startswith(".") and not os.path.isdir(os.path.join(e.path, "cur")):
                continue  # .notmuch, .git; only Maildir++ folders are hidden on purpose
            yield from self._walk(e.path, name if rel == "." else f"{rel}/{name}", seen)

    def _is_mbox(self, path: str) -> bool:
        # A symlink out of the root is not even sniffed (see `connectors.maildir.safety`);
        # the directories above `path` were checked as the tree was walked.
        if os.path.islink(path) and not self.safe.holds(path):
            return False
        try:
            st = os.stat(path)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            known = self._sniffed.get(path)
            if known is not None and known[:3] == sig:
                return known[3]
            with open(path, "rb") as fh:
                head = fh.read(len(_mbox.BOM) + 5)
        except OSError:
            return False
        ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
        found = _mbox.starts_mbox(head) or ext in _MBOX_EXTS
        self._sniffed[path] = (*sig, found)
        return found

    def _spot(self, folder: spi.RemoteFolder) -> _Spot:
        """Raises `ConnectorError` when the folder is outside the root or gone."""
        path = os.path.normpath(os.path.join(self.root, folder.id))
        rel = os.path.relpath(path, self.root)
        if rel == ".." or rel.startswith("../") or not self.safe.holds(path):
            raise spi.ConnectorError(f"folder id {folder.id!r} points outside {self.root}")
        if os.path.isfile(path):
            if not self._is_mbox(path):
                raise spi.ConnectorError(f"folder {folder.id!r}: {path} is no longer an mbox")
            return _Spot(folder, path, "mbox")
        if os.path.isdir(path):
            kind = "maildir" if os.path.isdir(os.path.join(path, "cur")) else "files"
            return _Spot(folder, path, kind)
        raise spi.ConnectorError(f"folder {folder.id!r} no longer exists at {path}")

    # -- messages ------------------------------------------------------------------------

    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        """See `Connector.fetch_changes`.

        Raises `CursorExpiredError` as the module docstring tells, `TransientError` when the
        first file of a batch fails to read for a reason other than permissions, and
        `ConnectorError` when the folder is gone.
        """
        spot = self._spot(folder)
        limit = max(1, limit)
        try:
            if spot.kind == "mbox":
                return _mbox.fetch_mbox(spot.path, cursor, limit)
            return self._fetch_files(spot, cursor, limit)
        except FileNotFoundError as exc:
            raise spi.ConnectorError(f"folder {folder.id!r} vanished while reading") from exc

    def _list_files(self, spot: _Spot) -> list[_Entry]:
        entries: list[_Entry] = []
        seen: set[str] = set()
        # Clocks skew: a file dated in the future would hold the watermark ahead of every
        # new file (each would look "old" and expire the cursor), so it sorts first instead.
        horizon = time.time_ns() + _FUTURE_SLACK_NS
        for sub in ("cur", "new", "") if spot.kind == "maildir" else ("",):
            where = os.path.join(spot.path, sub) if sub else spot.path
            if not self.safe.holds(where):
                log.warning(
                    "skipping %s: a symlink out of the maildir root",
                    where,
                    extra={"action": "maildir_skip_symlink"},
                )
                continue
            try:
                it = os.scandir(where)
            except FileNotFoundError:
                continue
            with it:  # sorted, so that a repeated name always gets the same fallback id
                for e in sorted(it, key=lambda e: e.name):
                    if e.name.startswith(".") or (not sub and not _is_candidate(e.name)):
                        continue
                    try:
                        if not e.is_file():
                            continue
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    if not st.st_size or (not sub and self._is_mbox(e.path)):
                        continue
                    match = _INFO.match(e.name)
                    pid, letters = (match["id"], match["flags"]) if match else (e.name, "")
                    pid = pid.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    if pid in seen:  # notmuch trees may repeat a name beside cur/ and new/
                        pid = f"{sub or '.'}/{pid}"
                    seen.add(pid)
                    flags = frozenset(_FLAG_LETTERS[c] for c in letters if c in _FLAG_LETTERS)
                    order = st.st_mtime_ns if st.st_mtime_ns <= horizon else 0
                    id_hash = _hash64(pid)
                    flag_hash = _hash64(pid + "\0" + " ".join(sorted(flags))) >> 32
                    entry = _Entry(
                        (order, pid), st.st_mtime_ns, pid, e.path, flags, id_hash, flag_hash
                    )
                    entries.append(entry)
        entries.sort(key=lambda e: e.key)
        return entries

    def _fetch_files(self, spot: _Spot, cursor: str | None, limit: int) -> spi.ChangeBatch:
        ino = os.stat(spot.path).st_ino
        changes: list[spi.FlagChange] = []
        cached = self._cache.pop(spot.folder.id, None)
        if cursor and cached and cached.cursor == cursor and time.monotonic() < cached.expires:
            entries, start, mark, sums = cached.entries, cached.position, cached.mark, cached.sums
        elif cursor is None:
            entries, start, mark, sums = self._list_files(spot), 0, (-1, ""), _Sums()
        else:
            entries, start, mark, sums, changes = self._resume(spot, ino, cursor)
        messages: list[spi.RawMessage] = []
        position, relist, size = start, False, 0
        # Bounded memory whatever the messages: a batch also stops at a byte budget.
        while position < len(entries) and len(messages) < limit and size < BATCH_BYTES:
            entry = entries[position]
            date = datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC)
            try:
                raw, whole, truncated = self.safe.read(entry.path, self.max_size)
            except safety.OutsideRoot as exc:
                log.warning(
                    "not reading %s: it leads out of the maildir root",
                    entry.path,
                    extra={"action": "maildir_symlink_out", "folder": spot.folder.id},
                )
                problem = (
                    f"symlink_outside_root: {os.path.basename(entry.path)} leads to "
                    f"{exc.target}, outside the maildir root {self.safe.real}: not read"
                )
                messages.append(
                    spi.RawMessage(entry.pid, b"", entry.flags, internal_date=date, problem=problem)
                )
            except FileNotFoundError:
                relist = True  # renamed (flag change, new/ -> cur/) or deleted since listed
                break
            except (PermissionError, IsADirectoryError) as exc:
                log.warning(
                    "skipping unreadable %s: %s",
                    entry.path,
                    exc.strerror,
                    extra={"action": "maildir_skip_unreadable", "folder": spot.folder.id},
                )
            except OSError as exc:
                if not messages:
                    raise spi.TransientError(f"cannot read {entry.path}: {exc.strerror}") from exc
                break
            else:
                messages.append(
                    spi.RawMessage(entry.pid, raw, entry.flags, internal_date=date,
                                   size=whole, truncated=truncated)
                )  # fmt: skip
                size += len(raw)
            sums.add(entry)
            position += 1
        if position > start:
            mark = entries[position - 1].key
        more = position < len(entries)
        new_cursor = _cursor.encode(
            t="f", i=ino, m=mark[0], p=mark[1], c=sums.count, h=f"{sums.ids:x}", b=sums.buckets
        )
        if more and not relist:
            expires = time.monotonic() + _CACHE_SECONDS
            kept = _Cached(new_cursor, entries, position, mark, sums.copy(), expires)
            self._cache[spot.folder.id] = kept
        return spi.ChangeBatch(
            messages, new_cursor, more=more, flag_changes=changes, reset=cursor is None
        )

    def _resume(
        self, spot: _Spot, ino: int, cursor: str
    ) -> tuple[list[_Entry], int, tuple[int, str], _Sums, list[spi.FlagChange]]:
        """Re-list a folder and check it against a cursor: (entries, start, mark, sums, flags).

        Raises `CursorExpiredError` when the folder was replaced or the files at or below the
        watermark are not those the cursor saw.
        """
        state = _cursor.decode(cursor, "f")
        if _cursor.int_field(state, "i") != ino:
            raise spi.CursorExpiredError(f"folder {spot.folder.id!r} was replaced")
        mark = (_cursor.int_field(state, "m"), _cursor.str_field(state, "p"))
        old = state.get("b")
        if not isinstance(old, list) or len(old) != _BUCKETS:
            raise spi.CursorExpiredError("maildir cursor field 'b' is damaged")
        entries = self._list_files(spot)
        start = bisect.bisect_right([e.key for e in entries], mark)
        sums = _Sums()
        for entry in entries[:start]:
            sums.add(entry)
        ids = f"{sums.ids:x}"
        if sums.count != _cursor.int_field(state, "c") or ids != _cursor.str_field(state, "h"):
            raise spi.CursorExpiredError(
                f"files at or below the watermark of folder {spot.folder.id!r} changed"
            )
        moved = {b for b in range(_BUCKETS) if old[b] != sums.buckets[b]}
        changes = [
            spi.FlagChange(e.pid, e.flags) for e in entries[:start] if e.id_hash % _BUCKETS in moved
        ]
        return entries, start, mark, sums, changes

    # -- diagnosis -----------------------------------------------------------------------

    def check(self) -> Sequence[spi.CheckStep]:
        """See `Connector.check`: path exists, readable, folders found, messages counted."""
        if not os.path.exists(self.root):
            fix = "create it or fix `path` in the mailbox's configuration"
            return [spi.CheckStep("path exists", False, f"{self.root} does not exist: {fix}")]
        steps = [spi.CheckStep("path exists", True, self.root)]
        if not os.access(self.root, os.R_OK):
            fix = "give the mailmanager user read permission"
            return [*steps, spi.CheckStep("path readable", False, f"{self.root}: {fix}")]
        steps.append(spi.CheckStep("path readable", True, ""))
        try:
            spots = self._spots()
        except spi.ConnectorError as exc:
            return [*steps, spi.CheckStep("folders found", False, str(exc))]
        if not spots:
            detail = "no Maildir, message file or mbox found; check `path` and `folders`"
            return [*steps, spi.CheckStep("folders found", False, detail)]
        names = ", ".join(s.folder.id for s in spots[:5]) + (" …" if len(spots) > 5 else "")
        steps.append(spi.CheckStep("folders found", True, f"{len(spots)}: {names}"))
        try:
            count = sum(
                _mbox.count_mbox(s.path) if s.kind == "mbox" else len(self._list_files(s))
                for s in spots
            )
        except OSError as exc:
            return [*steps, spi.CheckStep("messages counted", False, str(exc))]
        steps.append(spi.CheckStep("messages counted", True, f"{count} messages"))
        return steps

    def close(self) -> None:
        """See `Connector.close`: drops cached listings; nothing else is held open."""
        self._cache.clear()
        self._sniffed.clear()


def _mbox_role(name: str) -> spi.FolderRole:
    stem, dot, ext = name.rpartition(".")
    return folder_role(stem if dot and ext.lower() in _MESSAGE_EXTS else name)
