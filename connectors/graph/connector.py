"""The Microsoft 365 connector: Exchange Online through Microsoft Graph (httpx + msal).

Exchange Online blocks EWS from 2026-10-01 and turns it off on 2027-04-01; Graph is the way
in (`exchange`/EWS stays for on-premises servers). How one folder syncs (contract in
`mailmanager.spi`):

- Auth: app-only (client credentials with a secret or a certificate, application permission
  Mail.Read with admin consent) or delegated (device code, `mailmanager auth MAILBOX`); see
  `connectors.graph_auth`. HTTP rules (immutable ids, throttling, 401 renewal): see
  `connectors.graph_http`.
- Changes come from the per-folder delta query,
  `GET /users/{id}/mailFolders/{id}/messages/delta` with a minimal `$select`
  (https://learn.microsoft.com/graph/delta-query-messages): pages linked by
  `@odata.nextLink`, the round ending on an `@odata.deltaLink` that starts the next one.
  The cursor is that link (Graph encodes its state, `$select` included, in the link): a
  nextLink while a round is under way, so a crash resumes mid-paging; the deltaLink once
  the folder is caught up. We ask for `odata.maxpagesize` = min(limit, page_size), one page
  per call; should a server send more than `limit` anyway, the cursor keeps the same link
  plus short hashes of the entries already handed over.
- A delta item is a message added to or changed in the folder; `@removed` entries (deleted
  or moved out) become `removed`. Delta does not say whether an item is new to the folder
  or only changed (read, flagged): a message moved in keeps its immutable id and dates, so
  telling them apart would risk losing it. Every item is therefore fetched whole through
  `GET /users/{id}/messages/{id}/$value`, at most `concurrency` (<= 4) at a time, and
  re-delivered with its current flags (at-least-once; the core's upsert is idempotent).
- Flags: isRead -> \\Seen, flag.flagStatus "flagged" -> \\Flagged, isDraft -> \\Draft, and
  PidTagLastVerbExecuted (MS-OXOMSG 2.2.1.4: 102/103 reply, 104 forward), read through
  `$expand=singleValueExtendedProperties` -> \\Answered / $Forwarded. Outlook categories
  become labels.
- `conversationId` is not used. It changes for some external replies, as reported on
  https://learn.microsoft.com/en-us/answers/questions/5883983/microsoft-graph-webhook-conversationid-changes-whe
  And a message without conversation-index tracking gets as its id the MD5 of its
  conversation topic (the subject without its prefixes), per [MS-OXOMSG] 2.2.1.2:
  https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxomsg/f8e4a5fa-cb73-4eca-b174-72e1fda821a6
  So unrelated mail with the same subject shares one. As a `thread_hint` (unioned by the
  core with Message-ID threading) it would merge threads.
- Expired state: 410 Gone, or the codes syncStateNotFound / syncStateInvalid /
  resyncRequired -> `spi.CursorExpiredError`; the core rescans the folder and keeps links.
- A `$value` that answers 404 after delta listed the message: we ask for the message; gone
  or now in another folder -> reported as removed (the next delta would say so too); still
  in this folder -> `TransientError`, the cursor does not move and the next run retries.
  Any other 4xx on one message (a malformed id) skips it with a warning. An entry without
  an id is skipped with a warning. A message without internetMessageId is fetched like any
  other (the core gives it a synthetic id).
- Size limit: Graph's message resource has no size property; the MAPI PidTagMessageSize
  (0x0E08) is read through the same `$expand=singleValueExtendedProperties` on the delta
  query when `ConnectorConfig.max_message_size` is set. A message over it is not downloaded:
  its `internetMessageHeaders` (`$select`, https://learn.microsoft.com/graph/api/resources/
  internetmessageheader) become its header block, handed over `truncated` with that size.
  PidTagMessageSize counts the item's MAPI properties, not its MIME bytes: an estimate, as
  Gmail's sizeEstimate. A delta link made before the limit was set carries no size (Graph
  keeps the `$expand` of the round's first request): such messages come whole and the core
  cuts them at parse time, until the next full scan.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

from connectors.graph import auth as graph_auth
from connectors.graph import check as graph_check
from connectors.graph import folders as graph_folders
from connectors.graph.http import GraphClient, GraphError
from connectors.graph.items import LAST_VERB, SIZE, flags_of, header_block, received, size_of
from mailmanager import spi

log = logging.getLogger(__name__)

_SELECT = "id,internetMessageId,receivedDateTime,isRead,isDraft,flag,categories,parentFolderId"
_EXPIRED_CODES = {"syncstatenotfound", "syncstateinvalid", "resyncrequired"}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class _Cursor:
    link: str
    done: tuple[str, ...] = ()  # short hashes of entries of `link`'s page already handed over

    def encode(self) -> str:
        data: dict[str, Any] = {"v": 1, "l": self.link}
        if self.done:
            data["d"] = list(self.done)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        """Raises CursorExpiredError when the text is not a cursor of ours."""
        try:
            data = json.loads(text)
            if data.get("v") != 1 or not isinstance(data["l"], str):
                raise ValueError("not a Graph cursor")
            return cls(data["l"], tuple(str(h) for h in data.get("d", [])))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise spi.CursorExpiredError(f"unreadable Graph cursor: {exc}") from exc


def _short(entry_id: str, removed: bool) -> str:
    return hashlib.blake2b(
        f"{entry_id}{'-' if removed else '+'}".encode(), digest_size=6
    ).hexdigest()


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class GraphConnector:
    """A Microsoft 365 mailbox through Microsoft Graph. See `spi.Connector`."""

    name: ClassVar[str] = "graph"
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option(
            "auth",
            default="app",
            choices=("app", "device"),
            help="app: client credentials (Mail.Read application permission, admin consent); "
            "device: a user signs in once with a device code (`mailmanager auth MAILBOX`)",
        ),
        spi.Option(
            "tenant_id", help="directory (tenant) id or domain; device default: organizations"
        ),
        spi.Option(
            "client_id", required=True, help="application (client) id of the app registration"
        ),
        spi.Option("client_secret", secret=True, help="client secret value (auth = app)"),
        spi.Option("certificate_file", "path", help="PEM with the private key (and certificate)"),
        spi.Option("certificate_thumbprint", help="SHA-1 thumbprint (hex); default: from the PEM"),
        spi.Option("certificate_password", secret=True, help="password of an encrypted key"),
        spi.Option("user", help="mailbox UPN or object id (auth = app); device default: me"),
        spi.Option(
            "folders",
            "list",
            default=graph_folders.DEFAULT_FOLDERS,
            help="well-known names (inbox, sentitems, archive, drafts, deleteditems, "
            "junkemail) or display-name paths with wildcards (Clients/*)",
        ),
        spi.Option("exclude_folders", "list", default=[], help="same forms, left out"),
        spi.Option("authority_url", default="https://login.microsoftonline.com"),
        spi.Option("graph_url", default="https://graph.microsoft.com/v1.0"),
        spi.Option("ssl_ca_file", "path", help="PEM CA file for a private CA or TLS proxy"),
        spi.Option("page_size", "int", default=500, help="delta page size (1-1000)"),
        spi.Option("concurrency", "int", default=4, help="parallel downloads (1-4)"),
        spi.Option("timeout", "int", default=60, help="HTTP timeout in seconds"),
        spi.Option(
            "max_retry_wait",
            "int",
            default=60,
            help="longest Retry-After (s) waited in place; longer ones end the sync run",
        ),
        spi.Option(
            "answered_flag",
            "bool",
            default=True,
            help="read PidTagLastVerbExecuted to report \\Answered",
        ),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        v, self.mailbox = config.values, config.mailbox
        key = f"mailboxes.{config.mailbox}"
        mode = str(v.get("auth") or "app")
        if mode not in ("app", "device"):
            raise spi.ConfigError(f"{key}.auth", f"unknown value {mode!r}", 'use "app" or "device"')
        client_id = str(v.get("client_id") or "")
        if not client_id:
            raise spi.ConfigError(f"{key}.client_id", "missing", "the app registration's client id")
        tenant = str(v.get("tenant_id") or ("organizations" if mode == "device" else ""))
        self.user = str(v.get("user") or ("me" if mode == "device" else ""))
        for opt, value in (("tenant_id", tenant), ("user", self.user)):
            if not value:
                raise spi.ConfigError(f"{key}.{opt}", "missing", f'required with auth = "{mode}"')
        authority_url = str(v.get("authority_url") or "https://login.microsoftonline.com")
        self.graph_url = str(v.get("graph_url") or "https://graph.microsoft.com/v1.0").rstrip("/")
        if not authority_url.startswith("https://"):
            raise spi.ConfigError(f"{key}.authority_url", "must be https", "msal requires it")
        if not self.graph_url.startswith("https://") and _host(self.graph_url) not in _LOOPBACK:
            raise spi.ConfigError(f"{key}.graph_url", "must be https", "tokens would go in clear")
        base = config.base_dir
        ca = v.get("ssl_ca_file")
        verify: str | bool = os.path.join(base, str(ca)) if ca else True
        credential = self._credential(v, key, base) if mode == "app" else None
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.graph_url))
        scopes = ("Mail.Read",) if self.user == "me" else ("Mail.Read", "Mail.Read.Shared")
        timeout = float(str(v.get("timeout") or 60))
        settings = graph_auth.AuthSettings(
            mode, f"{authority_url.rstrip('/')}/{tenant}", client_id, origin, credential,
            scopes, verify, timeout,
        )  # fmt: skip
        self.tokens = graph_auth.TokenSource(settings, config.token_store, config.mailbox)
        self.user_path = "/me" if self.user == "me" else f"/users/{quote(self.user, safe='@')}"
        max_wait = float(str(v.get("max_retry_wait") or 60))
        self.slot_key = self.user if self.user != "me" else f"me:{config.mailbox}"
        self.client = GraphClient(
            self.graph_url, self.tokens, self.slot_key, verify, timeout, max_wait
        )
        self.folders = [str(f) for f in _as_list(v.get("folders"), graph_folders.DEFAULT_FOLDERS)]
        self.exclude = [str(f) for f in _as_list(v.get("exclude_folders"), [])]
        self.page_size = min(max(int(str(v.get("page_size") or 500)), 1), 1000)
        self.concurrency = min(max(int(str(v.get("concurrency") or 4)), 1), 4)
        self.answered = v.get("answered_flag") is not False
        self.max_size = config.max_message_size
        self._pool: cf.ThreadPoolExecutor | None = None
        self._page: tuple[str, dict[str, Any]] | None = None  # a page not yet fully handed over
        self._lock = threading.Lock()

    @staticmethod
    def _credential(v: Mapping[str, object], key: str, base: str) -> str | dict[str, str]:
        if v.get("client_secret"):
            return str(v["client_secret"])
        cert = v.get("certificate_file")
        if not cert:
            raise spi.ConfigError(
                f"{key}.client_secret",
                "no credentials",
                "set client_secret_env / client_secret_file, or certificate_file",
            )
        path = os.path.join(base, str(cert))
        try:
            pem = open(path, "rb").read()  # noqa: SIM115 - small file, read once
        except OSError as exc:
            raise spi.ConfigError(f"{key}.certificate_file", f"unreadable: {exc}") from exc
        thumb = str(v.get("certificate_thumbprint") or "") or graph_check.thumbprint(pem)
        if not thumb:
            raise spi.ConfigError(
                f"{key}.certificate_thumbprint",
                "missing and the PEM holds no certificate",
                "copy the thumbprint shown under the app's Certificates & secrets",
            )
        cred = {"private_key": pem.decode(), "thumbprint": thumb.replace(":", "").upper()}
        if v.get("certificate_password"):
            cred["passphrase"] = str(v["certificate_password"])
        return cred

    # ---------------------------------------------------------------------- folders
    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        """See `Connector.list_folders`."""
        chosen = graph_folders.choose(self.client, self.user_path, self.folders, self.exclude)
        return [spi.RemoteFolder(f.id, f.path, f.role) for f in chosen]

    # ------------------------------------------------------------------------ fetch
    def delta_link(self, folder_id: str) -> str:
        """The first request of a delta round on a folder: `$select` (and `$expand`) go on
        this one only; Graph carries them inside the next and delta links."""
        query = {"$select": _SELECT}
        props = [p for p, on in ((LAST_VERB, self.answered), (SIZE, self.max_size)) if on]
        if props:
            wanted = " or ".join(f"id eq '{p}'" for p in props)
            query["$expand"] = f"singleValueExtendedProperties($filter={wanted})"
        path = f"{self.user_path}/mailFolders/{quote(folder_id, safe='')}/messages/delta"
        return f"{self.graph_url}{path}?{urlencode(query, quote_via=quote, safe='$,()=')}"

    def _read_page(self, link: str, size: int, first: bool) -> dict[str, Any]:
        with self._lock:
            if self._page is not None and self._page[0] == link:
                return self._page[1]
        try:
            return self.client.get_json(link, headers={"Prefer": f"odata.maxpagesize={size}"})
        except GraphError as exc:
            if exc.status == 410 or exc.code.lower() in _EXPIRED_CODES:
                raise spi.CursorExpiredError(f"Graph delta state expired: {exc}") from exc
            if exc.status == 404 and exc.code == "ErrorItemNotFound" and not first:
                raise spi.CursorExpiredError(f"folder gone: {exc}") from exc
            if exc.code == "ForeignLink":
                raise spi.CursorExpiredError("cursor from another graph_url") from exc
            raise

    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        """See `Connector.fetch_changes`."""
        limit = max(limit, 1)
        cur = _Cursor.decode(cursor) if cursor else _Cursor(self.delta_link(folder.id))
        try:
            page = self._read_page(cur.link, min(limit, self.page_size), cursor is None)
        except GraphError as exc:
            if cursor is None and exc.status == 404 and exc.code == "ErrorItemNotFound":
                # Deleted since list_folders: an empty full scan drops its locations.
                return spi.ChangeBatch(messages=[], cursor=cur.encode(), reset=True)
            raise
        entries = [e for e in page.get("value", []) if isinstance(e, dict)]
        prior, done = set(cur.done), set(cur.done)
        taken: dict[str, dict[str, Any]] = {}
        removed: dict[str, bool] = {}
        finished = True
        for entry in entries:
            pid, gone = entry.get("id"), "@removed" in entry
            if not isinstance(pid, str) or not pid:
                log.warning("graph entry without id skipped", extra={"action": "graph_bad_entry"})
                continue
            mark = _short(pid, gone)
            if mark in prior:  # handed over by an earlier call on this same page
                continue
            if not gone and pid not in taken and len(taken) >= limit:
                finished = False
                break
            done.add(mark)
            if gone:
                taken.pop(pid, None)
                removed[pid] = True
            else:
                removed.pop(pid, None)
                taken[pid] = entry
        limit_size = self.max_size
        big = {p for p, e in taken.items() if limit_size and (size_of(e) or 0) > limit_size}
        raws = self._download(list(taken), folder.id, big)
        messages: list[spi.RawMessage] = []
        for pid, raw in zip(list(taken), raws, strict=True):
            if raw is None:
                removed[pid] = True
            elif isinstance(raw, bytes):
                item = taken[pid]
                categories = [c for c in item.get("categories") or [] if isinstance(c, str)]
                messages.append(
                    spi.RawMessage(
                        provider_id=pid,
                        raw=raw,
                        flags=flags_of(item),
                        internal_date=received(item),
                        labels=frozenset(categories),
                        size=size_of(item),
                        truncated=pid in big,
                    )
                )
        nxt, delta = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
        if finished and not isinstance(nxt, str) and not isinstance(delta, str):
            raise spi.TransientError("Graph delta page without nextLink or deltaLink")
        with self._lock:
            self._page = None if finished else (cur.link, page)
        if finished:
            new = _Cursor(str(nxt if isinstance(nxt, str) else delta))
        else:
            new = _Cursor(cur.link, tuple(sorted(done)))
        more = not finished or isinstance(nxt, str)
        log.debug(
            "graph batch",
            extra={"action": "graph_fetch", "mailbox": self.mailbox, "messages": len(messages),
                   "removed": len(removed), "more": more},
        )  # fmt: skip
        return spi.ChangeBatch(
            messages=messages,
            cursor=new.encode(),
            more=more,
            removed=list(removed),
            reset=cursor is None,
        )

    def _download(
        self, ids: list[str], folder_id: str, big: set[str] | frozenset[str] = frozenset()
    ) -> list[bytes | object | None]:
        """The MIME of each message in `ids` order (see `_raw`); the header block only of
        those in `big`, over the size limit."""
        if not ids:
            return []
        with self._lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(self.concurrency, "graph-fetch")
            pool = self._pool
        # One task per worker pulling ids off a shared iterator (a future per message costs
        # more CPU than the download's own Python work); results keep the order of `ids`.
        # The first failure in `ids` order is raised, as `pool.map` would; workers stop
        # taking new ids once one has failed.
        results: list[bytes | object | None] = [None] * len(ids)
        errors: dict[int, BaseException] = {}
        todo = iter(enumerate(ids))
        lock = threading.Lock()

        def work() -> None:
            while not errors:
                with lock:
                    nxt = next(todo, None)
                if nxt is None:
                    return
                index, pid = nxt
                try:
                    results[index] = (self._head if pid in big else self._raw)(pid, folder_id)
                except BaseException as exc:  # re-raised below, in `ids` order
                    errors[index] = exc
                    return

        workers = min(self.concurrency, len(ids))
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
        if errors:
            raise errors[min(errors)]
        return results

    def _head(self, pid: str, folder_id: str) -> bytes | object | None:
        """The header block of one message (its `internetMessageHeaders`); else as `_raw`."""
        path = f"{self.user_path}/messages/{quote(pid, safe='')}"
        try:
            got = self.client.get_json(path, params={"$select": "internetMessageHeaders"})
            return header_block(got.get("internetMessageHeaders"))
        except GraphError as exc:
            return self._unreadable(exc, path, folder_id)

    def _raw(self, pid: str, folder_id: str) -> bytes | object | None:
        """The MIME of one message; None when it left the folder; _SKIP when unreadable."""
        path = f"{self.user_path}/messages/{quote(pid, safe='')}"
        try:
            return self.client.get(f"{path}/$value").content
        except GraphError as exc:
            return self._unreadable(exc, path, folder_id)

    def _unreadable(self, exc: GraphError, path: str, folder_id: str) -> object | None:
        """After a failed read of the message at `path`: None when it left the folder, _SKIP
        when unreadable; raises TransientError when it is there but not readable yet."""
        if exc.status != 404:
            log.warning(
                "graph message skipped",
                extra={"action": "graph_item_skipped", "status": exc.status, "code": exc.code},
            )
            return _SKIP
        try:
            meta = self.client.get_json(path, params={"$select": "id,parentFolderId"})
        except GraphError as again:
            if again.status == 404:
                return None
            raise
        if meta.get("parentFolderId") != folder_id:
            return None
        raise spi.TransientError(
            "Graph listed a message whose content is not readable yet; retrying later",
            retry_after=60,
        )

    # ----------------------------------------------------------------------- extras
    def check(self) -> Sequence[spi.CheckStep]:
        """See `Connector.check`."""
        return graph_check.run(self)

    def authorize(self, say: Callable[[str], None]) -> None:
        """See `spi.Authorizable.authorize`. Device mode: sign in with a device code and save
        the tokens; app mode: prove the credentials by getting a token.

        Raises GraphAuthError (refused, declined, expired), TransientError.
        """
        if self.tokens.settings.mode == "app":
            self.tokens.token()
            say("app-only access: no sign-in needed; a token was obtained with these credentials")
            return
        who = self.tokens.device_flow(say)
        where = "in the token store" if self.tokens.store is not None else "in memory only"
        say(f"signed in as {who or 'the user'}; tokens saved {where}")

    def close(self) -> None:
        """See `Connector.close`."""
        with self._lock:
            pool, self._pool, self._page = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.client.close()


_SKIP = object()


def _as_list(value: object, default: list[str]) -> list[object]:
    if value is None:
        return list(default)
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list | tuple) else list(default)
