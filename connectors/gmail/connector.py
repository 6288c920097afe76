"""The Gmail connector: reads a Gmail or Workspace mailbox through the Gmail API, read-only.

Access (https://developers.google.com/gmail/api/auth/scopes), one of:
- a Workspace service account with domain-wide delegation (`service_account_file` +
  `delegated_user`): one key for a whole domain's mailboxes, no consent screen;
- per-user OAuth (`client_secret_file`): `mailmanager auth MAILBOX` obtains a refresh token
  (see `connectors.gmail_auth`) and the core keeps it encrypted in its token store.
The only scope asked is `gmail.readonly`, or `gmail.metadata` with `privacy = "metadata"`:
then messages come as `format=metadata` and we hand the core their header block alone
(RFC 5322 header fields, an empty body). Nothing is ever modified at Google.

Folders: Gmail has labels, not folders; a message with three labels is one message. By
default we expose one folder, "All Mail" (id `ALL`, role all), holding every message
except those carrying an `exclude_labels` label (SPAM, TRASH, DRAFT, CATEGORY_PROMOTIONS,
CATEGORY_SOCIAL by default). The labels travel on each message (`RawMessage.labels`: system
ids such as INBOX and SENT, user labels by name) and map to flags as Gmail's IMAP does:
no UNREAD = \\Seen, STARRED = \\Flagged, DRAFT = \\Draft. `folders` may list labels instead
(system ids or user label names, globs allowed), each then a folder of its own with a role
(INBOX inbox, SENT sent, DRAFT drafts, SPAM junk, TRASH trash, user labels other), plus the
virtual `ARCHIVE` (neither INBOX nor SENT). A message in INBOX and SENT then appears in both,
as on IMAP.

Full scan (cursor None): read `users.getProfile().historyId` first, so nothing that arrives
during a long scan is missed (the Gmail "Synchronize clients" guide), then page through
`messages.list` (newest first, one page of at most `limit` per call; the page token is in
the cursor) and fetch each page with batched `messages.get(format=raw)`.
Incremental: `history.list(startHistoryId)` with messageAdded, messageDeleted, labelAdded
and labelRemoved, reduced to one action per message: fetch (it entered the folder), remove
(deleted, or left the folder), or new flags (UNREAD/STARRED changed). The cursor stops after
the last history record applied, so a `limit` cut resumes exactly there; once every page is
read it becomes the response's `historyId`. History ids increase but are not contiguous.
A 404 on history.list means that history has expired (usually after a week, sometimes
hours): `spi.CursorExpiredError`, and the core rescans. A message deleted between history
and get is reported removed. A raw that is not base64url is handed over undecoded so the
core quarantines it (visible, not lost).

Size limit: Gmail takes at most `GMAIL_MAX_MESSAGE` bytes per message, so under the
default `[sync] max_message_size` (50 MiB) every message comes whole. With a smaller limit
each page is first read with `format=minimal` (its `sizeEstimate`), then a message over
the limit comes as `format=metadata`: its header block, handed over `truncated` with that
size, never downloaded whole. (One more batched get per page, only then.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.gmail import api
from connectors.gmail import auth as gmail_auth
from connectors.gmail import changes as ch
from connectors.gmail import check as gmail_check
from mailmanager import spi

log = logging.getLogger(__name__)

# Gmail receives messages of at most 50 MB (https://support.google.com/mail/answer/6584).
GMAIL_MAX_MESSAGE = 50 * 1024 * 1024
_TRUNCATED = "_mailmanager_truncated"  # marks a format=metadata answer of an oversize message


class GmailConnector:
    """A Gmail or Google Workspace mailbox through the Gmail API. See `spi.Connector`."""

    name: ClassVar[str] = "gmail"
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option(
            "service_account",
            secret=True,
            help="service-account JSON key with domain-wide delegation "
            "(service_account_file = path, mode 600)",
        ),
        spi.Option("delegated_user", help="with a service account: the address to read"),
        spi.Option(
            "client_secret",
            secret=True,
            help="OAuth client JSON (Desktop app) for per-user consent "
            "(client_secret_file = path, mode 600); then run `mailmanager auth`",
        ),
        spi.Option(
            "refresh_token",
            secret=True,
            help="a refresh token; default: the one `mailmanager auth` stored",
        ),
        spi.Option(
            "privacy",
            default="full",
            choices=("full", "metadata"),
            help='"metadata": headers only (gmail.metadata scope), no bodies',
        ),
        spi.Option(
            "folders",
            "list",
            default=["ALL"],
            help="ALL (one folder), or labels: INBOX, SENT, ARCHIVE, user label names or globs",
        ),
        spi.Option(
            "exclude_labels",
            "list",
            default=ch.DEFAULT_EXCLUDE,
            help="messages carrying any of these labels are skipped",
        ),
        spi.Option(
            "auth_flow",
            default="loopback",
            choices=("loopback", "device"),
            help="consent flow of `mailmanager auth`",
        ),
        spi.Option(
            "auth_port", "int", default=0, help="loopback port for consent (0: any free port)"
        ),
        spi.Option("batch_size", "int", default=50, help="gets per batch request (max 100)"),
        spi.Option("timeout", "int", default=60, help="HTTP timeout in seconds"),
        spi.Option("max_retries", "int", default=4, help="retries of a throttled or failed call"),
        spi.Option(
            "max_retry_wait",
            "int",
            default=60,
            help="longest Retry-After slept through; longer ends the run",
        ),
        spi.Option("api_endpoint", default=api.DEFAULT_ENDPOINT, help="Gmail API base URL"),
        spi.Option(
            "device_auth_uri",
            default="https://oauth2.googleapis.com/device/code",
            help="device-flow endpoint (auth_flow = device)",
        ),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        v, self.mailbox = config.values, config.mailbox
        self.key = key = f"mailboxes.{config.mailbox}"
        self.store = config.token_store
        self._memory: dict[str, str] = {}  # tokens when the core gives no store (tests)
        self.service_account = str(v.get("service_account") or "")
        self.client_secret = str(v.get("client_secret") or "")
        self.delegated_user = str(v.get("delegated_user") or "")
        self.fixed_refresh = str(v.get("refresh_token") or "")
        if bool(self.service_account) == bool(self.client_secret):
            raise spi.ConfigError(
                f"{key}.service_account_file",
                "give exactly one of service_account_file and client_secret_file",
                "a Workspace service account with domain-wide delegation, or an OAuth client",
            )
        if self.service_account and "@" not in self.delegated_user:
            raise spi.ConfigError(
                f"{key}.delegated_user", "missing", "the address of the mailbox to read"
            )
        self.privacy = str(v.get("privacy") or "full")
        if self.privacy not in ("full", "metadata"):
            raise spi.ConfigError(
                f"{key}.privacy", f"unknown {self.privacy!r}", '"full" or "metadata"'
            )
        self.scope = api.METADATA if self.privacy == "metadata" else api.READONLY
        self.max_size = config.max_message_size
        self.endpoint = str(v.get("api_endpoint") or api.DEFAULT_ENDPOINT)
        if not (self.endpoint.startswith("https://") or gmail_auth.is_loopback(self.endpoint)):
            raise spi.ConfigError(
                f"{key}.api_endpoint", "tokens would travel in clear", "use https://"
            )
        self.folders = [str(f) for f in _as_list(v.get("folders"), ["ALL"])]
        self.exclude = [str(x) for x in _as_list(v.get("exclude_labels"), ch.DEFAULT_EXCLUDE)]
        self.auth_flow = str(v.get("auth_flow") or "loopback")
        self.auth_port = int(str(v.get("auth_port") or 0))
        self.device_uri = str(
            v.get("device_auth_uri") or "https://oauth2.googleapis.com/device/code"
        )
        number = {o.name: o.default for o in self.options if o.kind == "int"}
        number.update({k: v[k] for k in number if v.get(k) is not None})
        self.settings = api.ApiSettings(
            timeout=float(str(number["timeout"])),
            attempts=int(str(number["max_retries"])) + 1,
            max_wait=float(str(number["max_retry_wait"])),
            batch_size=int(str(number["batch_size"])),
        )
        self._api: api.GmailApi | None = None
        self._labels: dict[str, str] | None = None  # label id -> name
        self._refresh_seen = ""

    # ------------------------------------------------------------------ credentials
    def _fix(self, code: str) -> str:
        return gmail_check.fix_for(self, code)

    def _load(self, key: str) -> str | None:
        return self.store.load(key) if self.store is not None else self._memory.get(key)

    def _save(self, key: str, value: str) -> None:
        if self.store is not None:
            self.store.save(key, value)
        else:
            self._memory[key] = value

    def _credentials(self) -> gmail_auth.Credentials:
        """Raises `spi.ConfigError` (unreadable JSON), `spi.AuthError` (no refresh token)."""
        if self.service_account:
            return gmail_auth.service_account_credentials(
                self.service_account,
                self.delegated_user,
                [self.scope],
                f"{self.key}.service_account_file",
            )
        client = gmail_auth.parse_client(self.client_secret, f"{self.key}.client_secret_file")
        token = self.fixed_refresh or self._load("refresh_token")
        if not token:
            raise spi.AuthError(
                f"no refresh token for mailbox {self.mailbox!r}: run `mailmanager auth "
                f"{self.mailbox}` once (or set refresh_token_file)"
            )
        self._refresh_seen = token
        return gmail_auth.user_credentials_for(client, token, [self.scope])

    def new_client(self, settings: api.ApiSettings | None = None) -> api.GmailApi:
        """A fresh API client. Raises `spi.ConfigError`, `spi.AuthError` (see `_credentials`)."""
        creds = self._credentials()
        return api.GmailApi(creds, self.endpoint, settings or self.settings, auth_hint=self._fix)

    def _client(self) -> api.GmailApi:
        if self._api is None:
            self._api = self.new_client()
        return self._api

    def _call(self, what: str, build: Callable[[Any], Any]) -> dict[str, Any]:
        client = self._client()
        try:
            return client.call(what, build)
        finally:
            self._keep_rotated(client)

    def _keep_rotated(self, client: api.GmailApi) -> None:
        """Google may hand out a new refresh token on refresh: keep the newest."""
        new = getattr(client.credentials, "refresh_token", None)
        if new and new != self._refresh_seen and not self.fixed_refresh:
            self._save("refresh_token", new)
            self._refresh_seen = new

    def close(self) -> None:
        """See `Connector.close`."""
        if self._api is not None:
            self._api.close()
        self._api, self._labels = None, None

    # ---------------------------------------------------------------------- folders
    def _label_names(self, refresh: bool = False) -> dict[str, str]:
        if self._labels is None or refresh:
            answer = self._call("labels.list", lambda u: u.labels().list(userId="me"))
            self._labels = {str(x["id"]): str(x["name"]) for x in answer.get("labels", [])}
        return self._labels

    def _views(self, refresh: bool = False) -> list[ch.View]:
        return ch.views(self.folders, self.exclude, self._label_names(refresh))

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        """See `Connector.list_folders`."""
        return [v.folder for v in self._views(refresh=True)]

    def _view(self, folder: spi.RemoteFolder) -> ch.View | None:
        for refresh in (False, True):
            for view in self._views(refresh):
                if view.folder.id == folder.id:
                    return view
        return None

    # ------------------------------------------------------------------------ fetch
    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        """See `Connector.fetch_changes`."""
        cur = ch.Cursor.decode(cursor) if cursor else None
        view = self._view(folder)
        if view is None:  # the label was deleted at Google
            if cur is not None:
                raise spi.CursorExpiredError(f"label {folder.id!r} no longer exists")
            return spi.ChangeBatch(messages=[], cursor=ch.Cursor(0).encode(), reset=True)
        limit = max(limit, 1)
        if cur is None:
            profile = self._call("users.getProfile", lambda u: u.getProfile(userId="me"))
            return self._scan(
                view, ch.Cursor(int(profile["historyId"]), scanning=True), limit, True
            )
        if cur.scanning:
            return self._scan(view, cur, limit, False)
        return self._changes(view, cur, limit)

    def _scan(self, view: ch.View, cur: ch.Cursor, limit: int, reset: bool) -> spi.ChangeBatch:
        params = view.list_params(limit, cur.page)
        try:
            page = self._call("messages.list", lambda u: u.messages().list(**params))
        except api.RequestError as exc:
            if cur.page and exc.status in (400, 404):  # the page token went stale
                raise spi.CursorExpiredError(f"Gmail refused the page token: {exc}") from exc
            raise
        ids = [str(m["id"]) for m in page.get("messages", [])]
        got, _ = self._get(ids)  # gone meanwhile: nothing to report during a scan
        messages = [
            self._raw(got[i]) for i in ids if i in got and view.holds(got[i].get("labelIds", []))
        ]
        token = page.get("nextPageToken")
        nxt = ch.Cursor(cur.history, str(token) if token else None, scanning=bool(token))
        log.debug(
            "gmail scan page",
            extra={"action": "gmail_scan", "mailbox": self.mailbox, "messages": len(messages)},
        )
        return spi.ChangeBatch(
            messages=messages, cursor=nxt.encode(), more=bool(token), reset=reset
        )

    def _changes(self, view: ch.View, cur: ch.Cursor, limit: int) -> spi.ChangeBatch:
        history = ch.History(view, limit)
        last, newest, page, cut = cur.history, cur.history, None, False
        while True:
            answer = self._history_page(cur.history, page)
            for record in answer.get("history", []):
                if not history.take(record):
                    cut = True
                    break
                last = int(record["id"])
            page = answer.get("nextPageToken")
            if cut or not page:
                newest = int(answer.get("historyId", last))
                break
        got, gone = self._get(history.to_fetch())
        messages, removed = [], history.removed()
        for mid, data in got.items():
            if view.holds(data.get("labelIds", [])):
                messages.append(self._raw(data))
            else:  # its labels moved on since that history record
                removed.append(mid)
        return spi.ChangeBatch(
            messages=messages,
            cursor=ch.Cursor(last if cut else max(newest, last)).encode(),
            more=cut,
            removed=removed + sorted(gone),
            flag_changes=history.flag_changes(),
        )

    def _history_page(self, start: int, page: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"userId": "me", "startHistoryId": str(start), "pageToken": page}
        params.update(historyTypes=ch.HISTORY_TYPES, maxResults=500)
        try:
            return self._call("history.list", lambda u: u.history().list(**params))
        except api.NotFoundError as exc:
            raise spi.CursorExpiredError(
                f"Gmail history from historyId {start} has expired: full rescan"
            ) from exc

    def _get(self, ids: Sequence[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
        if not ids:
            return {}, set()
        client = self._client()
        try:
            if self.privacy == "metadata":
                return client.get_many(ids, "metadata")
            limit = self.max_size
            if limit is None or limit >= GMAIL_MAX_MESSAGE:
                return client.get_many(ids, "raw")
            sizes, gone = client.get_many(ids, "minimal")  # see the module docstring
            big = [i for i in ids if int(sizes.get(i, {}).get("sizeEstimate", 0)) > limit]
            got, gone_too = client.get_many([i for i in ids if i not in big], "raw")
            heads, gone_last = client.get_many(big, "metadata") if big else ({}, set())
            for i, data in heads.items():
                got[i] = {**data, _TRUNCATED: True}
            return got, gone | gone_too | gone_last
        finally:
            self._keep_rotated(client)

    def _raw(self, data: Mapping[str, Any]) -> spi.RawMessage:
        labels = [str(x) for x in data.get("labelIds", [])]
        names = self._labels or {}
        truncated = bool(data.get(_TRUNCATED))
        if self.privacy == "metadata" or truncated:
            raw = ch.header_block(data.get("payload", {}))
        else:
            text = str(data.get("raw", ""))
            decoded = ch.decode_raw(text)
            if decoded is None:
                log.warning(
                    "gmail raw is not base64url; handed over undecoded (quarantine)",
                    extra={
                        "action": "gmail_malformed",
                        "mailbox": self.mailbox,
                        "id": data.get("id"),
                    },
                )
            raw = decoded if decoded is not None else text.encode()
        ms = data.get("internalDate")
        return spi.RawMessage(
            provider_id=str(data["id"]),
            raw=raw,
            flags=ch.flags_of(labels),
            thread_hint=str(data["threadId"]) if data.get("threadId") else None,
            internal_date=datetime.fromtimestamp(int(ms) / 1000, UTC) if ms else None,
            labels=frozenset(names.get(x, x) for x in labels),
            size=int(data["sizeEstimate"]) if data.get("sizeEstimate") else None,
            truncated=truncated,
        )

    # ------------------------------------------------------------------ diagnosis
    def check(self) -> Sequence[spi.CheckStep]:
        """See `Connector.check`: credentials, token, profile, scope, folders."""
        return gmail_check.run_check(self)

    def authorize(self, say: Callable[[str], None]) -> None:
        """See `spi.Authorizable`: per-user consent, refresh token saved in the token store."""
        if self.service_account:
            say(
                f"mailbox {self.mailbox!r} uses a service account: no consent to give. "
                f"{self._fix('unauthorized_client').capitalize()}."
            )
            return
        client = gmail_auth.parse_client(self.client_secret, f"{self.key}.client_secret_file")
        if self.auth_flow == "device":
            grant = gmail_auth.device_flow(client, self.device_uri, [self.scope], say)
        else:
            grant = gmail_auth.loopback_flow(client, [self.scope], say, self.auth_port)
        if self.scope not in grant.scopes:
            raise spi.AuthError(
                f"consent was given without {self.scope} (granted: "
                f"{', '.join(sorted(grant.scopes)) or 'nothing'}); run it again and tick Gmail"
            )
        self._save("refresh_token", grant.refresh_token)
        self.close()
        profile = self._call("users.getProfile", lambda u: u.getProfile(userId="me"))
        say(
            f"authorized: {profile.get('emailAddress')} ({profile.get('messagesTotal')} "
            f"messages); the refresh token is stored for mailbox {self.mailbox!r}"
        )


def _as_list(value: object, default: list[str]) -> list[object]:
    if value is None:
        return list(default)
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, Iterable) else list(default)
