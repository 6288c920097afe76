"""The Exchange connector: an on-premises Exchange Server mailbox through EWS (exchangelib).

Exchange Online is not served here: Microsoft blocks EWS in Exchange Online from 2026-10-01
and shuts it off on 2027-04-01 (Message Center MC1176266); an endpoint at
outlook.office365.com or *.outlook.com, given or found by Autodiscover, raises
`spi.UnsupportedError` pointing at the `graph` connector.

How one folder syncs (see `mailmanager.spi` for the contract):

- Read-only: SyncFolderItems and GetItem never change an item (IsRead included).
- Folders: each `folders` entry is a role (inbox, sent, archive, drafts, trash, junk: the
  distinguished folders, and for archive a top-level folder named Archive or a translation)
  or a glob on folder paths below the message root ("Clients/*"); `exclude_folders` takes the
  same forms. Only mail folders (FolderClass IPF.Note) are listed. Folder ids are EWS FolderIds,
  which survive renames.
- The cursor is compact JSON, opaque to the core: the SyncState of the last SyncFolderItems
  page read, whether that page said IncludesLastItemInRange, and the items it created that are
  not delivered yet (only when a page's messages exceed `fetch_batch_bytes`). One
  `fetch_changes` reads at most one page of min(limit, 512) changes, so the cursor never moves
  past an item it has not returned; a full scan is the same walk without a SyncState.
- Creates become messages (raw bytes from MimeContent, GetItem in chunks of 100, several chunks
  in parallel with `connections` > 1); Deletes become `removed`; ReadFlagChange and Update
  become `flag_changes` with the full flag set: IsRead -> \\Seen, follow-up flag -> \\Flagged,
  last verb reply / reply all -> \\Answered, forward -> $Forwarded. An item Exchange cannot
  convert to MIME (ErrorMimeContentConversionFailed, no or broken MimeContent) is skipped with
  a warning naming its id: retrying would not help and it must not block the folder.
- Size limit: an item whose Size (from SyncFolderItems) is over
  `ConnectorConfig.max_message_size` is read with InternetMessageHeaders instead of
  MimeContent and handed over `truncated` with that size: never downloaded whole. (EWS's
  Size counts the item's properties, a little more than its MIME bytes.)
- ErrorInvalidSyncStateData -> `spi.CursorExpiredError`; a folder gone since the cursor was
  made -> `CursorExpiredError` too.
- Errors: exchangelib runs with `FailFast` and every error is translated at the boundary
  (`exchange_ews.translate`). Transient ones (ErrorServerBusy with BackOffMilliseconds, HTTP
  5xx, timeouts) are retried here with tenacity, waiting at least what the server asked; a
  back-off longer than `max_retry_wait` seconds goes straight to the core as
  `TransientError(retry_after)` instead of holding a sync worker. With OAuth, a rejected token
  is dropped and fetched again once before `AuthError`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, TypeVar
from urllib.parse import urlsplit

import tenacity

from connectors.exchange import config as exchange_config
from connectors.exchange import ews, soap
from connectors.exchange.check import diagnose
from mailmanager import spi

log = logging.getLogger(__name__)
T = TypeVar("T")
Role = spi.FolderRole
ROLES = {"inbox": Role.INBOX, "sent": Role.SENT, "archive": Role.ARCHIVE, "drafts": Role.DRAFTS,
         "trash": Role.TRASH, "junk": Role.JUNK,  # and EWS's distinguished names:
         "sentitems": Role.SENT, "deleteditems": Role.TRASH, "junkemail": Role.JUNK}  # fmt: skip
_DISTINGUISHED = {"inbox": Role.INBOX, "sentitems": Role.SENT, "drafts": Role.DRAFTS,
                  "deleteditems": Role.TRASH, "junkemail": Role.JUNK}  # fmt: skip
# Outlook's one-click Archive folder is a plain top-level folder, named in the mailbox language.
_ARCHIVE_NAMES = {"archive", "archives", "archiv", "archivo", "archivio", "archief", "arkiv",
                  "arquivo", "arkisto", "archiwum", "архив"}  # fmt: skip
DEFAULT_FOLDERS = ["inbox", "sent", "archive"]


@dataclass(frozen=True)
class _Cursor:
    state: str | None = None  # SyncState after the last page read; None before the first
    last: bool = False  # that page had IncludesLastItemInRange
    pending: tuple[tuple[str, int], ...] = ()  # (item id, size) created, not yet delivered
    gone: bool = False  # the folder did not exist at the full scan

    def encode(self) -> str:
        data: dict[str, object] = {"v": 1, "s": self.state, "l": int(self.last)}
        if self.pending:
            data["p"] = [list(p) for p in self.pending]
        if self.gone:
            data["g"] = 1
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        """Raises CursorExpiredError when the text is not a cursor of ours."""
        try:
            d = json.loads(text)
            if d["v"] != 1 or not isinstance(d["s"], str | None):
                raise ValueError("not an EWS cursor")
            pending = tuple((str(i), int(n)) for i, n in d.get("p", ()))
            return cls(d["s"], bool(d["l"]), pending, bool(d.get("g")))
        except (ValueError, KeyError, TypeError) as exc:
            raise spi.CursorExpiredError(f"unreadable EWS cursor: {exc}") from exc


@dataclass(frozen=True)
class _Box:
    id: str
    path: str
    role: Role


class ExchangeConnector:
    """A mailbox on an on-premises Exchange Server (2013 to SE) through EWS.

    See `spi.Connector`.
    """

    name: ClassVar[str] = "exchange"
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option("email", required=True, help="primary SMTP address of the mailbox"),
        spi.Option("service_endpoint", help="https://mail.corp.example/EWS/Exchange.asmx"),
        spi.Option("autodiscover", "bool", default=False, help="find the endpoint from email"),
        spi.Option("auth_type", default="ntlm", choices=("ntlm", "basic", "oauth")),
        spi.Option("username", help="DOMAIN\\user or user@corp.example (ntlm, basic)"),
        spi.Option("password", secret=True, help="password (password_env / password_file)"),
        spi.Option("client_id", help="OAuth application (client) id"),
        spi.Option("tenant_id", help="Entra ID tenant (builds the default token URL)"),
        spi.Option("client_secret", secret=True, help="OAuth client secret"),
        spi.Option("oauth_token_url", help="token endpoint (AD FS: .../adfs/oauth2/token)"),
        spi.Option("oauth_scope", help="default https://<endpoint host>/.default"),
        spi.Option(
            "access",
            default="auto",
            choices=("auto", "delegate", "impersonation"),
            help="impersonation: a service account reads `email` (ApplicationImpersonation); "
            "auto = delegate with a password, impersonation with oauth",
        ),
        spi.Option("ssl_ca_file", "path", help="PEM CA file for a private CA"),
        spi.Option("version", help='Exchange build to assume ("15.1"); unset: ask the server'),
        spi.Option("folders", "list", default=DEFAULT_FOLDERS, help="roles or path globs"),
        spi.Option("exclude_folders", "list", default=[], help="roles or path globs"),
        spi.Option("timeout", "int", default=120, help="seconds per EWS request"),
        spi.Option("fetch_batch_bytes", "int", default=8_000_000, help="bytes per batch"),
        spi.Option("connections", "int", default=2, help="parallel GetItem requests"),
        spi.Option("max_retry_wait", "int", default=60, help="longest in-place throttling wait"),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        v, self.mailbox = config.values, config.mailbox
        key = f"mailboxes.{config.mailbox}"
        self.settings = exchange_config.settings(v, key, config.base_dir)
        self.folders = [str(f) for f in exchange_config.as_list(v.get("folders"), DEFAULT_FOLDERS)]
        self.exclude = [str(f) for f in exchange_config.as_list(v.get("exclude_folders"), [])]
        self.batch_bytes = max(exchange_config.as_int(v.get("fetch_batch_bytes"), 8_000_000), 1)
        self.max_size = config.max_message_size
        self.max_retry_wait = float(exchange_config.as_int(v.get("max_retry_wait"), 60))
        self.retry_attempts, self.retry_wait = 4, 0.5  # backoff 0.5, 1, 2 s between tries
        self._session: ews.Session | None = None

    # ------------------------------------------------------------------ session
    def open_session(self) -> ews.Session:
        """The exchangelib session, made on first use. Raises UnsupportedError for Exchange
        Online, AuthError, TransientError, ConnectorError."""
        if self._session is None:
            endpoint = self.settings.endpoint
            if endpoint and ews.is_exchange_online(endpoint):
                raise _online_error(endpoint)
            session = ews.Session(self.settings)
            if ews.is_exchange_online(session.endpoint):  # found by Autodiscover
                session.close()
                raise _online_error(session.endpoint)
            self._session = session
        return self._session

    def _call(self, op: Callable[[ews.Session], T]) -> T:
        """Run op; retry transient errors with backoff, re-fetch a rejected OAuth token once."""

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            asked = float(getattr(exc, "retry_after", None) or 0.0)
            backoff = min(self.retry_wait * 2.0 ** (state.attempt_number - 1), 30.0)
            return max(backoff, asked)

        def retryable(exc: BaseException) -> bool:
            asked = getattr(exc, "retry_after", None) or 0.0
            return isinstance(exc, spi.TransientError) and asked <= self.max_retry_wait

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(retryable),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                session = self.open_session()
                try:
                    return op(session)
                except spi.AuthError:
                    if self.settings.auth_type != "oauth":
                        raise
                    log.info(
                        "ews token refused; fetching a new one",
                        extra={"action": "ews_reauth", "mailbox": self.mailbox},
                    )
                    session.reauthenticate()
                    return op(session)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """See `Connector.close`."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # ------------------------------------------------------------------ folders
    def boxes(self, s: ews.Session) -> list[_Box]:
        """Every mail folder below the message root, with its path and role."""
        dist = s.distinguished(["msgfolderroot", *_DISTINGUISHED])
        root = dist.get("msgfolderroot")
        if root is None:
            raise spi.ConnectorError(f"{self.settings.email}: no message folder root")
        roles = {dist[n].id: role for n, role in _DISTINGUISHED.items() if n in dist}
        found = s.subfolders(root.id)
        by_id = {f.id: f for f in found}
        boxes = []
        for f in found:
            if f.folder_class is not None and not (
                f.folder_class == "IPF.Note" or f.folder_class.startswith("IPF.Note.")
            ):
                continue  # calendars, contacts, tasks...
            names, node = [f.name], f
            while node.parent_id in by_id:
                node = by_id[node.parent_id]
                names.append(node.name)
            role = roles.get(f.id, Role.OTHER)
            if role is Role.OTHER and f.parent_id == root.id:
                role = Role.ARCHIVE if f.name.casefold() in _ARCHIVE_NAMES else role
            boxes.append(_Box(f.id, "/".join(reversed(names)), role))
        return boxes

    @staticmethod
    def matches(spec: str, box: _Box) -> bool:
        """Whether a `folders` entry (a role or a path glob) selects `box`."""
        role = ROLES.get(spec.lstrip("\\").casefold())
        if role is not None:
            return box.role is role
        return fnmatch.fnmatchcase(box.path.casefold(), spec.casefold())

    def choose(self, boxes: Iterable[_Box]) -> list[_Box]:
        """The boxes `folders` selects, in its order, less `exclude_folders`."""
        boxes = list(boxes)
        chosen: list[_Box] = []
        for spec in self.folders:
            found = [b for b in boxes if self.matches(spec, b) and b not in chosen]
            chosen += sorted(found, key=lambda b: b.path)
        return [b for b in chosen if not any(self.matches(x, b) for x in self.exclude)]

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        """See `Connector.list_folders`."""
        boxes = self._call(self.boxes)
        return [spi.RemoteFolder(b.id, b.path, b.role) for b in self.choose(boxes)]

    # ------------------------------------------------------------------ fetch
    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        """See `Connector.fetch_changes`."""
        cur = _Cursor.decode(cursor) if cursor else None
        return self._call(lambda s: self._fetch(s, folder, cur, max(limit, 1)))

    def _fetch(
        self, s: ews.Session, folder: spi.RemoteFolder, cur: _Cursor | None, limit: int
    ) -> spi.ChangeBatch:
        if cur is not None and cur.pending:
            return self._deliver(s, cur, list(cur.pending), limit, [], [], reset=False)
        try:
            page = s.sync(folder.id, cur.state if cur else None, limit)
        except ews.FolderGoneError as exc:
            if cur is not None and not cur.gone:
                raise spi.CursorExpiredError(f"folder {folder.name!r} no longer exists") from exc
            gone = _Cursor(last=True, gone=True).encode()  # "still gone" on the next call
            return spi.ChangeBatch(messages=[], cursor=gone, reset=cur is None)
        creates: dict[str, int] = {}
        removed: list[str] = []
        flags: dict[str, frozenset[str]] = {}
        reads: set[str] = set()
        for change in page.changes:
            iid = change.item.id
            if change.kind == "create":
                creates[iid] = change.item.size
            elif change.kind == "delete":
                creates.pop(iid, None)
                flags.pop(iid, None)
                reads.discard(iid)
                removed.append(iid)
            elif iid in creates:
                continue  # GetItem reads its flags as they are now
            elif change.kind == "update":
                flags[iid] = change.item.flags
                reads.discard(iid)
            elif iid in flags:  # a ReadFlagChange after an Update: IsRead alone moved
                seen = {"\\Seen"} if change.item.is_read else set()
                flags[iid] = flags[iid] - {"\\Seen"} | seen
            else:
                reads.add(iid)
        for got in s.get(sorted(reads), mime=False):  # the other flags, for a full set
            if got.problem is None:
                flags[got.state.id] = got.state.flags
        changes = [spi.FlagChange(i, f) for i, f in flags.items()]
        nxt = _Cursor(page.sync_state, page.last)
        return self._deliver(s, nxt, list(creates.items()), limit, removed, changes, cur is None)

    def _deliver(
        self,
        s: ews.Session,
        cur: _Cursor,
        pending: list[tuple[str, int]],
        limit: int,
        removed: list[str],
        flag_changes: list[spi.FlagChange],
        reset: bool,
    ) -> spi.ChangeBatch:
        limit_size = self.max_size
        take, total, big = 0, 0, set()
        for iid, size in pending[:limit]:
            if limit_size is not None and size > limit_size:
                big.add(iid)
                size = 16_384  # only the headers are read
            if take and total + size > self.batch_bytes:
                break
            take, total = take + 1, total + size
        taken = [i for i, _ in pending[:take]]
        fetched = self._get_parallel(s, [i for i in taken if i not in big])
        if big:
            fetched += s.get([i for i in taken if i in big], mime=False, headers_only=True)
            order = {iid: n for n, iid in enumerate(taken)}
            fetched.sort(key=lambda f: order.get(f.state.id, len(order)))
        sizes = dict(pending[:take])
        messages = []
        for got in fetched:
            if got.raw is not None:
                flags = got.state.flags
                messages.append(
                    spi.RawMessage(
                        got.state.id,
                        got.raw,
                        flags,
                        internal_date=got.state.received,
                        size=got.state.size or sizes.get(got.state.id) or None,
                        truncated=got.headers_only,
                    )
                )
            elif got.problem != "not found":  # not found: deleted since; a Delete follows
                log.warning(
                    "ews item unreadable, skipped",
                    extra={"action": "ews_item_skipped", "mailbox": self.mailbox,
                           "item": got.state.id, "problem": got.problem},
                )  # fmt: skip
        rest = tuple(pending[take:])
        nxt = _Cursor(cur.state, cur.last, rest)
        counts = {"messages": len(messages), "removed": len(removed), "pending": len(rest)}
        log.debug(
            "ews batch",
            extra={"action": "ews_fetch", "mailbox": self.mailbox, **counts},
        )
        return spi.ChangeBatch(
            messages=messages,
            cursor=nxt.encode(),
            more=bool(rest) or not cur.last,
            removed=removed,
            flag_changes=flag_changes,
            reset=reset,
        )

    def _get_parallel(self, s: ews.Session, ids: list[str]) -> list[soap.Fetched]:
        workers = min(self.settings.connections, -(-len(ids) // soap.CHUNK))
        if workers <= 1:
            return s.get(ids, mime=True)
        parts = [ids[i : i + soap.CHUNK] for i in range(0, len(ids), soap.CHUNK)]
        with ThreadPoolExecutor(workers, thread_name_prefix="ews-get") as pool:
            results = list(pool.map(lambda part: s.get(part, mime=True), parts))
        return [f for part in results for f in part]

    # ------------------------------------------------------------------ check
    def check(self) -> Sequence[spi.CheckStep]:
        """See `Connector.check`."""
        return diagnose(self)


def _online_error(endpoint: str) -> spi.UnsupportedError:
    host = urlsplit(endpoint).hostname
    return spi.UnsupportedError(
        f"{host} is Exchange Online, where Microsoft blocks EWS from 2026-10-01 and shuts it "
        'off on 2027-04-01: use connector = "graph" for Microsoft 365 mailboxes'
    )
