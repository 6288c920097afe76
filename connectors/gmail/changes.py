"""Gmail labels as folders, the Gmail cursor, and history records reduced to changes.

Plain values only (no network): `connectors.gmail` feeds them what the API answered.

- A folder is a `View`: the messages of one label (all mail when `label` is None) minus
  those carrying any label in `without`. `ALL` and `ARCHIVE` (neither INBOX nor SENT) are
  views without a label of their own.
- Labels map to IMAP-style flags as Gmail's own IMAP server does: no UNREAD = \\Seen,
  STARRED = \\Flagged, DRAFT = \\Draft.
- `History` turns history records (https://developers.google.com/gmail/api/reference/rest/v1/users.history/list)
  into one action per message: fetch (it entered the folder), remove (deleted, or it left
  the folder), or new flags. A label change that can move a message in or out of the view
  is judged on the labels the record carries, and re-fetching is always the safe answer:
  re-delivery is allowed, loss is not. Label changes that touch neither membership nor
  flags (IMPORTANT, a user label in the ALL view) are ignored; labels are refreshed at the
  next full scan.
"""

from __future__ import annotations

import binascii
import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailmanager import spi

ROLES = {
    "INBOX": spi.FolderRole.INBOX,
    "SENT": spi.FolderRole.SENT,
    "DRAFT": spi.FolderRole.DRAFTS,
    "SPAM": spi.FolderRole.JUNK,
    "TRASH": spi.FolderRole.TRASH,
}
FLAG_LABELS = frozenset({"UNREAD", "STARRED", "DRAFT"})
HISTORY_TYPES = ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
DEFAULT_EXCLUDE = ["SPAM", "TRASH", "DRAFT", "CATEGORY_PROMOTIONS", "CATEGORY_SOCIAL"]
FETCH, REMOVE = "fetch", "remove"
Action = str | frozenset[str]  # FETCH, REMOVE, or the message's new flags


@dataclass(frozen=True)
class View:
    """What one folder holds (module docstring)."""

    folder: spi.RemoteFolder
    label: str | None
    without: frozenset[str]

    def holds(self, labels: Iterable[str]) -> bool:
        have = set(labels)
        return (self.label is None or self.label in have) and not have & self.without

    @property
    def relevant(self) -> frozenset[str]:
        """Labels whose change can move a message in or out of this folder."""
        return self.without | {self.label} if self.label else self.without

    def list_params(self, limit: int, page: str | None) -> dict[str, Any]:
        """messages.list parameters for one page of at most `limit` (500 at most)."""
        params: dict[str, Any] = {"userId": "me", "maxResults": min(max(limit, 1), 500)}
        if self.label:
            params["labelIds"] = [self.label]
        # Narrow the listing with Gmail search operators where they exist
        # (https://support.google.com/mail/answer/7190); the rest is filtered after the get.
        terms = [f"-category:{x[9:].lower()}" for x in sorted(self.without) if x[:9] == "CATEGORY_"]
        terms += [f"-in:{x.lower()}" for x in ("INBOX", "SENT") if x in self.without]
        if terms:
            params["q"] = " ".join(terms)
        if self.label in ("SPAM", "TRASH") or not {"SPAM", "TRASH"} <= self.without:
            params["includeSpamTrash"] = True
        if page:
            params["pageToken"] = page
        return params


@dataclass(frozen=True)
class Cursor:
    """The opaque cursor: the historyId to read changes from; during a full scan also the
    messages.list page token to continue from."""

    history: int
    page: str | None = None
    scanning: bool = False

    def encode(self) -> str:
        data: dict[str, object] = {"v": 1, "h": self.history}
        if self.scanning:
            data["s"] = 1
            if self.page:
                data["p"] = self.page
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises `spi.CursorExpiredError` when the text is not a Gmail cursor."""
        try:
            d = json.loads(text)
            if d.get("v") != 1 or not isinstance(d["h"], int):
                raise ValueError("not a Gmail cursor")
            return cls(d["h"], d.get("p"), bool(d.get("s")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise spi.CursorExpiredError(f"unreadable Gmail cursor: {exc}") from exc


def flags_of(labels: Iterable[str]) -> frozenset[str]:
    have = set(labels)
    flags = set() if "UNREAD" in have else {"\\Seen"}
    flags |= {"\\Flagged"} if "STARRED" in have else set()
    return frozenset(flags | ({"\\Draft"} if "DRAFT" in have else set()))


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def decode_raw(text: str) -> bytes | None:
    """The bytes of a base64url `raw` (padding optional), or None when it is not base64.

    Either alphabet is accepted, even mixed (what `b64decode(altchars=b"-_", validate=True)`
    accepts), in one pass: ASCII bytes, `-_` mapped to `+/`, a strict decode.
    """
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    pad = -len(data) % 4
    try:
        return binascii.a2b_base64(
            data.translate(_URLSAFE) + b"=" * pad if pad else data.translate(_URLSAFE),
            strict_mode=True,
        )
    except (binascii.Error, ValueError):
        return None


def header_block(payload: Mapping[str, Any]) -> bytes:
    """RFC 822 bytes holding only the header fields of a `format=metadata` answer."""
    lines = [f"{h.get('name')}: {h.get('value', '')}" for h in payload.get("headers", [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def resolve(specs: Iterable[str], labels: Mapping[str, str]) -> list[str]:
    """Label ids named by `specs`: ids (INBOX, Label_12), names, or globs of names."""
    out: list[str] = []
    for spec in specs:
        if labels.get(spec.upper()) == spec.upper():
            found = [spec.upper()]  # a system label: its id is its name
        elif spec in labels:
            found = [spec]
        else:
            pattern = spec.lower()
            found = sorted(i for i, n in labels.items() if fnmatch.fnmatchcase(n.lower(), pattern))
        out += [i for i in found if i not in out]
    return out


def views(folders: Sequence[str], exclude: Sequence[str], labels: Mapping[str, str]) -> list[View]:
    """The folders named by `folders`, given the mailbox's labels (id -> name)."""
    without = frozenset(resolve(exclude, labels))
    found: dict[str, View] = {}
    for spec in folders:
        if spec.upper() == "ALL":
            folder = spi.RemoteFolder("ALL", "All Mail", spi.FolderRole.ALL)
            found.setdefault("ALL", View(folder, None, without))
        elif spec.upper() == "ARCHIVE":
            folder = spi.RemoteFolder("ARCHIVE", "Archive", spi.FolderRole.ARCHIVE)
            found.setdefault("ARCHIVE", View(folder, None, without | {"INBOX", "SENT"}))
        else:
            for lid in resolve([spec], labels):
                folder = spi.RemoteFolder(lid, labels[lid], ROLES.get(lid, spi.FolderRole.OTHER))
                found.setdefault(lid, View(folder, lid, without - {lid}))
    return list(found.values())


def effects(record: Mapping[str, Any], view: View) -> list[tuple[str, Action]]:
    """What one history record means for `view`, message by message."""
    out: list[tuple[str, Action]] = []
    for entry in record.get("messagesAdded", []):
        msg = entry["message"]
        if view.holds(msg.get("labelIds", [])):
            out.append((str(msg["id"]), FETCH))
    for entry in [*record.get("labelsAdded", []), *record.get("labelsRemoved", [])]:
        msg, changed = entry["message"], set(entry.get("labelIds", []))
        labels = msg.get("labelIds", [])
        if changed & view.relevant:
            out.append((str(msg["id"]), FETCH if view.holds(labels) else REMOVE))
        elif changed & FLAG_LABELS and view.holds(labels):
            out.append((str(msg["id"]), flags_of(labels)))
    for entry in record.get("messagesDeleted", []):
        out.append((str(entry["message"]["id"]), REMOVE))
    return out


class History:
    """Accumulates history records for one view, at most `limit` fetches (module docstring)."""

    def __init__(self, view: View, limit: int) -> None:
        self.view, self.limit = view, max(limit, 1)
        self.actions: dict[str, Action] = {}
        self.fetches = 0

    def take(self, record: Mapping[str, Any]) -> bool:
        """Apply `record`; False (and nothing applied) when it would pass the limit."""
        found = effects(record, self.view)
        new = {m for m, a in found if a == FETCH and self.actions.get(m) != FETCH}
        if new and self.fetches and self.fetches + len(new) > self.limit:
            return False
        for mid, action in found:
            if action in (FETCH, REMOVE) or self.actions.get(mid) != FETCH:
                self.actions[mid] = action  # new flags never hide a pending fetch
        self.fetches = sum(1 for a in self.actions.values() if a == FETCH)
        return True

    def to_fetch(self) -> list[str]:
        return [m for m, a in self.actions.items() if a == FETCH]

    def removed(self) -> list[str]:
        return [m for m, a in self.actions.items() if a == REMOVE]

    def flag_changes(self) -> list[spi.FlagChange]:
        return [spi.FlagChange(m, a) for m, a in self.actions.items() if isinstance(a, frozenset)]
