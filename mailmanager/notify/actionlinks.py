"""Signed links in reminder digests: open the thread, snooze 3 days, done, dismiss.

A link is `<[web] base_url>/a/<token>`; the token says who (the digest's recipient), which
reminder, which action and until when (`LIFETIME`, 14 days), signed with HMAC-SHA256 under
the key of `[web] secret_file`. The web workspace verifies it (`verify`), shows a page with
one button (mail scanners fetch every link: a GET never changes anything), and on that POST
acts once: it records `token_hash` in `web_action_uses`, so a replayed link is refused.

The key file is created on first use (32 random bytes, hex, mode 600) and must stay private:
whoever reads it can forge links. It is never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailmanager import config as config_mod
from mailmanager.errors import MailmanagerError

log = logging.getLogger(__name__)

ACTIONS = ("open", "snooze", "done", "dismiss")
LIFETIME = timedelta(days=14)
SNOOZE = "3d"  # what a digest's "snooze" link does (`reminders.actions.parse_duration`)
_DOMAIN = b"mailmanager-action-link:v1:"


class LinkError(MailmanagerError):
    """Raised by `verify`: `reason` is "invalid" (tampered, malformed, other key) or
    "expired" (then `user` is the genuine link's user, e.g. to answer in their language)."""

    def __init__(self, reason: str, user: str | None = None) -> None:
        super().__init__(f"action link {reason}")
        self.reason = reason
        self.user = user


class SecretFileError(MailmanagerError):
    """Raised when the `[web] secret_file` cannot be created or read, or is not private."""


@dataclass(frozen=True)
class Claim:
    """What a valid token allows: `action` on reminder `reminder_id` for user `user`."""

    user: str
    reminder_id: int
    action: str
    expires_at: datetime


@dataclass(frozen=True)
class ItemLinks:
    """The four links of one digest item (`open` is "" for a reminder without a thread)."""

    open: str
    snooze: str
    done: str
    dismiss: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(path: str) -> bytes:
    """The signing key in `path`, created (mode 600) when the file does not exist.

    Raises SecretFileError when it cannot be written or read, or others may read it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretFileError(
            f"cannot create the web secret file {path}: {exc.strerror}; "
            "fix [web] secret_file or the directory's permissions"
        ) from exc
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read the web secret file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(f"the web secret file {path} is readable by others: chmod 600 it")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 32:
        raise SecretFileError(
            f"the web secret file {path} does not hold a key: delete it and a new one is made "
            "(links already sent stop working)"
        )
    return key


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest())


def sign(key: bytes, user: str, reminder_id: int, action: str, now: datetime) -> str:
    """A token allowing `user` to apply `action` to `reminder_id` until now + LIFETIME."""
    if action not in ACTIONS:
        raise ValueError(action)
    body = {
        "u": user,
        "r": reminder_id,
        "a": action,
        "e": int((now + LIFETIME).timestamp()),
        "n": secrets.token_hex(4),  # every digest's links are distinct tokens
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, payload)}"


def verify(key: bytes, token: str, now: datetime) -> Claim:
    """The claim of a genuine, unexpired token. Raises LinkError otherwise."""
    payload, dot, mac = token.partition(".")
    if not dot or not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        raise LinkError("invalid")
    try:
        body = json.loads(_unb64(payload))
        claim = Claim(
            user=str(body["u"]),
            reminder_id=int(body["r"]),
            action=str(body["a"]),
            expires_at=datetime.fromtimestamp(int(body["e"]), UTC),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise LinkError("invalid") from None
    if claim.action not in ACTIONS:
        raise LinkError("invalid")
    if now >= claim.expires_at:
        raise LinkError("expired", claim.user)
    return claim


def token_hash(token: str) -> str:
    """The SHA-256 (hex) a used token is recorded under."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class Linker:
    """Makes a digest's links for one user at one time."""

    base_url: str
    key: bytes
    user: str
    now: datetime

    def url(self, reminder_id: int, action: str) -> str:
        return f"{self.base_url}/a/{sign(self.key, self.user, reminder_id, action, self.now)}"

    def item(self, reminder_id: int, has_thread: bool) -> ItemLinks:
        return ItemLinks(
            open=self.url(reminder_id, "open") if has_thread else "",
            snooze=self.url(reminder_id, "snooze"),
            done=self.url(reminder_id, "done"),
            dismiss=self.url(reminder_id, "dismiss"),
        )

    @property
    def followups_url(self) -> str:
        return f"{self.base_url}/followups"


def linker(cfg: config_mod.Config, user: str, now: datetime) -> Linker | None:
    """The link maker for `user`'s digest; None when `[web] base_url` is not set, or when
    the key file cannot be read (logged: the digest then goes out without links, which is
    better than not at all)."""
    if not cfg.web.base_url:
        return None
    try:
        key = load_key(cfg.web.secret_file)
    except SecretFileError as exc:
        log.error(
            "digest links left out", extra={"action": "digest_links_error", "error": str(exc)}
        )
        return None
    return Linker(cfg.web.base_url, key, user, now)
