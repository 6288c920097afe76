"""The connector interface: the only part of the core that connectors may import.

A connector reads one mailbox at a provider and hands the core *raw RFC 822 bytes* plus the
provider's own identifiers. It knows nothing of the database, contacts or reminders.

The sync story, as a connector sees it:

1. The core builds the connector from its class (found by entry-point name, see
   `mailmanager.registry`) with a `ConnectorConfig`: the mailbox name and the connector's
   options, secrets already resolved from `*_env` / `*_file` references.
2. `list_folders()` names the folders worth syncing, each with a role.
3. For each folder the core calls `fetch_changes(folder, cursor, limit)` in a loop. The first
   call of a mailbox's life passes `cursor=None`: the connector then starts a *full scan* and
   answers with `reset=True`. Every answer carries a new opaque cursor; the core stores it in
   the same database transaction as the messages of that answer, so a crash at any moment
   resumes from the last committed batch. `more=True` means "call again at once with the new
   cursor"; `more=False` means the folder is up to date.
4. When a stored cursor can no longer be used (IMAP UIDVALIDITY changed, Gmail history
   expired, Graph delta token gone), the connector raises `CursorExpiredError`; the core then
   calls again with `cursor=None`, and after that full scan it removes the locations in this
   folder that the scan did not report. Messages, threads and links are kept.

Re-delivering a message the core already has is always allowed (at-least-once); the core's
upserts are idempotent. Losing one is never allowed: a cursor must not move past a message
the connector has not returned.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from mailmanager.errors import MailmanagerError


class FolderRole(enum.StrEnum):
    """What a folder holds, whatever its (possibly localised) name."""

    INBOX = "inbox"
    SENT = "sent"
    ARCHIVE = "archive"
    ALL = "all"
    DRAFTS = "drafts"
    TRASH = "trash"
    JUNK = "junk"
    OTHER = "other"


@dataclass(frozen=True)
class RemoteFolder:
    """A folder at the provider.

    `id` is the provider's stable key for the folder (IMAP: the mailbox name; Graph: the
    folder id; Maildir: the path relative to the root). `name` is for display.
    """

    id: str
    name: str
    role: FolderRole = FolderRole.OTHER


@dataclass(frozen=True)
class RawMessage:
    """One message as the provider stores it.

    `provider_id` is unique within its folder for the life of the folder's cursor (an IMAP
    UID, a Gmail message id, a file name). `raw` is the whole RFC 822 message. `thread_hint`
    is the provider's own conversation id when it has a trustworthy one (Gmail threadId,
    X-GM-THRID). `internal_date` is when the provider received it (UTC), used when the
    message's own Date header is missing or absurd.

    A message over `ConnectorConfig.max_message_size` may be fetched headers only: `raw` is
    then its header block, `truncated` is true and `size` its whole size at the provider
    (the core stores the headers with a note saying the body was left out). `size` may be
    given for any message; None means unknown.

    `problem` set means the connector could not hand over this item as a message (a Maildir
    file that is a symlink out of the configured root, say): `raw` is then empty or what
    there is, and the core quarantines the item with `problem` as its reason.
    """

    provider_id: str
    raw: bytes
    flags: frozenset[str] = frozenset()
    thread_hint: str | None = None
    internal_date: datetime | None = None
    labels: frozenset[str] = frozenset()
    size: int | None = None
    truncated: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class FlagChange:
    """The new full flag set of a message the core already has."""

    provider_id: str
    flags: frozenset[str]


@dataclass(frozen=True)
class ChangeBatch:
    """One answer of `Connector.fetch_changes`.

    `reset` is true on the first answer of a full scan (the cursor passed was None): the
    core then drops, once the scan ends, every location of this folder the scan did not
    report. `removed` lists provider ids that left the folder since the cursor passed in.
    """

    messages: Sequence[RawMessage]
    cursor: str
    more: bool = False
    removed: Sequence[str] = ()
    flag_changes: Sequence[FlagChange] = ()
    reset: bool = False


_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One configuration key a connector accepts in its `[[mailboxes]]` table.

    A `secret` option is never written in the file itself: the config gives `NAME_env`
    (an environment variable) or `NAME_file` (a file path), and the core resolves it before
    the connector sees it. `kind` is one of "str", "int", "bool", "list", "path".
    `choices` restricts a "str" option to a few values.
    """

    name: str
    kind: str = "str"
    required: bool = False
    default: object = None
    help: str = ""
    secret: bool = False
    choices: tuple[str, ...] = ()


@runtime_checkable
class TokenStore(Protocol):
    """Where a connector keeps OAuth tokens between runs (the core encrypts them at rest).

    Keys are the connector's own (e.g. "refresh_token"); values are opaque strings. The
    store is scoped to one mailbox.
    """

    def load(self, key: str) -> str | None: ...

    def save(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class ConnectorConfig:
    """What a connector is built from: the mailbox name and its validated options.

    `values` holds every declared option (defaults filled in); secret options hold the
    resolved secret, or None when not configured. `base_dir` is the directory of the config
    file, against which relative paths resolve.
    `max_message_size` (bytes, `[sync] max_message_size`) is the largest message the core
    reads whole: a connector whose provider tells sizes before the download should fetch
    only the header block of a larger one (see `RawMessage.truncated`). None: no limit.
    """

    mailbox: str
    values: Mapping[str, object]
    base_dir: str = "."
    extra: Mapping[str, object] = field(default_factory=dict)
    token_store: TokenStore | None = None
    max_message_size: int | None = None


@dataclass(frozen=True)
class CheckStep:
    """One line of `mailmanager mailbox test`: a step, whether it passed, and what to do."""

    step: str
    ok: bool
    detail: str = ""


@runtime_checkable
class Connector(Protocol):
    """A mailbox at a provider. One instance serves one mailbox and one thread at a time.

    The class attribute `name` equals the connector's entry-point name. `options` declares
    the configuration keys the connector takes (see `Option`). The constructor takes one
    `ConnectorConfig`; it must not touch the network (connect lazily on first use).

    The sync engine forks a fetch worker process that drives the instance the writer built
    (see `mailmanager.fetching`). A connector whose state must stay in the writer's process
    (an in-memory test account) sets the optional class attribute `forkable = False`.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]]

    def __init__(self, config: ConnectorConfig) -> None: ...

    def list_folders(self) -> Sequence[RemoteFolder]:
        """Return the folders to sync, with their roles, honouring the folder options.

        Raises `AuthError`, `TransientError`, `ConnectorError`.
        """
        ...

    def fetch_changes(self, folder: RemoteFolder, cursor: str | None, limit: int) -> ChangeBatch:
        """Return at most `limit` messages changed in `folder` since `cursor`.

        `cursor=None` starts a full scan (answer with `reset=True`). The returned cursor
        must let a later call resume right after the messages returned, even from another
        process. Raises `CursorExpiredError` when `cursor` can no longer be used,
        `AuthError`, `TransientError`, `ConnectorError`.
        """
        ...

    def check(self) -> Sequence[CheckStep]:
        """Diagnose the connection step by step (reach, TLS, login, folders) for humans.

        Never raises for a failed step: it reports it with a plain fix.
        """
        ...

    def close(self) -> None:
        """Release connections. Safe to call twice; a closed connector that is used again
        connects again (the sync engine closes it before forking its fetch worker)."""
        ...


@runtime_checkable
class Authorizable(Protocol):
    """A connector that can obtain a user's consent interactively (`mailmanager auth`).

    `authorize` runs an OAuth flow (device code or installed app), telling the admin what
    to do through `say`, and saves the resulting tokens in the config's `token_store`.
    Raises `AuthError` when consent is refused or times out.
    """

    def authorize(self, say: Callable[[str], None]) -> None: ...


class ConnectorError(MailmanagerError):
    """Raised by a connector when the provider refuses or fails in a way retrying won't fix."""


class AuthError(ConnectorError):
    """Raised when the provider rejects the credentials or the token (fix the config)."""


class TransientError(ConnectorError):
    """Raised when the provider is unreachable, throttling or failing for now.

    `retry_after` is the number of seconds the provider asked us to wait, when it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the fetch worker process intact
        return (type(self), (str(self), self.retry_after))


class CursorExpiredError(ConnectorError):
    """Raised by `fetch_changes` when the stored cursor is no longer valid at the provider.

    The core answers by calling again with `cursor=None` (a full scan that keeps links).
    """


class UnsupportedError(ConnectorError):
    """Raised when the server lacks something the connector needs (a capability, an API)."""


class ConfigError(MailmanagerError):
    """Raised when one configuration value is wrong: `key` is its dotted key path
    ("mailboxes.work.host"), `problem` what is wrong, `fix` what to do.

    Connectors raise it for their options. The config loader gathers these, one per
    problem, into a single `mailmanager.config.ConfigFileError`.
    """

    def __init__(self, key: str, problem: str, fix: str = "") -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        text = f"{key}: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the fetch worker process intact
        return (type(self), (self.key, self.problem, self.fix))
