"""The session side of the Exchange connector: exchangelib accounts, TLS, errors.

Retries: exchangelib's `FaultTolerance` sleeps up to an hour inside a request, out of sight of
the scheduler; we use `FailFast` and translate every error here (`translate`), and the
connector retries transient ones with tenacity, honouring the server's BackOffMilliseconds.
The SOAP operations themselves are in `exchange_soap`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import exchangelib  # type: ignore[import-untyped]
import oauthlib.oauth2  # type: ignore[import-untyped]
import requests
from exchangelib import errors as ews_errors
from exchangelib import protocol as ews_protocol
from exchangelib.items import ID_ONLY  # type: ignore[import-untyped]
from exchangelib.properties import (  # type: ignore[import-untyped]
    DistinguishedFolderId,
    FolderId,
    ItemId,
    Mailbox,
)
from exchangelib.transport import BASIC, NTLM, OAUTH2  # type: ignore[import-untyped]

from connectors.exchange import soap
from connectors.exchange.soap import Fetched, FolderInfo, ItemState, SyncPage
from mailmanager import spi

log = logging.getLogger(__name__)
# Exchange Online hosts: EWS there is blocked from 2026-10-01 and shut off on 2027-04-01.
_ONLINE_SUFFIXES = ("office365.com", "outlook.com", "office.com", "office365.us", "outlook.cn")


class FolderGoneError(spi.ConnectorError):
    """Raised when the folder asked for no longer exists (ErrorFolderNotFound)."""


@dataclass(frozen=True)
class Settings:
    """Everything needed to open an EWS session (secrets included; never logged)."""

    email: str
    endpoint: str | None
    auth_type: str  # "ntlm", "basic" or "oauth"
    username: str = ""
    password: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    tenant_id: str = ""
    token_url: str = ""
    scope: str = ""
    impersonation: bool = False
    version: tuple[int, ...] | None = None
    ssl_ca_file: str | None = None
    timeout: float = 120.0
    connections: int = 2


def is_exchange_online(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == s or host.endswith("." + s) for s in _ONLINE_SUFFIXES)


# ----------------------------------------------------------------------------- TLS
_CA_FILES: dict[tuple[str, int], str] = {}
_CA_LOCK = threading.Lock()


class _CaFileAdapter(requests.adapters.HTTPAdapter):
    """exchangelib uses one HTTP adapter class for the whole process
    (`BaseProtocol.HTTP_ADAPTER_CLS`); this one still verifies every certificate, against the
    CA file configured for the request's host and port when there is one."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        ca = _CA_FILES.get(((parts.hostname or "").lower(), parts.port or 443))
        if ca is not None and kwargs.get("verify", True) is not False:
            kwargs["verify"] = ca  # over REQUESTS_CA_BUNDLE too: the mailbox config is explicit
        return super().send(request, *args, **kwargs)


def register_ca_file(url: str, ca_file: str) -> None:
    parts = urlsplit(url)
    with _CA_LOCK:
        _CA_FILES[((parts.hostname or "").lower(), parts.port or 443)] = ca_file
        base = ews_protocol.BaseProtocol
        if base.HTTP_ADAPTER_CLS is requests.adapters.HTTPAdapter:
            base.HTTP_ADAPTER_CLS = _CaFileAdapter
        elif not issubclass(base.HTTP_ADAPTER_CLS, _CaFileAdapter):
            log.warning(
                "exchangelib HTTP adapter replaced elsewhere; ssl_ca_file may be ignored",
                extra={"action": "ews_adapter_conflict"},
            )


# ----------------------------------------------------------------------------- sessions
class _ClientCredentials(exchangelib.OAuth2Credentials):  # type: ignore[misc]
    """OAuth 2.0 client credentials with a configurable token endpoint and scope (Entra ID
    by default; AD FS for on-premises modern auth)."""

    def __init__(self, token_url: str, scope: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._token_url, self._scope = token_url, scope

    @property
    def token_url(self) -> str:
        return self._token_url

    @property
    def scope(self) -> list[str]:
        return [self._scope]


class Session:
    """One exchangelib Account. Methods raise `spi` errors only (see `translate`)."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        if s.ssl_ca_file and s.endpoint:
            register_ca_file(s.endpoint, s.ssl_ca_file)
        identity = exchangelib.Identity(primary_smtp_address=s.email)
        if s.auth_type == "oauth":
            creds: Any = _ClientCredentials(
                token_url=s.token_url,
                scope=s.scope,
                client_id=s.client_id,
                client_secret=s.client_secret,
                tenant_id=s.tenant_id,
                identity=identity,
            )
        else:
            creds = exchangelib.Credentials(s.username, s.password)
        auth = {"ntlm": NTLM, "basic": BASIC, "oauth": OAUTH2}[s.auth_type]
        version = exchangelib.Version(build=exchangelib.Build(*s.version)) if s.version else None
        self.config = exchangelib.Configuration(
            service_endpoint=s.endpoint,
            credentials=creds,
            auth_type=auth,
            version=version,
            retry_policy=exchangelib.FailFast(),
            max_connections=max(s.connections, 1),
        )
        access = exchangelib.IMPERSONATION if s.impersonation else exchangelib.DELEGATE
        if s.endpoint is not None:
            _forget_protocol(self.config)  # a fresh one: HTTP sessions made with today's TLS setup
        with guard():
            self.account = exchangelib.Account(
                s.email,
                config=self.config,
                autodiscover=s.endpoint is None,
                access_type=access,
                default_timezone=exchangelib.UTC,
            )
        # With FailFast, exchangelib still stamps a back-off of RETRY_WAIT (10 s) on errors the
        # server gave none for (HTTP 503, timeouts); zero it, so `retry_after` is only ever the
        # server's BackOffMilliseconds (services/common.py `_get_elements`).
        self.account.protocol.RETRY_WAIT = 0
        self.endpoint: str = self.account.protocol.service_endpoint
        if s.endpoint is None and s.ssl_ca_file:
            register_ca_file(self.endpoint, s.ssl_ca_file)

    @property
    def build(self) -> str:
        return str(self.account.version.build)

    def _svc(self, cls: Any, **kw: Any) -> Any:
        return cls(account=self.account, timeout=self.settings.timeout, **kw)

    def distinguished(self, names: Sequence[str]) -> dict[str, FolderInfo]:
        """The distinguished folders (msgfolderroot, inbox, sentitems...) that exist."""
        mailbox = Mailbox(email_address=self.settings.email)
        refs = [DistinguishedFolderId(id=n, mailbox=mailbox) for n in names]
        with guard():
            got = list(self._svc(soap.GetFolders).call(refs, soap.FOLDER_FIELDS, ID_ONLY))
        out: dict[str, FolderInfo] = {}
        for name, res in zip(names, got, strict=True):
            if isinstance(res, ews_errors.ErrorAccessDenied):
                raise translate(res)
            if not isinstance(res, Exception):
                out[name] = res
        return out

    def subfolders(self, parent_id: str) -> list[FolderInfo]:
        """Every folder below `parent_id` (FindFolder, Deep traversal, paged)."""
        with guard():
            found = list(self._svc(soap.FindFolders).call_flat(FolderId(id=parent_id)))
        for res in found:
            if isinstance(res, Exception):
                raise translate(res)
        return found

    def sync(self, folder_id: str, state: str | None, limit: int) -> SyncPage:
        """One SyncFolderItems page. Raises CursorExpiredError on ErrorInvalidSyncStateData."""
        svc = self._svc(soap.SyncItems)
        with guard():
            found = list(
                svc.call(
                    folder=FolderId(id=folder_id),
                    shape=ID_ONLY,
                    additional_fields=soap.STATE_FIELDS,
                    sync_state=state,
                    ignore=None,
                    max_changes_returned=max(1, min(limit, soap.MAX_SYNC_PAGE)),
                    sync_scope=None,
                )
            )
        return SyncPage(
            changes=[soap.Change(kind, item) for kind, item in found],
            sync_state=svc.sync_state or "",
            last=bool(svc.includes_last_item_in_range),
        )

    def get(self, ids: Sequence[str], mime: bool, headers_only: bool = False) -> list[Fetched]:
        """GetItem in chunks; an item gone since is answered with problem "not found".
        `headers_only`: InternetMessageHeaders instead of MimeContent (`Fetched.headers_only`)."""
        out: list[Fetched] = []
        if not ids:
            return out
        svc = self._svc(soap.GetItems, chunk_size=soap.CHUNK)
        with guard():
            got = list(
                svc.call(
                    items=[ItemId(id=i) for i in ids],
                    additional_fields=(
                        soap.HEADER_FIELDS
                        if headers_only
                        else soap.MIME_FIELDS
                        if mime
                        else soap.STATE_FIELDS
                    ),
                    shape=ID_ONLY,
                )
            )
        for item_id, res in zip(ids, got, strict=True):
            if isinstance(res, ews_errors.ErrorItemNotFound):
                out.append(Fetched(ItemState(item_id), problem="not found"))
            elif isinstance(res, Exception):
                out.append(Fetched(ItemState(item_id), problem=f"{type(res).__name__}: {res}"))
            else:
                out.append(res if mime or headers_only else Fetched(res.state))
        return out

    def reauthenticate(self) -> None:
        """Forget the OAuth token and idle HTTP sessions, so the next request gets a new one."""
        creds = self.config.credentials
        if isinstance(creds, exchangelib.OAuth2Credentials):
            with creds.lock:
                creds.access_token = None
        self.account.protocol.close()

    def close(self) -> None:
        self.account.protocol.close()
        _forget_protocol(self.account.protocol.config)


def _forget_protocol(config: Any) -> None:
    # exchangelib caches one Protocol (and its pooled HTTP sessions) per (endpoint,
    # credentials) for the life of the process (protocol.py `CachingProtocol`); holders keep
    # theirs, the next Account gets a new one.
    with contextlib.suppress(KeyError):
        del ews_protocol.Protocol[config]


# ----------------------------------------------------------------------------- errors
@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn exchangelib, requests and oauthlib errors into `spi` errors (`translate`)."""
    try:
        yield
    except _LIBRARY_ERRORS as exc:
        raise translate(exc) from exc


_LIBRARY_ERRORS = (ews_errors.EWSError, requests.RequestException, oauthlib.oauth2.OAuth2Error)
_TRANSIENT = (
    ews_errors.ErrorTimeoutExpired,
    ews_errors.ErrorInternalServerTransientError,
    ews_errors.ErrorMailboxMoveInProgress,
    ews_errors.ErrorMailboxStoreUnavailable,
    ews_errors.ErrorConnectionFailed,
    ews_errors.ErrorTooManyObjectsOpened,
    ews_errors.ErrorExceededConnectionCount,
    ews_errors.ErrorInternalServerError,
    ews_errors.SOAPError,
    requests.ConnectionError,
    requests.Timeout,
)
_DENIED = (
    ews_errors.ErrorAccessDenied,
    ews_errors.ErrorImpersonateUserDenied,
    ews_errors.ErrorNonExistentMailbox,
)


def translate(exc: BaseException) -> spi.ConnectorError:
    """The `spi` error for a library error. Throttling carries the server's back-off."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ews_errors.ErrorFolderNotFound | ews_errors.ErrorSyncFolderNotFound):
        return FolderGoneError(text)
    if isinstance(exc, ews_errors.ErrorServerBusy):
        return spi.TransientError(f"Exchange is throttling: {text}", exc.back_off or None)
    if isinstance(exc, ews_errors.RateLimitError):
        return spi.TransientError(f"Exchange is throttling: {text}", exc.wait)
    if isinstance(exc, ews_errors.ErrorInvalidSyncStateData):
        return spi.CursorExpiredError(f"the sync state is no longer valid: {text}")
    if isinstance(exc, ews_errors.UnauthorizedError | oauthlib.oauth2.OAuth2Error):
        return spi.AuthError(f"credentials rejected: {text}")
    if isinstance(exc, _DENIED):
        return spi.AuthError(f"mailbox access refused: {text}")
    if isinstance(exc, _TRANSIENT):
        return spi.TransientError(f"Exchange unavailable: {text}")
    if isinstance(exc, ews_errors.MalformedResponseError):
        status = _status(str(exc))
        if status in (401, 403):
            return spi.AuthError(f"HTTP {status}: access refused by the server")
        if status is not None and status >= 500:
            return spi.TransientError(f"Exchange answered HTTP {status}")
        return spi.ConnectorError(f"unexpected answer from Exchange: {text[:300]}")
    if isinstance(exc, ews_errors.TransportError) and _looks_like_tls(str(exc)):
        return spi.ConnectorError(f"TLS failure: {exc} (set ssl_ca_file for a private CA)")
    if isinstance(exc, ews_errors.TransportError | requests.RequestException):
        return spi.TransientError(f"Exchange unreachable: {text}")
    return spi.ConnectorError(text)


def _status(text: str) -> int | None:
    marker = "Code: "
    at = text.find(marker)
    return soap.to_int(text[at + len(marker) :].split(" ", 1)[0]) if at >= 0 else None


def _looks_like_tls(text: str) -> bool:
    low = text.lower()
    return "certificate" in low or "ssl" in low or "tls" in low
