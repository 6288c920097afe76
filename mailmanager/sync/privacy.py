"""What a sync keeps of each message under the privacy settings (issue #16).

A mailbox says what is stored (`storage`, per folder `storage_folders`) and which folders are
never fetched (`exclude_folders`); a folder pattern matches a folder's name, path, last path
component or role, case-insensitively, with `*`/`?` globs. The levels:

- `full`: everything, raw bytes included;
- `headers`: no body: no snippet, no attachment list, and of the raw bytes only the header
  block;
- `metadata`: no subject either, and no raw bytes at all.

Threading (Message-ID, In-Reply-To, References), matching (addresses), and reminders
(direction, times, and the reply facts read in the body at parse time, kept as flags) work
at every level.

Erased people (`mailmanager privacy erase`) are remembered as tombstones: the keyed hash
(HMAC-SHA-256 with a per-installation salt, `address_hash`) of their address. At ingest a
message whose every external participant is erased is not stored at all; a message where
an erased person appears beside others is stored without them (their participants rows,
sender and bounce recipient gone), without raw bytes or body text, as `scrubbed`. So a
re-sync, even a full one, never brings an erased person back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager import spi
from mailmanager.db import models, store
from mailmanager.mail import parsing

ROLES = ("from_", "sender", "reply_to", "to", "cc", "bcc")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


# --- folders -----------------------------------------------------------------------------------


def folder_matches(pattern: str, folder: spi.RemoteFolder) -> bool:
    """`pattern` names `folder`: its name, path, last path component or role (any case)."""
    pat = pattern.strip().casefold()
    last = re.split(r"[/\\.]", folder.id)[-1] if folder.id else folder.name
    words = {folder.name.casefold(), folder.id.casefold(), last.casefold(), str(folder.role)}
    return any(fnmatchcase(w, pat) for w in words)


def excluded(mb: config_mod.MailboxConfig, folder: spi.RemoteFolder) -> bool:
    """The folder is one the mailbox's `exclude_folders` names: it is never fetched."""
    return any(folder_matches(p, folder) for p in mb.exclude_folders)


def level(mb: config_mod.MailboxConfig, folder: spi.RemoteFolder) -> str:
    """What is stored of the folder's messages: its `storage_folders` entry, else `storage`."""
    for pattern, value in mb.storage_folders.items():
        if folder_matches(pattern, folder):
            return value
    return mb.storage


# --- address hashes and tombstones --------------------------------------------------------------


def address_key(address: str) -> str:
    """An address as hashed and compared when erasing: trimmed, case-folded."""
    return address.strip().casefold()


def _salt(session: Session) -> bytes:
    row = session.get(models.PrivacySalt, 1)
    if row is None:
        t = store.table(models.PrivacySalt)
        store.insert_ignore(session, t, [{"id": 1, "salt": secrets.token_hex(32)}])
        row = session.get(models.PrivacySalt, 1)
        assert row is not None
    return row.salt.encode()


def hasher(session: Session) -> Callable[[str], str]:
    """The keyed hash of an address under this installation's salt (made on first use)."""
    salt = _salt(session)

    def digest(address: str) -> str:
        return hmac.new(salt, address_key(address).encode(), hashlib.sha256).hexdigest()

    return digest


def address_hash(session: Session, address: str) -> str:
    return hasher(session)(address)


def erased_check(session: Session) -> Callable[[str], bool] | None:
    """A test "is this address erased?", or None when nobody is (the usual case)."""
    hashes = frozenset(session.scalars(sa.select(models.PrivacyTombstone.address_hash)))
    if not hashes:
        return None
    digest = hasher(session)
    return lambda address: digest(address) in hashes


def only_erased(
    addresses: Iterable[str], erased: Callable[[str], bool], is_ours: Callable[[str], bool]
) -> bool:
    """Every external participant (there is at least one) is erased: the message is theirs."""
    external = [a for a in addresses if a and not is_ours(a)]
    return bool(external) and all(erased(a) for a in external)


# --- what a message keeps ----------------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    """What ingest stores of one message: its parse result and how it was kept
    (`Message.stored_as`, which also says what of its raw bytes is kept: `stored_raw`)."""

    parsed: parsing.ParsedMessage
    stored_as: str


def header_block(raw: bytes) -> bytes:
    """The raw header block, up to and without the blank line that ends it."""
    m = _BLANK_LINE.search(raw)
    return (raw[: m.start()] if m else raw) + b"\r\n\r\n"


def stored_raw(raw: bytes, stored_as: str) -> bytes | None:
    """The raw bytes kept of a message (or quarantined item) kept as `stored_as`: all of
    them for `full`, the header block for `headers`, none (None) otherwise."""
    if stored_as == "full":
        return raw
    return header_block(raw) if stored_as == "headers" else None


def addresses(p: parsing.ParsedMessage) -> list[str]:
    return [a.email for role in ROLES for a in getattr(p, role)]


def keep(
    p: parsing.ParsedMessage,
    store_level: str,
    erased: Callable[[str], bool] | None,
    is_ours: Callable[[str], bool],
) -> Kept | None:
    """What is stored of `p` at `store_level` with these erased people; None: nothing."""
    stored_as = store_level
    if erased is not None and any(erased(a) for a in addresses(p)):
        if only_erased(addresses(p), erased, is_ours):
            return None
        gone = {role: tuple(a for a in getattr(p, role) if not erased(a.email)) for role in ROLES}
        bounce = p.bounce
        if bounce is not None:
            left = tuple(r for r in bounce.recipients if not erased(r))
            bounce = dataclasses.replace(bounce, recipients=left)
        p = dataclasses.replace(p, **gone, bounce=bounce)  # type: ignore[arg-type]
        stored_as = "scrubbed"
    if stored_as == "full":
        return Kept(p, stored_as)
    p = dataclasses.replace(p, snippet="", attachments=())
    if stored_as == "metadata":
        p = dataclasses.replace(p, subject="", subject_normalized="", subject_had_prefix=False)
    return Kept(p, stored_as)


# --- private threads ---------------------------------------------------------------------------


def carry_private(session: Session, survivor: int, losers: Sequence[int]) -> None:
    """A thread merge keeps a private thread private (a `MergeHook`): the survivor takes the
    owner of a private loser when it has none."""
    T = store.table(models.Thread)
    owner = session.execute(
        sa.select(T.c.private_owner).where(T.c.id.in_(losers), T.c.private_owner.is_not(None))
    ).scalar()
    if owner is not None:
        session.execute(
            sa.update(T)
            .where(T.c.id == survivor, T.c.private_owner.is_(None))
            .values(private_owner=owner)
        )
