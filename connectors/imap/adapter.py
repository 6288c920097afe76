"""imapclient behind one small adapter: every IMAP quirk and private-API use lives here.

`ImapSession` is one logged-in connection. It translates library errors at the boundary
(OSError / imaplib aborts -> `spi.TransientError`, rejected credentials -> `spi.AuthError`,
an unverifiable certificate -> `TlsError`) so nothing from imaplib or imapclient leaks out.

Quirks kept here (verified against imapclient 4.1.0 and Dovecot 2.3):
- imapclient >= 4.0 filters `fetch()` results through `to_ints(messages)` (mjs/imapclient
  PR #647), so a UID range such as "1:500" cannot be fetched with it; `_uid_fetch` sends
  UID FETCH itself.
- VANISHED (RFC 7162 §3.2.10) is not parsed by imapclient: it piles up in the private
  `_imap.untagged_responses["VANISHED"]`; we pop and parse it around each FETCH.
- Capabilities are read again after login (Dovecot advertises CONDSTORE/QRESYNC only then),
  and we gate on what is *advertised*: Dovecot accepts ENABLE QRESYNC even when hidden.
- `UID SEARCH UID n:*` always matches the highest UID even when n is above it (RFC 3501
  §6.4.4, "*" is the largest UID in use), so results are filtered.
- A per-host table turns off capabilities known to be broken (iCloud sends malformed
  VANISHED responses: Foundry376/Mailspring-Sync PR #91).
- CPU: imaplib's reader and imapclient's lexer cost ~50 us per fetched message in Python.
  `_fetch_complete` reads untagged FETCH lines without imaplib's per-line overhead (same
  records, handing every other line back to imaplib), and `imap_wire.parse_fetch` parses the
  shapes we request, falling back to `parse_fetch_response` for anything else.
"""

from __future__ import annotations

import bisect
import imaplib
import logging
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient, exceptions
from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.response_parser import parse_fetch_response

from connectors.imap import wire as imap_wire
from mailmanager import spi

log = logging.getLogger(__name__)

# Capabilities to ignore per server domain (and its subdomains), whatever is advertised.
QUIRKS: dict[str, frozenset[str]] = {
    "mail.me.com": frozenset({"QRESYNC"}),  # iCloud: malformed VANISHED (Mailspring PR #91)
    "imap.mail.yahoo.com": frozenset({"QRESYNC"}),
}

_SPECIAL_USE = {
    "\\sent": spi.FolderRole.SENT,
    "\\archive": spi.FolderRole.ARCHIVE,
    "\\all": spi.FolderRole.ALL,
    "\\allmail": spi.FolderRole.ALL,  # XLIST (Gmail's pre-RFC 6154 extension)
    "\\drafts": spi.FolderRole.DRAFTS,
    "\\trash": spi.FolderRole.TRASH,
    "\\junk": spi.FolderRole.JUNK,
    "\\spam": spi.FolderRole.JUNK,  # XLIST
    "\\inbox": spi.FolderRole.INBOX,  # XLIST
}
# Localised names for servers without SPECIAL-USE, matched on the last path component.
_ROLE_NAMES: dict[spi.FolderRole, frozenset[str]] = {
    role: frozenset(names.split("|"))
    for role, names in {
        spi.FolderRole.SENT: "sent|sent items|sent messages|sent mail|sent-mail|envoyés|"
        "éléments envoyés|messages envoyés|gesendet|gesendete objekte|gesendete elemente|"
        "enviados|elementos enviados|posta inviata|inviati|verzonden|verzonden items|"
        "skickat|sendt|wysłane|отправленные",
        spi.FolderRole.ARCHIVE: "archive|archives|archiv|archivio|archivo|archief",
        spi.FolderRole.DRAFTS: "drafts|brouillons|entwürfe|borradores|bozze",
        spi.FolderRole.TRASH: "trash|deleted items|deleted messages|corbeille|"
        "éléments supprimés|papierkorb|gelöschte elemente|papelera|cestino",
        spi.FolderRole.JUNK: "junk|spam|junk e-mail|junk email|courrier indésirable",
        spi.FolderRole.ALL: "all mail",
    }.items()
}


def _security_hint(security: str, port: int) -> str:
    """What to change when `security` does not match what the server speaks on `port`."""
    if security == "tls":
        return (
            f'the server did not answer TLS on port {port}: set security = "starttls" or port = 993'
        )
    return (
        f"the server did not answer in plain text on port {port} (implicit TLS?): "
        'set security = "tls" with port = 993, or use port = 143'
    )


class TlsError(spi.ConnectorError):
    """Raised when the server's certificate cannot be verified; `reason` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class MailboxMissingError(spi.ConnectorError):
    """Raised by `ImapSession.examine`/`status` when the mailbox does not exist."""


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    security: str  # "tls" | "starttls" | "none"
    username: str
    password: str | None = None
    oauth2_token: str | None = None
    oauth2_token_command: str | None = None
    ssl_ca_file: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class Mailbox:
    name: str
    flags: frozenset[str]
    role: spi.FolderRole


@dataclass(frozen=True)
class MailboxState:
    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    raw: bytes
    flags: frozenset[str]
    internal_date: datetime | None = None
    gm_msgid: str | None = None
    gm_thrid: str | None = None
    labels: frozenset[str] = frozenset()
    size: int | None = None  # RFC822.SIZE, asked for with headers_only
    truncated: bool = False  # raw is the header block only


# ----------------------------------------------------------------- pure parsing helpers
def to_uid_set(uids: Iterable[int]) -> str:
    """Compress UIDs into an IMAP sequence set: [1, 2, 3, 7] -> "1:3,7"."""
    parts: list[str] = []
    run: list[int] = []
    for uid in sorted(set(uids)):
        if run and uid == run[-1] + 1:
            run[-1] = uid
            continue
        if run:
            parts.append(f"{run[0]}" if run[0] == run[1] else f"{run[0]}:{run[1]}")
        run = [uid, uid]
    if run:
        parts.append(f"{run[0]}" if run[0] == run[1] else f"{run[0]}:{run[1]}")
    return ",".join(parts)


def parse_uid_set(text: str) -> list[int]:
    """Expand an IMAP sequence set without "*": "1:3,7" -> [1, 2, 3, 7] (a:b may be b:a)."""
    out: list[int] = []
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition(":")
        a, b = int(low), int(high or low)
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


def parse_vanished(entries: Sequence[bytes | str]) -> list[int]:
    """UIDs named by VANISHED responses (RFC 7162 §3.2.10), with or without (EARLIER)."""
    uids: list[int] = []
    for entry in entries:
        text = entry.decode("ascii") if isinstance(entry, bytes) else entry
        text = re.sub(r"^\s*\(EARLIER\)\s*", "", text, flags=re.IGNORECASE)
        uids.extend(parse_uid_set(text))
    return sorted(set(uids))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_FLAG_SETS: dict[tuple[object, ...], frozenset[str]] = {}  # few distinct flag lists per mailbox


def flag_set(value: object) -> frozenset[str]:
    """A FLAGS value from imapclient (a tuple of bytes) as a set of str, without \\Recent.

    \\Recent is per session, not stored (RFC 3501 §2.3.2; gone in IMAP4rev2, RFC 9051).
    """
    if not isinstance(value, tuple | list):
        return frozenset()
    key = tuple(value)
    flags = _FLAG_SETS.get(key)
    if flags is None:
        flags = frozenset(_text(flag) for flag in value if _text(flag).lower() != "\\recent")
        if len(_FLAG_SETS) >= 4096:
            _FLAG_SETS.clear()
        _FLAG_SETS[key] = flags
    return flags


def gmail_attributes(data: Mapping[bytes, object]) -> tuple[str | None, str | None, frozenset[str]]:
    """(X-GM-MSGID, X-GM-THRID, X-GM-LABELS) of one parsed FETCH item.

    Labels are modified UTF-7 (RFC 3501 §5.1.3) like mailbox names; system labels keep
    their backslash (`\\Inbox`, `\\Sent`). See developers.google.com/gmail/imap/imap-extensions.
    """
    msgid = data.get(b"X-GM-MSGID")
    thrid = data.get(b"X-GM-THRID")
    raw_labels = data.get(b"X-GM-LABELS", ())
    labels: set[str] = set()
    if isinstance(raw_labels, tuple | list):
        for label in raw_labels:
            if isinstance(label, int):  # a label made of digits parses as a number
                labels.add(str(label))
            elif isinstance(label, bytes):
                labels.add(
                    label.decode("ascii", "replace")
                    if label.startswith(b"\\")
                    else utf7_decode(label)
                )
    return (
        str(msgid) if msgid is not None else None,
        str(thrid) if thrid is not None else None,
        frozenset(labels),
    )


def role_of(name: str, flags: Iterable[str], delimiter: str | None) -> spi.FolderRole:
    """The folder's role: SPECIAL-USE / XLIST flags first (RFC 6154), then known names."""
    if name.upper() == "INBOX":
        return spi.FolderRole.INBOX
    for flag in flags:
        role = _SPECIAL_USE.get(flag.lower())
        if role is not None:
            return role
    leaf = name.rsplit(delimiter, 1)[-1] if delimiter else name
    leaf = leaf.strip().lower()
    for role, names in _ROLE_NAMES.items():
        if leaf in names:
            return role
    return spi.FolderRole.OTHER


def _internal_date(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------------- the session
class ImapSession:
    """One connection to one account. Use `connect()`, `login()`, then the commands.

    Every method raises `spi.TransientError` when the connection drops or times out,
    `spi.ConnectorError` when the server refuses a command.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.client: IMAPClient | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.mode = "p"  # "q" QRESYNC, "c" CONDSTORE, "p" plain (UID-list diffs)
        self.selected: str | None = None

    # -- connection phases (separate so `check()` can report each one)
    def connect(self) -> None:
        """Open TCP, then TLS (implicit or STARTTLS). Raises TransientError, TlsError."""
        s = self.settings
        context = ssl.create_default_context(cafile=s.ssl_ca_file) if s.ssl_ca_file else None
        if s.security == "tls" and context is None:
            context = ssl.create_default_context()
        try:
            self.client = IMAPClient(
                s.host, port=s.port, ssl=s.security == "tls", ssl_context=context, timeout=s.timeout
            )
            self.client.normalise_times = False  # keep INTERNALDATE's zone; we convert to UTC
            # imapclient sets imaplib's debug level to 5 to route its traces to logging: then
            # imaplib formats a repr of every response, message bodies included, on every
            # read (40% of fetch CPU) and would log bodies at DEBUG. Turn that off.
            self.client._imap.debug = 0
            if s.security == "starttls":
                if not self.client.has_capability("STARTTLS"):
                    raise spi.UnsupportedError(
                        f"{s.host} does not offer STARTTLS on port {s.port}: if it offers "
                        'implicit TLS, set security = "tls" and port = 993'
                    )
                self.client.starttls(context or ssl.create_default_context())
        except ssl.SSLCertVerificationError as exc:
            self.close()
            reason = exc.verify_message or str(exc)
            raise TlsError(
                f"certificate of {s.host}:{s.port} rejected: {reason} (if the server uses a "
                "private CA or a self-signed certificate, set ssl_ca_file to its PEM file)",
                reason,
            ) from exc
        except spi.ConnectorError:
            self.close()
            raise
        except (OSError, exceptions.IMAPClientError) as exc:
            self.close()
            # TLS spoken to a plain-text port reads the server's "* OK" greeting as a TLS
            # record (WRONG_VERSION_NUMBER); plain text spoken to an implicit-TLS port waits
            # for a greeting that never comes (a timeout). Both are settings, not outages.
            hint = ""
            if (s.security == "tls" and isinstance(exc, ssl.SSLError)) or (
                s.security != "tls" and isinstance(exc, TimeoutError)
            ):
                hint = f"; {_security_hint(s.security, s.port)}"
            raise spi.TransientError(f"cannot connect to {s.host}:{s.port}: {exc}{hint}") from exc

    def login(self) -> None:
        """Authenticate, then read capabilities and ENABLE QRESYNC/CONDSTORE when advertised.

        Raises AuthError when credentials are refused, TransientError on a dropped link.
        """
        client, s = self._client(), self.settings
        try:
            if s.oauth2_token or s.oauth2_token_command:
                client.oauth2_login(s.username, s.oauth2_token or self._run_token_command())
            else:
                client.login(s.username, s.password or "")
        except (exceptions.IMAPClientAbortError, OSError) as exc:
            raise spi.TransientError(f"connection lost during login: {exc}") from exc
        except exceptions.IMAPClientError as exc:
            raise spi.AuthError(f"{s.host} rejected the login of {s.username!r}: {exc}") from exc
        with self._boundary("CAPABILITY/ENABLE"):
            client._cached_capabilities = None  # re-read after login (Dovecot adds CONDSTORE)
            caps = frozenset(_text(c).upper() for c in client.capabilities())
            host = s.host.lower()
            for domain, ignored in QUIRKS.items():
                if host == domain or host.endswith("." + domain):
                    caps -= ignored
            self.capabilities = caps
            if "QRESYNC" in self.capabilities and "ENABLE" in self.capabilities:
                client.enable("QRESYNC")
                self.mode = "q"
            elif "CONDSTORE" in self.capabilities and "ENABLE" in self.capabilities:
                client.enable("CONDSTORE")
                self.mode = "c"

    def _run_token_command(self) -> str:
        command = self.settings.oauth2_token_command or ""
        try:
            done = subprocess.run(
                shlex.split(command),
                capture_output=True,
                text=True,
                timeout=self.settings.timeout,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise spi.AuthError(f"oauth2_token_command failed: {exc}") from exc
        return done.stdout.strip()

    @property
    def is_gmail(self) -> bool:
        return "X-GM-EXT-1" in self.capabilities

    def close(self) -> None:
        client, self.client, self.selected = self.client, None, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # the link is gone or half-gone: drop the socket quietly
            try:
                client.shutdown()
            except Exception:
                log.debug("imap socket already closed", extra={"action": "imap_close"})

    def _client(self) -> IMAPClient:
        if self.client is None:
            raise spi.TransientError("not connected")
        return self.client

    def _boundary(self, what: str) -> _Boundary:
        return _Boundary(self, what)

    # -- commands
    def mailboxes(self) -> list[Mailbox]:
        """Every selectable mailbox with its role (XLIST when that is all the server has)."""
        client = self._client()
        with self._boundary("LIST"):
            use_xlist = "SPECIAL-USE" not in self.capabilities and "XLIST" in self.capabilities
            rows = client.xlist_folders() if use_xlist else client.list_folders()
        out: list[Mailbox] = []
        for raw_flags, delim, name in rows:
            flags = frozenset(_text(f) for f in raw_flags)
            if {"\\noselect", "\\nonexistent"} & {f.lower() for f in flags}:
                continue
            delimiter = _text(delim) if delim else None
            out.append(Mailbox(_text(name), flags, role_of(_text(name), flags, delimiter)))
        return out

    def examine(self, name: str) -> MailboxState:
        """EXAMINE (read-only SELECT). Raises MailboxMissingError."""
        client = self._client()
        self.selected = None
        with self._boundary(f"EXAMINE {name}"):
            try:
                info = client.select_folder(name, readonly=True)
            except exceptions.IMAPClientAbortError:
                raise
            except exceptions.IMAPClientError as exc:
                raise MailboxMissingError(f"cannot open mailbox {name!r}: {exc}") from exc
        self.selected = name
        modseq = info.get(b"HIGHESTMODSEQ")
        return MailboxState(
            uidvalidity=int(info.get(b"UIDVALIDITY", 0)),
            uidnext=int(info.get(b"UIDNEXT", 0)),
            messages=int(info.get(b"EXISTS", 0)),
            highestmodseq=int(modseq) if modseq is not None and self.mode != "p" else None,
        )

    def status(self, name: str) -> MailboxState:
        """STATUS without selecting (the cheap no-change probe). Raises MailboxMissingError."""
        if self.selected == name:
            # STATUS on the selected mailbox may answer from this session's stale view
            # (RFC 3501 §6.3.10 discourages it; Dovecot does so): leave it first.
            self.unselect()
        items = [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]
        if self.mode != "p":
            items.append(b"HIGHESTMODSEQ")
        with self._boundary(f"STATUS {name}"):
            try:
                info = self._client().folder_status(name, items)
            except exceptions.IMAPClientAbortError:
                raise
            except exceptions.IMAPClientError as exc:
                raise MailboxMissingError(f"no mailbox {name!r}: {exc}") from exc
        modseq = info.get(b"HIGHESTMODSEQ")
        return MailboxState(
            int(info.get(b"UIDVALIDITY", 0)),
            int(info.get(b"UIDNEXT", 0)),
            int(info.get(b"MESSAGES", 0)),
            int(modseq) if modseq is not None else None,
        )

    def unselect(self) -> None:
        """Leave the selected mailbox. CLOSE after EXAMINE expunges nothing (RFC 3501 §6.4.2)."""
        client = self._client()
        with self._boundary("UNSELECT"):
            if "UNSELECT" in self.capabilities:
                client.unselect_folder()
            else:
                client.close_folder()
        self.selected = None

    def search_uids(self, first: int, last: int | None = None) -> list[int]:
        """UIDs in first:last (first:* when last is None), sorted, without the "*" quirk."""
        criteria = ["UID", f"{first}:{'*' if last is None else last}"]
        with self._boundary("UID SEARCH"):
            found = self._client().search(criteria)
        uids = sorted(found)
        end = len(uids) if last is None else bisect.bisect_right(uids, last)
        return uids[bisect.bisect_left(uids, first) : end]

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        data, _ = self._uid_fetch(to_uid_set(uids), "(RFC822.SIZE)")
        return {uid: int(str(item.get(b"RFC822.SIZE", 0))) for uid, item in data.items()}

    def fetch_messages(
        self, uids: Sequence[int], headers_only: bool = False
    ) -> list[FetchedMessage]:
        """Bodies (BODY.PEEK[]: never sets \\Seen), flags, dates, and Gmail ids if any.

        `headers_only`: the header block (BODY.PEEK[HEADER]) and RFC822.SIZE instead, for
        messages too large to download (`FetchedMessage.truncated`)."""
        part = "BODY.PEEK[HEADER] RFC822.SIZE" if headers_only else "BODY.PEEK[]"
        items = f"(UID FLAGS INTERNALDATE {part}"
        items += " X-GM-MSGID X-GM-THRID X-GM-LABELS)" if self.is_gmail else ")"
        data, _ = self._uid_fetch(to_uid_set(uids), items)
        wanted = set(uids)
        out: list[FetchedMessage] = []
        for uid in sorted(data):
            item = data[uid]
            body = item.get(b"BODY[HEADER]" if headers_only else b"BODY[]")
            if uid not in wanted or not isinstance(body, bytes):
                continue  # an unsolicited FETCH (flag update) rides along: not ours
            msgid, thrid, labels = gmail_attributes(item) if self.is_gmail else (None, None, ())
            out.append(
                FetchedMessage(
                    uid,
                    body,
                    flag_set(item.get(b"FLAGS")),
                    _internal_date(item.get(b"INTERNALDATE")),
                    msgid,
                    thrid,
                    frozenset(labels),
                    int(str(item.get(b"RFC822.SIZE", 0))) if headers_only else len(body),
                    headers_only,
                )
            )
        return out

    def fetch_flags(
        self, uid_set: str, changed_since: int | None = None
    ) -> tuple[dict[int, tuple[frozenset[str], str | None]], list[int]]:
        """{uid: (flags, X-GM-MSGID)} for uid_set, and the VANISHED UIDs.

        With `changed_since` (RFC 7162 CHANGEDSINCE, strictly greater than) only changed
        messages come back; in QRESYNC mode the VANISHED (EARLIER) UIDs too.
        """
        items = "(UID FLAGS X-GM-MSGID)" if self.is_gmail else "(UID FLAGS)"
        modifiers = None
        if changed_since is not None:
            modifiers = f"(CHANGEDSINCE {changed_since}{' VANISHED' if self.mode == 'q' else ''})"
        data, vanished = self._uid_fetch(uid_set, items, modifiers)
        flags = {
            uid: (flag_set(item[b"FLAGS"]), gmail_attributes(item)[0] if self.is_gmail else None)
            for uid, item in data.items()
            if b"FLAGS" in item
        }
        return flags, vanished

    def _uid_fetch(
        self, uid_set: str, items: str, modifiers: str | None = None
    ) -> tuple[dict[int, dict[bytes, object]], list[int]]:
        # imapclient 4.x's fetch() cannot take a range (see module docstring): send UID FETCH
        # through imaplib as imapclient itself does, and parse with its response parser.
        if not uid_set:
            return {}, []
        client = self._client()
        with self._boundary("UID FETCH"):
            imap = client._imap
            imap.untagged_responses.pop("VANISHED", None)
            args = [a for a in ("FETCH", uid_set, items, modifiers) if a]
            tag = imap._command("UID", *args)
            typ, data = _fetch_complete(imap, tag)
            # NO [EXPUNGEISSUED] (RFC 5530): some messages were expunged meanwhile; the
            # others came back and the missing ones are gone, which callers handle.
            if typ != "OK" and b"EXPUNGEISSUED" not in b" ".join(d or b"" for d in data):
                raise spi.ConnectorError(f"UID FETCH {uid_set} refused: {data!r}")
            vanished = parse_vanished(imap.untagged_responses.pop("VANISHED", []))
            if typ == "OK":
                typ, data = imap._untagged_response(typ, data, "FETCH")
            else:  # imaplib leaves the FETCH data of a NO reply among the untagged ones
                data = imap.untagged_responses.pop("FETCH", [None])
            fast = imap_wire.parse_fetch(data)  # the usual shapes, 10x faster than imapclient
            if fast is not None:
                return fast, vanished
            parsed = parse_fetch_response(data, False, True)
        return {int(k): dict(v) for k, v in parsed.items()}, vanished

    def idle_wait(self, timeout: float) -> bool:
        """IDLE (RFC 2177) on the selected mailbox until the server says something."""
        client = self._client()
        with self._boundary("IDLE"):
            client.idle()
            deadline = time.monotonic() + timeout
            seen: list[Any] = []
            try:
                # Keepalives ("* OK Still here", every 2 min on Dovecot) are no change:
                # keep waiting until something else comes or the time is up.
                while not seen and (left := deadline - time.monotonic()) > 0:
                    seen = [r for r in client.idle_check(timeout=left) if not _keepalive(r)]
            finally:
                # A change that lands as IDLE ends comes in the reply to DONE: count it too.
                _, more = client.idle_done()
            return bool(seen) or any(not _keepalive(r) for r in more or [])


def _keepalive(response: object) -> bool:
    """An untagged OK (Dovecot's "* OK Still here" during IDLE): no change in the mailbox."""
    return isinstance(response, tuple) and bool(response) and response[0] == b"OK"


# An untagged FETCH line as imaplib's Untagged_status regex splits it (data, data2), CRLF kept.
_FETCH_LINE = re.compile(rb"\* ([0-9]+) FETCH (.*)\r\n\Z", re.DOTALL)
_FAST_READ = sys.version_info < (3, 14)  # 3.14 reworked imaplib's reader (own buffer, IDLE)


def _fetch_complete(imap: imaplib.IMAP4, tag: bytes) -> tuple[str, list[Any]]:
    """imaplib's `_command_complete("FETCH", tag)`, reading the untagged FETCH lines itself.

    imaplib spends a dozen Python calls and four regex matches on every response line. Here
    a "* n FETCH ..." line goes through imaplib's own steps inline (literals read whole with
    `read`, records appended to `untagged_responses["FETCH"]` as `_get_response` would);
    any other line (the tagged completion, VANISHED, EXISTS, BYE, a short read) is handed
    back to imaplib's `_get_response` by replaying it as the next `readline()`. imaplib's
    reader is the same from 3.11 to 3.13 (verified); 3.14 rewrote it, so there we leave it all
    to imaplib.
    """
    done: tuple[str, list[Any]]
    if not _FAST_READ:
        done = imap._command_complete("FETCH", tag)
        return done
    pending, untagged = imap.tagged_commands, imap.untagged_responses
    literal = imap.Literal
    imap._check_bye()
    try:
        while pending[tag] is None:
            if untagged.get("BYE"):
                imap._check_bye()
            line = imap.readline()
            m = _FETCH_LINE.match(line)
            if m is None:
                _replay(imap, line)
                imap._get_response()
                continue
            dat = m[1] + b" " + m[2] if m[2] else m[1]
            records = untagged.setdefault("FETCH", [])
            while dat[-1:] == b"}" and (lit := literal.match(dat)):
                records.append((dat, imap.read(int(lit["size"]))))
                dat = imap.readline()
                if not dat.endswith(b"\r\n"):  # _get_line's checks, and words
                    raise imap.abort(f"socket error: unterminated line: {dat!r}" if dat
                                     else "socket error: EOF")  # fmt: skip
                dat = dat[:-2]
            records.append(dat)
    except imap.abort as val:  # as _command_complete words them
        raise imap.abort(f"command: FETCH => {val}") from val
    except imap.error as val:
        raise imap.error(f"command: FETCH => {val}") from val
    done = imap._command_complete("FETCH", tag)  # the tag is in: checks BYE and BAD, returns
    return done


def _replay(imap: imaplib.IMAP4, line: bytes) -> None:
    """Make imap's next `readline()` return `line` (already read) instead of reading."""

    def once() -> bytes:
        del imap.readline
        return line

    imap.readline = once  # type: ignore[method-assign]


class _Boundary:
    """Translate library errors raised inside a command into spi errors (and log them)."""

    def __init__(self, session: ImapSession, what: str) -> None:
        self.session, self.what = session, what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, spi.ConnectorError):
            return
        host = self.session.settings.host
        if isinstance(exc, exceptions.IMAPClientAbortError | OSError):
            log.info(
                "imap link lost",
                extra={"action": "imap_link_lost", "host": host, "command": self.what},
            )
            self.session.close()
            raise spi.TransientError(f"{host}: connection lost during {self.what}: {exc}") from exc
        if isinstance(exc, exceptions.IMAPClientError | imaplib.IMAP4.error):
            raise spi.ConnectorError(f"{host}: {self.what} failed: {exc}") from exc


def probe_tcp(host: str, port: int, timeout: float) -> str | None:
    """None when host:port accepts a TCP connection, else a plain description why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r} ({exc.strerror}); check the host name"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}; is the server running, is the port right?"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:.0f} s (firewall? wrong host?)"
    except OSError as exc:
        return f"host {host}:{port} unreachable: {exc.strerror or exc}"
