"""A thread and its messages as a signed-in person may read them.

Every function takes the viewer and asks `access` first: a message's content (text, HTML,
attachments, headers, raw bytes) only at level "content"; a colleague's message on a client
record may show as metadata (date, direction, participants, subject) and nothing else; a
message the viewer may not see at all is reported as not found. The bodies and parts come
from the stored raw bytes (`parts`), the HTML through the sanitiser (`sanitize`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models, store
from mailmanager.db.models import Message, Participant
from mailmanager.mail import parts, replies, sanitize
from mailmanager.services import access, curation, queries
from mailmanager.services.access import AccessError, Level, Viewer

log = logging.getLogger(__name__)

THREAD_TEXTS = 50  # a thread page shows the text of its last 50 messages the viewer reads


@dataclass(frozen=True)
class Party:
    role: str  # from, to, cc, bcc, reply_to, sender
    email: str
    name: str


@dataclass(frozen=True)
class MessageHead:
    """A message as a list shows it; `snippet` is empty unless the viewer reads content."""

    id: int
    thread_id: int | None
    sent_at: datetime | None
    direction: str
    subject: str
    parties: tuple[Party, ...]
    level: Level
    snippet: str
    mailboxes: tuple[str, ...]

    @property
    def sender(self) -> Party | None:
        return next((p for p in self.parties if p.role == "from"), None)

    @property
    def readable(self) -> bool:
        return self.level == "content"


@dataclass(frozen=True)
class LinkedRecord:
    kind: str  # contact, company, opportunity
    id: int
    label: str


@dataclass(frozen=True)
class ThreadView:
    id: int
    subject: str
    messages: tuple[MessageHead, ...]  # those the viewer may see, oldest first
    records: tuple[LinkedRecord, ...]  # what the thread is linked to
    may_curate: bool  # link, unlink, review (`access.may_curate`)
    # message id → what its sender wrote (quoted text and signature left out:
    # `replies.new_text`), for the last readable messages
    texts: Mapping[int, str]


@dataclass(frozen=True)
class MessageView:
    head: MessageHead
    text: str
    has_html: bool
    attachments: tuple[parts.Part, ...]
    stored_as: str  # full, headers, metadata, scrubbed: what was kept of it


def heads(
    session: Session, found: dict[int, Level], mailboxes: bool = True
) -> dict[int, MessageHead]:
    """The list entries of messages whose level is known (`access.levels`); those at
    level "none" are left out."""
    ids = sorted(mid for mid, lv in found.items() if lv != "none")
    parties: dict[int, list[Party]] = {}
    rows: list[sa.Row[int, int | None, datetime | None, str, str, str]] = []
    m = Message
    columns = (m.id, m.thread_id, m.sent_at, m.direction, m.subject, m.snippet)
    for part in store.chunks(ids):
        rows += session.execute(sa.select(*columns).where(m.id.in_(part))).all()
        for mid, role, email, name in session.execute(
            sa.select(Participant.message_id, Participant.role, Participant.email, Participant.name)
            .where(Participant.message_id.in_(part))
            .order_by(Participant.id)
        ):
            parties.setdefault(mid, []).append(Party(role, email, name))
    boxes = _mailbox_names(session, ids) if mailboxes else {}
    return {
        mid: MessageHead(
            id=mid,
            thread_id=thread_id,
            sent_at=sent_at,
            direction=direction,
            subject=subject,
            parties=tuple(parties.get(mid, ())),
            level=found[mid],
            snippet=snippet if found[mid] == "content" else "",
            mailboxes=tuple(boxes.get(mid, ())),
        )
        for mid, thread_id, sent_at, direction, subject, snippet in rows
    }


def _mailbox_names(session: Session, ids: Collection[int]) -> dict[int, list[str]]:
    out: dict[int, set[str]] = {}
    for part in store.chunks(sorted(ids)):
        for mid, name in session.execute(
            sa.select(models.MessageLocation.message_id, models.Mailbox.name)
            .join(models.Folder, models.Folder.id == models.MessageLocation.folder_id)
            .join(models.Mailbox, models.Mailbox.id == models.Folder.mailbox_id)
            .where(models.MessageLocation.message_id.in_(part))
        ):
            out.setdefault(mid, set()).add(name)
    return {mid: sorted(names) for mid, names in out.items()}


def records_query(thread_id: int) -> sa.CompoundSelect[str, int]:
    """The (kind, id) of the records linked to a thread's messages or to the thread itself,
    as a UNION of the two reads each index serves: the messages' links by message (the
    unique constraint starts with it), the manual thread links by `ix_links_manual`. (Both
    under one OR, PostgreSQL read the whole links table: 100 ms at 400,000 links.)"""
    link = models.Link
    messages = sa.select(Message.id).where(Message.thread_id == thread_id)
    wanted = (~link.tombstone, link.target_kind.in_(curation.KINDS))
    return sa.union(
        sa.select(link.target_kind, link.target_id).where(link.message_id.in_(messages), *wanted),
        sa.select(link.target_kind, link.target_id).where(
            models.manual_links(), link.thread_id == thread_id, link.message_id.is_(None), *wanted
        ),
    )


def thread_records(session: Session, thread_id: int) -> tuple[LinkedRecord, ...]:
    """The records a thread's messages (or the thread itself) are linked to."""
    rows = session.execute(records_query(thread_id)).all()
    order = {k: i for i, k in enumerate(curation.KINDS)}
    return tuple(
        LinkedRecord(kind, tid, curation.target_label(session, kind, tid))
        for kind, tid in sorted(rows, key=lambda r: (order[r[0]], r[1]))
    )


def thread(session: Session, cfg: config_mod.Config, viewer: Viewer, thread_id: int) -> ThreadView:
    """The thread with the messages `viewer` may see. Raises AccessError (not found) when
    there is no such thread or they may see none of it."""
    row = session.get(models.Thread, thread_id) if access.row_id(thread_id) else None
    found = access.thread_levels(session, cfg, viewer, thread_id) if row else {}
    listed = heads(session, found)
    if row is None or not listed:
        raise AccessError(f"no thread #{thread_id}", exists=False)
    ordered = sorted(listed.values(), key=lambda h: (h.sent_at is None, h.sent_at, h.id))
    texts: dict[int, str] = {}
    for head in [h for h in ordered if h.readable][-THREAD_TEXTS:]:
        row_ = session.get(Message, head.id)
        if row_ is not None:
            text = parts.open_message(_raw(session, row_)).text
            texts[head.id] = replies.new_text(text) or text
    return ThreadView(
        id=row.id,
        # The first message the viewer sees: the thread's own may be one they may not.
        subject=ordered[0].subject,
        messages=tuple(ordered),
        records=thread_records(session, thread_id),
        may_curate=any(h.readable for h in ordered),
        texts=MappingProxyType(texts),
    )


def _raw(session: Session, message: Message) -> bytes:
    return queries.raw_bytes(session, message) or b""


def message_head(
    session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int
) -> MessageHead:
    """A message as a list shows it, at the level `viewer` sees it (its snippet only when
    they read it). Raises AccessError (not found) when they see nothing of it."""
    row = access.require(session, cfg, viewer, message_id, "metadata")
    return heads(session, access.levels(session, cfg, viewer, [row.id]))[row.id]


def message(
    session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int
) -> MessageView:
    """A message to read: text, whether it has HTML (`html_body`), attachments. Raises
    AccessError unless `viewer` reads its content."""
    row = access.require(session, cfg, viewer, message_id, "content")
    opened = parts.open_message(_raw(session, row))
    head = heads(session, {row.id: "content"})[row.id]
    log.info("message read", extra={"action": "message_read", "message": row.id})
    return MessageView(
        head=head,
        text=opened.text,
        has_html=opened.html is not None,
        attachments=opened.parts,
        stored_as=row.stored_as,
    )


def html_body(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    message_id: int,
    allow_remote: bool = False,
) -> sanitize.SafeHtml:
    """The message's HTML body, sanitised; inline (cid:) images as data: URLs, remote
    images left out unless `allow_remote`. Raises AccessError unless `viewer` reads its
    content; an empty document when it has no HTML body."""
    row = access.require(session, cfg, viewer, message_id, "content")
    html, images = parts.html_with_images(_raw(session, row))
    if html is None:
        return sanitize.SafeHtml("", 0)
    return sanitize.clean(html, images, allow_remote)


def attachment(
    session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int, index: int
) -> tuple[parts.Part, bytes]:
    """An attachment (or inline part) and its bytes. Raises AccessError unless `viewer`
    reads the message's content, or (not found) when it has no such part."""
    row = access.require(session, cfg, viewer, message_id, "content")
    found = parts.part_data(_raw(session, row), index)
    if found is None:
        raise AccessError(f"message #{message_id} has no part {index}", exists=False)
    log.info("attachment read", extra={"action": "attachment_read", "message": row.id})
    return found


def headers(
    session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int
) -> tuple[tuple[str, str], ...]:
    """Every header of the message, decoded. Raises AccessError unless `viewer` reads its
    content."""
    row = access.require(session, cfg, viewer, message_id, "content")
    return parts.open_message(_raw(session, row)).headers


def raw(session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int) -> bytes:
    """The message as it was received. Raises AccessError unless `viewer` reads its
    content, or (not found) when its bytes were not kept."""
    row = access.require(session, cfg, viewer, message_id, "content")
    data = queries.raw_bytes(session, row)
    if data is None:
        raise AccessError(f"the raw bytes of message #{message_id} were not kept", exists=False)
    log.info("raw read", extra={"action": "raw_read", "message": row.id})
    return data
