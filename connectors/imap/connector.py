"""The IMAP connector: reads a mailbox read-only and hands the core raw RFC 822 bytes.

How one folder syncs (see `mailmanager.spi` for the contract):

- Read-only always: EXAMINE and BODY.PEEK[], so flags on the server never change.
- Folders: each `folders` entry is a role (`\\Sent`, `\\Archive`, ...: SPECIAL-USE or XLIST
  flags first, RFC 6154, then known localised names such as "Éléments envoyés") or a glob
  on mailbox names ("INBOX", "Clients/*"); `exclude_folders` takes the same forms; a role
  the server lacks is skipped. The default is INBOX, \\Sent and \\Archive.
- The cursor is compact JSON, opaque to the core: the sync mode, UIDVALIDITY, the last UID
  delivered, UIDNEXT (0 while a scan is still under way), HIGHESTMODSEQ, and for servers
  without QRESYNC the set of UIDs delivered (as ranges) so expunges show up as a UID-list
  diff. New messages are always "UID > last delivered", in UID order, so a cursor never
  moves past a message it has not returned; a full scan is the same walk from UID 0.
- Mode "q" (QRESYNC advertised after login, RFC 7162): flags via `UID FETCH 1:last (FLAGS)
  (CHANGEDSINCE m VANISHED)`, expunges from VANISHED (EARLIER). Mode "c" (CONDSTORE only):
  flags via CHANGEDSINCE, expunges by diffing `UID SEARCH` against the cursor's UID set.
  Mode "p" (neither, or a NOMODSEQ mailbox): the cursor also keeps one 64-bit XOR hash per
  block of 256 UIDs over (uid, flags); when the folder is caught up, FETCH FLAGS over the
  delivered range finds the blocks that changed and their full flag sets are reported.
- No-change probe: STATUS (UIDNEXT UIDVALIDITY MESSAGES HIGHESTMODSEQ) equal to the
  cursor answers at once without EXAMINE (modes q and c).
- UIDVALIDITY differs from the cursor -> `spi.CursorExpiredError`.
- Renames: the folder id is the mailbox name. A renamed mailbox keeps its UIDVALIDITY on
  Dovecot (RFC 3501 §2.3.1.1 allows it), so when `folder.id` no longer exists but exactly one
  mailbox has the cursor's UIDVALIDITY, we follow it there and the cursor stays valid; the
  cursor of an old id is also valid on the new id (same UIDVALIDITY), so the core can carry
  it over without a rescan. A folder that is simply gone answers an empty batch on a full
  scan (so the core drops its locations) and `CursorExpiredError` otherwise.
- Bodies come in FETCH groups budgeted by RFC822.SIZE (`fetch_batch_bytes`, at most 500
  messages, at most `limit`): one group per call, so memory is bounded whatever the folder.
  A message whose RFC822.SIZE is over `ConnectorConfig.max_message_size` is fetched headers
  only (BODY.PEEK[HEADER]) and handed over `truncated`, its size given: it is never
  downloaded whole.
- Gmail (X-GM-EXT-1): only the \\All folder is synced; provider_id is X-GM-MSGID, thread_hint
  X-GM-THRID, labels X-GM-LABELS. Gmail has no QRESYNC and IMAP names expunged messages by
  UID only, so removals from All Mail surface at the core's next full rescan.
- Drops and timeouts: reconnect with exponential backoff (tenacity); after the last try,
  `spi.TransientError`. At most two connections per account in this process.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar, TypeVar

import tenacity

from connectors.imap import adapter as ad
from mailmanager import spi

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CONNECTIONS = 2
MAX_GROUP = 500
_BLOCK_BITS = 8  # mode "p" hashes blocks of 256 UIDs
_HEADER_ESTIMATE = 16_384  # what a headers-only fetch counts against fetch_batch_bytes
_ROLE_SPECS = {f"\\{r.value}": r for r in spi.FolderRole if r is not spi.FolderRole.OTHER}
_SLOTS: dict[tuple[str, int, str], threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


_CURSOR_KEYS = {"mode": "md", "uidvalidity": "uv", "last_uid": "u", "uidnext": "n",
                "modseq": "m", "known": "k", "hashes": "h"}  # fmt: skip


@dataclass(frozen=True)
class _Cursor:
    mode: str  # "q", "c" or "p" (module docstring)
    uidvalidity: int
    last_uid: int = 0
    uidnext: int = 0  # UIDNEXT when the folder was last caught up; 0 during a scan
    modseq: int | None = None
    known: str | None = None  # UID set delivered (modes c, p)
    hashes: Mapping[str, str] = field(default_factory=dict)  # mode p: block -> xor hash

    def encode(self) -> str:
        data = {_CURSOR_KEYS[k]: v for k, v in asdict(self).items() if v is not None and v != {}}
        return json.dumps({"v": 1, **data}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        """Raises CursorExpiredError when the text is not a cursor of ours."""
        try:
            d = json.loads(text)
            if d.pop("v") != 1:
                raise ValueError("unknown version")
            cur = cls(**{name: d[key] for name, key in _CURSOR_KEYS.items() if key in d})
            if not (isinstance(cur.uidvalidity, int) and isinstance(cur.last_uid, int)):
                raise TypeError("not an IMAP cursor")
            return cur
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise spi.CursorExpiredError(f"unreadable IMAP cursor: {exc}") from exc


def _entry_hash(uid: int, flags: Iterable[str]) -> int:
    text = f"{uid}:{' '.join(sorted(flags))}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _block_hashes(flags: Mapping[int, frozenset[str]]) -> dict[str, str]:
    acc: dict[int, int] = {}
    for uid, fl in flags.items():
        acc[uid >> _BLOCK_BITS] = acc.get(uid >> _BLOCK_BITS, 0) ^ _entry_hash(uid, fl)
    return {str(b): f"{h:016x}" for b, h in acc.items()}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapConnector:
    """A mailbox on an IMAP server (Dovecot, Gmail, Exchange, iCloud...). See `spi.Connector`."""

    name: ClassVar[str] = "imap"
    options: ClassVar[tuple[spi.Option, ...]] = (
        spi.Option("host", required=True, help="IMAP server host name"),
        spi.Option("port", "int", help="993 when security is tls, 143 otherwise"),
        spi.Option(
            "security",
            default="tls",
            choices=("tls", "starttls", "none"),
            help="tls (implicit, port 993), starttls, or none (loopback only)",
        ),
        spi.Option("username", required=True, help="login name"),
        spi.Option("password", secret=True, help="password (password_env / password_file)"),
        spi.Option("oauth2_token", secret=True, help="XOAUTH2 access token (Gmail, Microsoft)"),
        spi.Option("oauth2_token_command", help="command printing a fresh XOAUTH2 token"),
        spi.Option("ssl_ca_file", "path", help="PEM CA file for a private or self-signed CA"),
        spi.Option(
            "folders",
            "list",
            default=["INBOX", "\\Sent", "\\Archive"],
            help="folders to sync: roles (\\Sent, \\Archive, \\All, \\Drafts, \\Trash, "
            "\\Junk, \\Inbox) or mailbox-name globs (Projects/*); a missing role is "
            "skipped",
        ),
        spi.Option("exclude_folders", "list", default=[], help="roles or globs to leave out"),
        spi.Option("timeout", "int", default=60, help="socket timeout in seconds"),
        spi.Option(
            "fetch_batch_bytes",
            "int",
            default=8_000_000,
            help="byte budget of one FETCH group (by RFC822.SIZE)",
        ),
        spi.Option(
            "idle",
            "bool",
            default=False,
            help="wait for INBOX changes with IDLE (wait_for_changes)",
        ),
    )

    def __init__(self, config: spi.ConnectorConfig) -> None:
        v, self.mailbox = config.values, config.mailbox
        key = f"mailboxes.{config.mailbox}"
        security = str(v.get("security") or "tls")
        if security not in ("tls", "starttls", "none"):
            raise spi.ConfigError(
                f"{key}.security", f"unknown value {security!r}", 'use "tls", "starttls" or "none"'
            )
        host = str(v.get("host") or "")
        if not host:
            raise spi.ConfigError(f"{key}.host", "missing", "set host to the IMAP server name")
        if security == "none" and not _is_loopback(host):
            raise spi.ConfigError(
                f"{key}.security",
                f'"none" sends the password in clear to {host}',
                'use security = "tls" (or "starttls")',
            )
        if not (v.get("password") or v.get("oauth2_token") or v.get("oauth2_token_command")):
            raise spi.ConfigError(
                f"{key}.password",
                "no credentials",
                "set password_env or password_file, or an oauth2 token",
            )
        ca = v.get("ssl_ca_file")
        ca_path = os.path.join(config.base_dir, str(ca)) if ca else None
        self.settings = ad.ServerSettings(
            host=host,
            port=int(str(v.get("port") or (993 if security == "tls" else 143))),
            security=security,
            username=str(v.get("username") or ""),
            password=str(v["password"]) if v.get("password") else None,
            oauth2_token=str(v["oauth2_token"]) if v.get("oauth2_token") else None,
            oauth2_token_command=str(v.get("oauth2_token_command") or "") or None,
            ssl_ca_file=ca_path,
            timeout=float(str(v.get("timeout") or 60)),
        )
        self.folders = [
            str(f) for f in _as_list(v.get("folders"), ["INBOX", "\\Sent", "\\Archive"])
        ]
        self.exclude = [str(f) for f in _as_list(v.get("exclude_folders"), [])]
        for spec in self.folders + self.exclude:
            if spec.startswith("\\") and spec.lower() not in _ROLE_SPECS:
                raise spi.ConfigError(
                    f"{key}.folders",
                    f"unknown role {spec!r}",
                    f"roles are {', '.join(sorted(_ROLE_SPECS))}",
                )
        self.batch_bytes = max(int(str(v.get("fetch_batch_bytes") or 8_000_000)), 1)
        self.idle = bool(v.get("idle"))
        self.max_size = config.max_message_size
        self.retry_attempts, self.retry_wait = 4, 0.5  # backoff 0.5, 1, 2 s between tries
        self._session: ad.ImapSession | None = None
        self._idle_session: ad.ImapSession | None = None
        self._boxes: list[ad.Mailbox] | None = None
        # The UIDs a full scan still has to fetch, from its one UID SEARCH: (mailbox,
        # UIDVALIDITY, last UID fetched) -> the rest, so a scan searches once, not per batch.
        self._queue: tuple[str, int, int, list[int]] | None = None
        with _SLOTS_LOCK:
            slot_key = (host.lower(), self.settings.port, self.settings.username)
            self._slot = _SLOTS.setdefault(slot_key, threading.BoundedSemaphore(MAX_CONNECTIONS))

    # ------------------------------------------------------------------ connections
    def _connect(self) -> ad.ImapSession:
        if not self._slot.acquire(timeout=self.settings.timeout):
            raise spi.TransientError(
                f"{MAX_CONNECTIONS} connections to {self.settings.host} "
                "for this account are already open",
                retry_after=30,
            )
        session = ad.ImapSession(self.settings)
        try:
            session.connect()
            session.login()
        except BaseException:
            session.close()
            self._slot.release()
            raise
        log.info(
            "imap connected",
            extra={"action": "imap_connect", "mailbox": self.mailbox, "mode": session.mode},
        )
        return session

    def _drop(self, session: ad.ImapSession | None) -> None:
        if session is not None:
            session.close()
            self._slot.release()

    def _call(self, op: Callable[[ad.ImapSession], T]) -> T:
        """Run op on the main session; reconnect with backoff on TransientError."""

        def reset(_: tenacity.RetryCallState) -> None:
            self._drop(self._session)
            self._session, self._boxes = None, None

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry_attempts),
            wait=tenacity.wait_exponential(multiplier=self.retry_wait, max=30),
            retry=tenacity.retry_if_exception_type(spi.TransientError),
            before_sleep=reset,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self._session is None or self._session.client is None:
                        self._drop(self._session)
                        self._session = None
                        self._session = self._connect()
                    return op(self._session)
        except spi.TransientError as exc:
            reset(retrying.statistics)  # type: ignore[arg-type]
            raise spi.TransientError(
                f"{self.settings.host}: giving up after {self.retry_attempts} tries: {exc}",
                exc.retry_after,
            ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """See `Connector.close`."""
        self._drop(self._session)
        self._drop(self._idle_session)
        self._session = self._idle_session = None
        self._boxes = None
        self._queue = None

    # ---------------------------------------------------------------------- folders
    def _mailboxes(self, session: ad.ImapSession, refresh: bool = False) -> list[ad.Mailbox]:
        if self._boxes is None or refresh:
            self._boxes = session.mailboxes()
        return self._boxes

    def _matches(self, spec: str, box: ad.Mailbox) -> bool:
        if spec.startswith("\\"):
            return box.role is _ROLE_SPECS[spec.lower()]
        if box.name.upper() == "INBOX":  # INBOX is case-insensitive (RFC 3501 §5.1)
            return fnmatch.fnmatchcase("INBOX", "INBOX" if spec.upper() == "INBOX" else spec)
        return fnmatch.fnmatchcase(box.name, spec)

    def _choose(self, boxes: list[ad.Mailbox], gmail: bool) -> list[ad.Mailbox]:
        specs = self.folders
        if gmail and any(b.role is spi.FolderRole.ALL for b in boxes):
            specs = ["\\All"]  # labels are folders on Gmail: All Mail holds each message once
        chosen: list[ad.Mailbox] = []
        for spec in specs:
            found = [b for b in boxes if self._matches(spec, b) and b not in chosen]
            chosen += sorted(found, key=lambda b: b.name)
        return [b for b in chosen if not any(self._matches(x, b) for x in self.exclude)]

    def list_folders(self) -> Sequence[spi.RemoteFolder]:
        """See `Connector.list_folders`."""

        def op(session: ad.ImapSession) -> list[spi.RemoteFolder]:
            boxes = self._choose(self._mailboxes(session, refresh=True), session.is_gmail)
            return [spi.RemoteFolder(b.name, b.name, b.role) for b in boxes]

        return self._call(op)

    def _locate(
        self, s: ad.ImapSession, folder_id: str, cur: _Cursor | None, refresh: bool
    ) -> str | None:
        names = [b.name for b in self._mailboxes(s, refresh)]
        if folder_id in names:
            return folder_id
        if not refresh:
            return self._locate(s, folder_id, cur, True)
        if cur is None or not cur.uidvalidity:
            return None
        twins = []
        for name in names:  # a rename keeps UIDVALIDITY (module docstring)
            try:
                if s.status(name).uidvalidity == cur.uidvalidity:
                    twins.append(name)
            except ad.MailboxMissingError:
                continue
        if len(twins) != 1:
            return None
        log.info(
            "imap folder renamed",
            extra={"action": "imap_folder_renamed", "mailbox": self.mailbox, "folder": twins[0]},
        )
        return twins[0]

    # ----------------------------------------------------------------------- fetch
    def fetch_changes(
        self, folder: spi.RemoteFolder, cursor: str | None, limit: int
    ) -> spi.ChangeBatch:
        """See `Connector.fetch_changes`."""
        cur = _Cursor.decode(cursor) if cursor else None
        return self._call(lambda s: self._fetch(s, folder, cur, max(limit, 1)))

    def _fetch(
        self, s: ad.ImapSession, folder: spi.RemoteFolder, cur: _Cursor | None, limit: int
    ) -> spi.ChangeBatch:
        for refresh in (False, True):
            name = self._locate(s, folder.id, cur, refresh)
            if name is None:
                break
            try:
                return self._fetch_from(s, name, cur, limit)
            except ad.MailboxMissingError:
                if refresh:  # listed a moment ago, yet refused: not a rename, an error
                    raise
                # else: deleted or renamed since our cached LIST; look again
        if cur is not None and cur.uidvalidity:
            raise spi.CursorExpiredError(f"folder {folder.id!r} no longer exists")
        gone = _Cursor(mode=s.mode, uidvalidity=0).encode()  # "still gone" on the next call
        return spi.ChangeBatch(messages=[], cursor=gone, reset=cur is None)

    def _fetch_from(
        self, s: ad.ImapSession, name: str, cur: _Cursor | None, limit: int
    ) -> spi.ChangeBatch:
        if cur is not None and cur.uidnext and cur.mode in ("q", "c"):
            st = s.status(name)
            same = (st.uidvalidity, st.uidnext, st.highestmodseq) == (
                cur.uidvalidity,
                cur.uidnext,
                cur.modseq,
            )
            if same and (cur.mode == "q" or st.messages == len(ad.parse_uid_set(cur.known or ""))):
                return spi.ChangeBatch(messages=[], cursor=cur.encode())
        st = s.examine(name)
        mode = s.mode if st.highestmodseq is not None else "p"
        if cur is not None and (cur.mode, mode) == ("c", "q"):
            cur = replace(cur, mode="q", known=None)  # QRESYNC newly advertised: modseq holds
        if cur is not None and (st.uidvalidity != cur.uidvalidity or cur.mode != mode):
            raise spi.CursorExpiredError(
                f"{name}: UIDVALIDITY {cur.uidvalidity} -> {st.uidvalidity} (or sync mode changed)"
            )
        last = cur.last_uid if cur else 0
        queued = self._queue
        from_queue = queued is not None and queued[:3] == (name, st.uidvalidity, last)
        # This scan's earlier search, not yet fetched; else search now.
        new = queued[3] if queued is not None and from_queue else s.search_uids(last + 1)
        picked, sizes = self._pick(s, new, limit)
        fetched = self._fetch_picked(s, picked, sizes)
        new_last = picked[-1] if picked else last
        rest = new[len(picked) :]
        self._queue = (name, st.uidvalidity, new_last, rest) if rest else None
        more = bool(rest)
        if from_queue and not more:  # mail may have come after that search: look again
            more = bool(s.search_uids(new_last + 1))
        removed: list[int] = []
        changes: dict[int, tuple[frozenset[str], str | None]] = {}
        if cur is not None and last and cur.modseq is not None and st.highestmodseq != cur.modseq:
            changes, vanished = s.fetch_flags(f"1:{last}", changed_since=cur.modseq)
            removed = [uid for uid in vanished if uid <= last]
        known: set[int] = set(ad.parse_uid_set(cur.known or "")) if cur else set()
        known |= {m.uid for m in fetched}
        hashes = {int(k): int(h, 16) for k, h in cur.hashes.items()} if cur else {}
        for m in fetched if mode == "p" else ():  # the block hashes serve mode "p" only
            hashes[m.uid >> _BLOCK_BITS] = hashes.get(m.uid >> _BLOCK_BITS, 0) ^ _entry_hash(
                m.uid, m.flags
            )
        if mode in ("c", "p") and not more and new_last:
            if mode == "c":
                present = set(s.search_uids(1, new_last))
            else:
                now, _ = s.fetch_flags(f"1:{new_last}")
                present = set(now)
                server = _block_hashes({uid: fl for uid, (fl, _) in now.items()})
                for uid, value in now.items():
                    block = uid >> _BLOCK_BITS
                    if server[str(block)] != f"{hashes.get(block, 0):016x}":
                        changes[uid] = value
                hashes = {int(b): int(h, 16) for b, h in server.items()}
            removed = sorted(known - present)
            known = present
        next_cursor = _Cursor(
            mode,
            st.uidvalidity,
            new_last,
            0 if more else st.uidnext,
            st.highestmodseq,
            ad.to_uid_set(known) if mode in ("c", "p") else None,
            {str(b): f"{h:016x}" for b, h in hashes.items()} if mode == "p" else {},
        )
        log.debug(
            "imap batch",
            extra={
                "action": "imap_fetch",
                "mailbox": self.mailbox,
                "messages": len(fetched),
                "removed": len(removed),
                "flag_changes": len(changes),
                "more": more,
            },
        )
        if s.is_gmail and removed:
            removed = []  # UIDs cannot be mapped to X-GM-MSGIDs once gone (module docstring)
        return spi.ChangeBatch(
            messages=[self._raw(m, s.is_gmail) for m in fetched],
            cursor=next_cursor.encode(),
            more=more,
            removed=[str(uid) for uid in removed],
            flag_changes=[
                spi.FlagChange(gm or str(uid), fl)
                for uid, (fl, gm) in sorted(changes.items())
                if uid not in removed
            ],
            reset=cur is None,
        )

    def _pick(
        self, s: ad.ImapSession, new: list[int], limit: int
    ) -> tuple[list[int], dict[int, int]]:
        """The next FETCH group: UIDs in order until the byte budget, limit or MAX_GROUP;
        and the RFC822.SIZE of each (a message over the size limit counts its headers
        only, for that is all we fetch of it)."""
        candidates = new[: min(limit, MAX_GROUP)]
        if not candidates:
            return [], {}
        sizes = s.sizes(candidates)
        picked: list[int] = []
        total = 0
        for uid in candidates:
            size = sizes.get(uid, 0)  # absent: expunged meanwhile; the fetch will skip it
            if self._too_large(size):
                size = _HEADER_ESTIMATE
            if picked and total + size > self.batch_bytes:
                break
            picked.append(uid)
            total += size
        return picked, sizes

    def _too_large(self, size: int) -> bool:
        return self.max_size is not None and size > self.max_size

    def _fetch_picked(
        self, s: ad.ImapSession, picked: list[int], sizes: Mapping[int, int]
    ) -> list[ad.FetchedMessage]:
        """The picked messages in UID order: whole, or headers only when over the limit."""
        big = [uid for uid in picked if self._too_large(sizes.get(uid, 0))]
        whole = [uid for uid in picked if not self._too_large(sizes.get(uid, 0))]
        fetched = s.fetch_messages(whole) if whole else []
        if big:
            log.info(
                "imap messages over the size limit: headers only",
                extra={"action": "imap_fetch_headers_only", "mailbox": self.mailbox,
                       "messages": len(big)},
            )  # fmt: skip
            fetched += s.fetch_messages(big, headers_only=True)
        return sorted(fetched, key=lambda m: m.uid)

    @staticmethod
    def _raw(m: ad.FetchedMessage, gmail: bool) -> spi.RawMessage:
        return spi.RawMessage(
            provider_id=(m.gm_msgid or str(m.uid)) if gmail else str(m.uid),
            raw=m.raw,
            flags=m.flags,
            thread_hint=m.gm_thrid,
            internal_date=m.internal_date,
            labels=m.labels,
            size=m.size,
            truncated=m.truncated,
        )

    # --------------------------------------------------------------------- extras
    def wait_for_changes(self, timeout: float) -> bool:
        """With `idle = true`, block in IDLE on INBOX (RFC 2177) on a second connection until
        the server reports something or `timeout` passes (capped at 29 min, the RFC's
        re-issue limit); True when it did. Without `idle`, returns False at once.

        Raises TransientError (link lost), AuthError.
        """
        if not self.idle:
            return False
        try:
            if self._idle_session is None:
                self._idle_session = self._connect()
                self._idle_session.examine("INBOX")
            return self._idle_session.idle_wait(min(timeout, 29 * 60))
        except spi.TransientError:
            self._drop(self._idle_session)
            self._idle_session = None
            raise

    def check(self) -> Sequence[spi.CheckStep]:
        """See `Connector.check`."""
        s, steps, step = self.settings, [], "reach"
        problem = ad.probe_tcp(s.host, s.port, min(s.timeout, 10.0))
        steps.append(spi.CheckStep(step, not problem, problem or f"{s.host}:{s.port} answers"))
        if problem:
            return steps
        if not self._slot.acquire(timeout=s.timeout):
            busy = f"{MAX_CONNECTIONS} connections to this account are already open here"
            return [*steps, spi.CheckStep("connect", False, f"{busy}; retry when a sync ends")]
        session = ad.ImapSession(s)
        try:
            step = "tls"
            session.connect()
            steps.append(spi.CheckStep(step, True, _TLS_DETAIL[s.security]))
            step = "login"
            session.login()
            steps.append(spi.CheckStep(step, True, f"logged in as {s.username!r}"))
            step, caps = "capabilities", session.capabilities
            missing = [c for c in ("CONDSTORE", "QRESYNC", "SPECIAL-USE", "IDLE") if c not in caps]
            detail = f"sync mode: {_MODE_DETAIL[session.mode]}"
            detail += f"; missing {', '.join(missing)}" if missing else ""
            ok = bool({"IMAP4REV1", "IMAP4REV2"} & caps) and (not self.idle or "IDLE" in caps)
            detail += "" if ok else "; the server lacks IMAP4rev1, or IDLE while idle = true"
            steps.append(spi.CheckStep(step, ok, detail))
            step, boxes = "folders", session.mailboxes()
            chosen = self._choose(boxes, session.is_gmail)
            parts = [f"Gmail: {', '.join(b.name for b in chosen) or 'no All Mail'}"]
            if not session.is_gmail:
                own, parts = self._choose(boxes, False), []
                for spec in self.folders:
                    names = ", ".join(b.name for b in own if self._matches(spec, b))
                    parts.append(f"{spec} -> {names or '(none)'}")
            detail = "; ".join(parts) + ("" if chosen else "; nothing to sync: fix folders")
            steps.append(spi.CheckStep(step, bool(chosen), detail))
        except spi.AuthError as exc:
            fix = "check username and password (password_env / password_file) or the token"
            steps.append(spi.CheckStep("login", False, f"{exc}; {fix}"))
        except spi.ConnectorError as exc:  # TlsError names the certificate problem
            steps.append(spi.CheckStep(step, False, str(exc)))
        finally:
            session.close()
            self._slot.release()
        return steps


_TLS_DETAIL = {
    "tls": "implicit TLS, certificate verified",
    "starttls": "STARTTLS, certificate verified",
    "none": "no TLS: plaintext, allowed on loopback only",
}
_MODE_DETAIL = {
    "q": "QRESYNC",
    "c": "CONDSTORE + UID-list diffs",
    "p": "UID-list and flag diffs (slower)",
}


def _as_list(value: object, default: list[str]) -> list[object]:
    if value is None:
        return list(default)
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, Iterable) else list(default)
