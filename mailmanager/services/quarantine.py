"""What the sync could not store as messages: `mailmanager quarantine list|show|retry|drop`.

A fetched item without a usable header block, or one that failed to store, is kept in the
quarantine table with its reason and raw bytes (`sync.ingest`), never dropped. These
functions read it for a person: the mailbox and folder it came from, its provider id, and
the reason in plain words. `retry` runs the kept bytes through the sync's own path again
(`sync.engine.store_one`: parse, store, thread, match, reminders) once the cause is fixed
(a parser bug, a database limit); `drop` deletes an item for good, in the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager import spi
from mailmanager.db import audit
from mailmanager.db.models import Folder, Mailbox, Quarantine
from mailmanager.mail import parsing
from mailmanager.sync import engine, ingest
from mailmanager.sync.threadstore import clean

logger = logging.getLogger(__name__)

# The reason codes of `mail.parsing.parse` (and `mail.mime.quarantine_reason`), in words.
REASONS = {
    "empty": "the item is empty (no bytes, or only blank lines)",
    "outlook_msg_ole2": (
        "an Outlook .msg file (OLE2 compound file), not an RFC 822 message: open it in "
        "Outlook and save it as .eml, or export the mailbox as mbox"
    ),
    "no_header_block": "no header block: the item does not start with e-mail headers",
    "symlink_outside_root": (
        "a symlink leading out of the maildir root: not read (remove the link, or move the "
        "file into the maildir)"
    ),
}


def describe_reason(reason: str) -> str:
    """A reason code in plain words; an unknown code is returned as it is."""
    if reason in REASONS:
        return REASONS[reason]
    code, _, detail = reason.partition(":")
    if code in REASONS and detail:
        return f"{REASONS[code]}: {detail.strip()}"
    if reason.startswith("parser_error"):
        error = reason.partition(":")[2].strip()
        return f"the parser failed on it ({error}): a bug, please report it with the raw item"
    return reason


@dataclass(frozen=True)
class QuarantinedItem:
    id: int
    mailbox: str
    folder: str
    provider_id: str
    reason: str  # the code stored by the sync
    explanation: str  # the reason in plain words
    size: int
    sha256: str
    quarantined_at: str | None
    has_raw: bool


_COLUMNS = (
    Quarantine.id,
    Mailbox.name,
    Folder.name,
    Folder.remote_id,
    Quarantine.provider_id,
    Quarantine.reason,
    Quarantine.size,
    Quarantine.sha256,
    Quarantine.created_at,
    Quarantine.data.is_not(None),
)


def _select() -> Any:
    return (
        sa.select(*_COLUMNS)
        .join(Folder, Folder.id == Quarantine.folder_id)
        .join(Mailbox, Mailbox.id == Folder.mailbox_id)
    )


def _item(row: Any) -> QuarantinedItem:
    qid, mailbox, folder, remote, provider_id, reason, size, sha, at, has_raw = row
    return QuarantinedItem(
        qid,
        mailbox,
        folder or remote,
        provider_id,
        reason,
        describe_reason(reason),
        size or 0,
        sha,
        at.isoformat() if isinstance(at, datetime) else None,
        bool(has_raw),
    )


def list_items(session: Session, mailbox: str | None = None) -> list[QuarantinedItem]:
    """Every quarantined item (of `mailbox`, by name, when given), oldest first."""
    stmt = _select().order_by(Quarantine.created_at, Quarantine.id)
    if mailbox is not None:
        stmt = stmt.where(Mailbox.name == mailbox)
    return [_item(row) for row in session.execute(stmt)]


def page_items(
    session: Session, mailbox: str | None = None, after: int = 0, limit: int = 50
) -> list[QuarantinedItem]:
    """At most `limit` quarantined items (of `mailbox`, by name, when given) whose id is
    above `after`, by id: a keyset page (the API's)."""
    stmt = _select().where(Quarantine.id > after).order_by(Quarantine.id).limit(limit)
    if mailbox is not None:
        stmt = stmt.where(Mailbox.name == mailbox)
    return [_item(row) for row in session.execute(stmt)]


def get_item(session: Session, item_id: int) -> QuarantinedItem | None:
    """One quarantined item by id, or None."""
    row = session.execute(_select().where(Quarantine.id == item_id)).first()
    return _item(row) if row is not None else None


def raw_bytes(session: Session, item_id: int) -> bytes | None:
    """The bytes the provider returned for the item, or None (no such item, or not kept)."""
    return session.scalar(sa.select(Quarantine.data).where(Quarantine.id == item_id))


@dataclass(frozen=True)
class RetryOutcome:
    """What `retry` did with one item: `stored` (the row is gone, `message_id` is the
    message it became) or not, with the `reason` it is still kept for."""

    id: int
    stored: bool
    reason: str
    message_id: int | None = None


def retry(session: Session, cfg: config_mod.Config, item_id: int, actor: str) -> RetryOutcome:
    """Run item `item_id`'s kept bytes through the sync's path again (module docstring), in
    a savepoint of the caller's transaction: stored, the row is deleted; not, the row keeps
    the new reason. Raises LookupError when there is no such item, and what the database
    raises when it is unreachable (`ingest.is_outage`)."""
    row = session.get(Quarantine, item_id)
    if row is None:
        raise LookupError(f"no quarantined item {item_id}")
    folder = session.get(Folder, row.folder_id)
    mailbox = session.get(Mailbox, folder.mailbox_id) if folder is not None else None
    if not row.data or mailbox is None:
        return RetryOutcome(item_id, False, row.reason)  # no bytes kept: nothing to retry
    parsed = parsing.parse(row.data, max_size=cfg.sync.max_message_size)
    outcome = RetryOutcome(item_id, False, getattr(parsed, "reason", ""))
    if isinstance(parsed, parsing.ParsedMessage):
        item = ingest.Fetched(row.provider_id, row.data, parsed)
        try:
            with session.begin_nested():
                result = engine.store_one(session, cfg, mailbox.name, row.folder_id, item)
                session.delete(row)
            ids = result.message_ids
            outcome = RetryOutcome(item_id, True, "", ids[0] if ids else None)
        except spi.ConfigError as exc:
            outcome = RetryOutcome(item_id, False, clean(f"not retried: {exc}", 500))
        except Exception as exc:
            if ingest.is_outage(exc):
                raise
            outcome = RetryOutcome(
                item_id, False, clean(f"could not store the message: {ingest.failure(exc)}", 500)
            )
    if not outcome.stored and not outcome.reason.startswith("not retried"):
        row.reason = outcome.reason  # kept, with what stopped it this time
    audit.record(
        session,
        actor,
        "quarantine.retry",
        f"quarantine:{item_id}",
        {"stored": outcome.stored, "reason": outcome.reason, "message_id": outcome.message_id},
    )
    logger.info(
        "quarantine retried",
        extra={"action": "quarantine_retry", "item": item_id, "stored": outcome.stored},
    )
    return outcome


def retry_many(
    session: Session, cfg: config_mod.Config, actor: str, mailbox: str | None = None
) -> list[RetryOutcome]:
    """`retry` every quarantined item (of `mailbox`, by name, when given), oldest first."""
    return [retry(session, cfg, item.id, actor) for item in list_items(session, mailbox)]


def drop(session: Session, item_id: int, actor: str) -> QuarantinedItem:
    """Delete quarantined item `item_id` and its bytes, recording what it was (never its
    bytes) in the audit log. Raises LookupError when there is no such item."""
    item = get_item(session, item_id)
    if item is None:
        raise LookupError(f"no quarantined item {item_id}")
    session.execute(sa.delete(Quarantine).where(Quarantine.id == item_id))
    audit.record(
        session,
        actor,
        "quarantine.drop",
        f"quarantine:{item_id}",
        {
            "mailbox": item.mailbox,
            "folder": item.folder,
            "provider_id": item.provider_id,
            "reason": item.reason,
            "size": item.size,
            "sha256": item.sha256,
        },
    )
    return item
