"""What the sync could not store as messages: `mailmanager quarantine list|show`.

A fetched item without a usable header block is kept in the quarantine table with its reason
and raw bytes (`sync.ingest`), never dropped. These functions read it for a person: the
mailbox and folder it came from, its provider id, and the reason in plain words. (Retrying
and dropping items, issue #16, will sit beside them.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db.models import Folder, Mailbox, Quarantine

# The reason codes of `mail.parsing.parse` (and `mail.mime.quarantine_reason`), in words.
REASONS = {
    "empty": "the item is empty (no bytes, or only blank lines)",
    "outlook_msg_ole2": (
        "an Outlook .msg file (OLE2 compound file), not an RFC 822 message: open it in "
        "Outlook and save it as .eml, or export the mailbox as mbox"
    ),
    "no_header_block": "no header block: the item does not start with e-mail headers",
}


def describe_reason(reason: str) -> str:
    """A reason code in plain words; an unknown code is returned as it is."""
    if reason in REASONS:
        return REASONS[reason]
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


def get_item(session: Session, item_id: int) -> QuarantinedItem | None:
    """One quarantined item by id, or None."""
    row = session.execute(_select().where(Quarantine.id == item_id)).first()
    return _item(row) if row is not None else None


def raw_bytes(session: Session, item_id: int) -> bytes | None:
    """The bytes the provider returned for the item, or None (no such item, or not kept)."""
    return session.scalar(sa.select(Quarantine.data).where(Quarantine.id == item_id))
