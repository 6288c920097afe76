"""Choosing the mail folders of a Microsoft 365 mailbox to sync (graph connector).

Graph v1.0 has no "role" property on mailFolder: the well-known folders are addressed by
name instead (`GET /users/{id}/mailFolders/sentitems`, list at
https://learn.microsoft.com/graph/api/resources/mailfolder#well-known-folder-names), so we
ask for each well-known folder once to learn its id, and every other folder has role OTHER.
Display names are localised ("Éléments envoyés"): well-known names are the robust way to
pick the Sent folder.

A `folders` entry is a well-known name (inbox, sentitems, archive, drafts, deleteditems,
junkemail) or a display-name path, `/`-separated from the top ("Clients/Acme"), where `*`
and `?` are wildcards (fnmatch, case-insensitive: `Clients/*`, `*` for every folder). A
well-known folder the mailbox lacks (Archive appears on first use) is skipped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from connectors.graph.http import GraphClient, GraphError
from mailmanager import spi

WELL_KNOWN: dict[str, spi.FolderRole] = {
    "inbox": spi.FolderRole.INBOX,
    "sentitems": spi.FolderRole.SENT,
    "archive": spi.FolderRole.ARCHIVE,
    "drafts": spi.FolderRole.DRAFTS,
    "deleteditems": spi.FolderRole.TRASH,
    "junkemail": spi.FolderRole.JUNK,
}
DEFAULT_FOLDERS = ["inbox", "sentitems", "archive"]
_PAGE = "100"
_FIELDS = "id,displayName,parentFolderId,childFolderCount"


@dataclass(frozen=True)
class MailFolder:
    """A folder as listed: Graph id, display path from the top, well-known name if any."""

    id: str
    path: str
    well_known: str | None = None

    @property
    def role(self) -> spi.FolderRole:
        return WELL_KNOWN.get(self.well_known or "", spi.FolderRole.OTHER)


def _pages(client: GraphClient, path: str) -> Iterator[dict[str, Any]]:
    """Every object of a paged Graph collection (`@odata.nextLink`)."""
    body = client.get_json(path, params={"$top": _PAGE, "$select": _FIELDS})
    while True:
        yield from (v for v in body.get("value", []) if isinstance(v, dict))
        link = body.get("@odata.nextLink")
        if not isinstance(link, str):
            return
        body = client.get_json(link)


def well_known(client: GraphClient, user_path: str, names: Sequence[str]) -> list[MailFolder]:
    """The well-known folders among `names` that the mailbox has (path = display name).

    Raises what `GraphClient.get` raises, except 404 (folder absent), which skips it.
    """
    found: list[MailFolder] = []
    for name in names:
        try:
            body = client.get_json(
                f"{user_path}/mailFolders/{name}", params={"$select": "id,displayName"}
            )
        except GraphError as exc:
            if exc.status == 404 and exc.code == "ErrorItemNotFound":
                continue
            raise
        if isinstance(body.get("id"), str):
            found.append(MailFolder(body["id"], str(body.get("displayName") or name), name))
    return found


def _walk(
    client: GraphClient, user_path: str, deep: bool, known: dict[str, str]
) -> list[MailFolder]:
    out: list[MailFolder] = []

    def visit(path: str, prefix: str) -> None:
        for f in _pages(client, path):
            fid, name = str(f.get("id") or ""), str(f.get("displayName") or "")
            if not fid:
                continue
            full = f"{prefix}{name}"
            out.append(MailFolder(fid, full, known.get(fid)))
            if deep and int(f.get("childFolderCount") or 0) > 0:
                visit(f"{user_path}/mailFolders/{quote(fid, safe='')}/childFolders", full + "/")

    visit(f"{user_path}/mailFolders", "")
    return out


def _matcher(spec: str) -> Callable[[MailFolder], bool]:
    key = spec.strip().lower()
    if key in WELL_KNOWN:
        return lambda f: f.well_known == key
    return lambda f: fnmatch.fnmatchcase(f.path.lower(), key)


def choose(
    client: GraphClient, user_path: str, specs: Sequence[str], exclude: Sequence[str]
) -> list[MailFolder]:
    """The folders `specs` name, in spec order, minus `exclude` (module docstring).

    Only walks child folders when a spec is a path or a wildcard.
    """
    names_needed = any(s.strip().lower() not in WELL_KNOWN for s in [*specs, *exclude])
    wanted = {s.strip().lower() for s in [*specs, *exclude]}
    special = well_known(client, user_path, [n for n in WELL_KNOWN if names_needed or n in wanted])
    known = {f.id: str(f.well_known) for f in special}
    deep = any(("/" in s or "*" in s or "?" in s) for s in [*specs, *exclude])
    listed = _walk(client, user_path, deep, known) if names_needed else []
    by_id = {f.id: f for f in listed}
    for f in special:
        by_id.setdefault(f.id, f)
    folders = list(by_id.values())
    chosen: list[MailFolder] = []
    for spec in specs:
        match = _matcher(spec)
        chosen += sorted((f for f in folders if match(f) and f not in chosen), key=lambda f: f.path)
    drops = [_matcher(x) for x in exclude]
    return [f for f in chosen if not any(drop(f) for drop in drops)]
