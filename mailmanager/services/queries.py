"""Read-only questions the CLI (and later the web UI) asks: counts, thread lists, details.

Every function takes a Session and returns plain values (dataclasses and dicts) ready to be
printed or serialised as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models
from mailmanager.db.models import Folder, Mailbox, Message, MessageLocation, Participant, Thread


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def totals(session: Session) -> dict[str, int]:
    """Database-wide counts."""

    def count(model: Any, *where: Any) -> int:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)

    return {
        "messages": count(Message),
        "locations": count(MessageLocation),
        "threads": count(Thread),
        "threads_with_replies": count(Thread, Thread.message_count > 1),
        "quarantined": count(models.Quarantine),
        "auto_replies": count(Message, Message.is_auto_reply),
        "bulk": count(Message, Message.is_bulk),
        "bounces": count(Message, Message.is_bounce),
        "participants": count(Participant),
    }


def mailbox_status(session: Session) -> list[dict[str, Any]]:
    """Per mailbox: last sync, last error, folders and message locations."""
    locations = dict(
        session.execute(
            sa.select(Folder.mailbox_id, sa.func.count(MessageLocation.id))
            .join(MessageLocation, MessageLocation.folder_id == Folder.id)
            .group_by(Folder.mailbox_id)
        ).all()
    )
    quarantined = dict(
        session.execute(
            sa.select(Folder.mailbox_id, sa.func.count(models.Quarantine.id))
            .join(models.Quarantine, models.Quarantine.folder_id == Folder.id)
            .group_by(Folder.mailbox_id)
        ).all()
    )
    folders = dict(
        session.execute(
            sa.select(Folder.mailbox_id, sa.func.count(Folder.id))
            .where(Folder.present)
            .group_by(Folder.mailbox_id)
        ).all()
    )
    out = []
    for mb in session.scalars(sa.select(Mailbox).order_by(Mailbox.name)):
        out.append(
            {
                "name": mb.name,
                "connector": mb.connector,
                "enabled": mb.enabled,
                "last_sync_at": _iso(mb.last_sync_at),
                "last_success_at": _iso(mb.last_success_at),
                "synced_until": _iso(mb.synced_until),
                "last_error": mb.last_error,
                "folders": folders.get(mb.id, 0),
                "messages": locations.get(mb.id, 0),
                "quarantined": quarantined.get(mb.id, 0),
            }
        )
    return out


@dataclass(frozen=True)
class FolderCursor:
    """A present folder of a mailbox and the sync cursor stored for it."""

    remote_id: str
    name: str
    role: str
    cursor: str


def folder_cursors(session: Session, mailbox: str) -> list[FolderCursor]:
    """The present folders of mailbox `mailbox` (by name) that have a stored cursor."""
    rows = session.execute(
        sa.select(Folder.remote_id, Folder.name, Folder.role, Folder.cursor)
        .join(Mailbox, Mailbox.id == Folder.mailbox_id)
        .where(Mailbox.name == mailbox, Folder.present, Folder.cursor.is_not(None))
    )
    return [
        FolderCursor(remote_id, name, role, cursor)
        for remote_id, name, role, cursor in rows
        if cursor is not None  # never, after the WHERE; says so to the type checker
    ]


@dataclass(frozen=True)
class ThreadRow:
    id: int
    subject: str
    message_count: int
    first_at: str | None
    last_at: str | None
    last_direction: str | None


def list_threads(
    session: Session, limit: int = 50, mailbox: str | None = None, search: str | None = None
) -> list[ThreadRow]:
    stmt = sa.select(Thread).order_by(Thread.last_at.desc().nulls_last(), Thread.id.desc())
    if mailbox is not None:
        stmt = stmt.where(
            Thread.id.in_(
                sa.select(Message.thread_id)
                .join(MessageLocation, MessageLocation.message_id == Message.id)
                .join(Folder, Folder.id == MessageLocation.folder_id)
                .join(Mailbox, Mailbox.id == Folder.mailbox_id)
                .where(Mailbox.name == mailbox)
            )
        )
    if search:
        stmt = stmt.where(Thread.subject.ilike(f"%{search}%"))
    return [
        ThreadRow(
            t.id, t.subject, t.message_count, _iso(t.first_at), _iso(t.last_at), t.last_direction
        )
        for t in session.scalars(stmt.limit(limit))
    ]


def thread_detail(session: Session, thread_id: int) -> dict[str, Any] | None:
    thread = session.get(Thread, thread_id)
    if thread is None:
        return None
    messages = session.scalars(
        sa.select(Message)
        .where(Message.thread_id == thread_id)
        .order_by(Message.sent_at.nulls_first(), Message.id)
    ).all()
    return {
        "id": thread.id,
        "subject": thread.subject,
        "first_at": _iso(thread.first_at),
        "last_at": _iso(thread.last_at),
        "last_inbound_at": _iso(thread.last_inbound_at),
        "last_outbound_at": _iso(thread.last_outbound_at),
        "last_direction": thread.last_direction,
        "message_count": thread.message_count,
        "messages": [_message_brief(m) for m in messages],
    }


def _flags(m: Message) -> list[str]:
    names = ("is_auto_reply", "is_out_of_office", "is_bulk", "is_bounce", "is_calendar")
    return [n[3:] for n in names if getattr(m, n)]


def _message_brief(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "message_id": m.message_id,
        "sent_at": _iso(m.sent_at),
        "from": m.from_email,
        "from_name": m.from_name,
        "direction": m.direction,
        "subject": m.subject,
        "snippet": m.snippet,
        "classification": _flags(m),
    }


def message_detail(session: Session, message: Message) -> dict[str, Any]:
    participants = session.execute(
        sa.select(Participant.role, Participant.email, Participant.name)
        .where(Participant.message_id == message.id)
        .order_by(Participant.id)
    ).all()
    locations = session.execute(
        sa.select(Mailbox.name, Folder.name, MessageLocation.provider_id, MessageLocation.flags)
        .join(Folder, Folder.id == MessageLocation.folder_id)
        .join(Mailbox, Mailbox.id == Folder.mailbox_id)
        .where(MessageLocation.message_id == message.id)
    ).all()
    # Other messages with this Message-ID: a reused or forged one, kept apart (issue #16).
    same_id = session.scalars(
        sa.select(Message.id)
        .where(Message.message_id == message.message_id, Message.id != message.id)
        .order_by(Message.id)
    ).all()
    data = _message_brief(message)
    data.update(
        {
            "key": message.key,
            "same_message_id": list(same_id),
            "thread_id": message.thread_id,
            "date_source": message.date_source,
            "size": message.size,
            "sha256": message.sha256,
            "in_reply_to": message.in_reply_to.split(),
            "references": message.references.split(),
            "list_id": message.list_id,
            "attachments": json.loads(message.attachments) if message.attachments else [],
            "bounce": json.loads(message.bounce) if message.bounce else None,
            "defects": message.defects.split(),
            "participants": [{"role": r, "email": e, "name": n} for r, e, n in participants],
            "locations": [
                {"mailbox": mb, "folder": f, "provider_id": pid, "flags": flags.split()}
                for mb, f, pid, flags in locations
            ],
        }
    )
    return data


def raw_bytes(session: Session, message: Message) -> bytes | None:
    row = session.get(models.MessageRaw, message.sha256)
    return row.data if row is not None else None


# --- notifications (issue #5): reminders and outbox for `status` and `outbox list` --------------


def reminder_counts(session: Session) -> dict[str, int]:
    """Reminders per status (pending, sent, snoozed, ...)."""
    r = models.Reminder
    rows = session.execute(sa.select(r.status, sa.func.count()).group_by(r.status))
    counts = {"pending": 0, "sent": 0}
    counts.update({status: int(n) for status, n in rows})
    return counts


def outbox_backlog(session: Session) -> dict[str, Any]:
    """Outbox rows per status, and when the oldest unsent one was queued."""
    o = models.OutboxEmail
    rows = session.execute(sa.select(o.status, sa.func.count()).group_by(o.status))
    counts: dict[str, Any] = {"pending": 0, "sending": 0, "sent": 0, "dead": 0}
    counts.update({status: int(n) for status, n in rows})
    oldest = session.scalar(sa.select(sa.func.min(o.created_at)).where(o.status != "sent"))
    counts["oldest_unsent_at"] = _iso(oldest) if isinstance(oldest, datetime) else oldest
    counts["possible_duplicates"] = int(
        session.scalar(sa.select(sa.func.count()).where(o.possible_duplicate)) or 0
    )
    return counts


def outbox_rows(
    session: Session, statuses: tuple[str, ...] = (), limit: int = 50
) -> list[dict[str, Any]]:
    """The newest outbox rows (optionally only some statuses), bodies left out."""
    o = models.OutboxEmail
    stmt = sa.select(o).order_by(o.id.desc()).limit(limit)
    if statuses:
        stmt = stmt.where(o.status.in_(statuses))
    return [
        {
            "id": r.id,
            "status": r.status,
            "recipient": r.recipient,
            "subject": r.subject,
            "attempts": r.attempts,
            "created_at": _iso(r.created_at),
            "next_attempt_at": _iso(r.next_attempt_at),
            "sent_at": _iso(r.sent_at),
            "last_error": r.last_error,
            "possible_duplicate": r.possible_duplicate,
            "message_id": r.message_id_header,
            "key": r.idempotency_key,
        }
        for r in session.scalars(stmt)
    ]


# --- what the CLI shows in the user's time zone (issue #17) ----------------------------------


def thread_mailboxes(session: Session, thread_id: int) -> list[str]:
    """The mailboxes holding a thread's mail, that of its first message (by date) first."""
    rows = session.execute(
        sa.select(Mailbox.name)
        .join(Folder, Folder.mailbox_id == Mailbox.id)
        .join(MessageLocation, MessageLocation.folder_id == Folder.id)
        .join(Message, Message.id == MessageLocation.message_id)
        .where(Message.thread_id == thread_id)
        .order_by(Message.sent_at.nulls_last(), Message.id, MessageLocation.id)
    )
    return list(dict.fromkeys(name for (name,) in rows))
