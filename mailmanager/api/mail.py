"""Data out: threads, messages (metadata, text, raw `.eml`) and why a message is linked where
it is, each as the web workspace shows it to the token's user (`services.threadview`,
`services.records.explain`, `services.threadlist`: the rules of `services.access`).

    GET /threads                    cursor pages, newest first; by record, date, update
    GET /threads/{id}               its messages the caller sees; texts they may read
    GET /messages/{id}              metadata; the text when the caller reads its content
    GET /messages/{id}/eml          the message as received (message/rfc822)
    GET /messages/{id}/links        its links: record, method, confidence, explanation

A thing the caller may not know of is 404, as on the pages; a colleague's message on a
client record whose content is not theirs is shown as metadata, and its `.eml` is 403.
Every read of content (a thread's texts, a message's text, an `.eml`) is written to the
audit log (`services.privacy.record_read`), as the CLI's reads are: actor `api:<email>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from mailmanager.api import paging, problems, v1
from mailmanager.services import apitokens, privacy, records, threadlist, threadview
from mailmanager.services.access import AccessError
from mailmanager.services.threadview import LinkedRecord, MessageHead, Party

router = APIRouter(tags=["mail"])
EML = "message/rfc822"


def audit_read(
    session: Session, who: apitokens.Caller, action: str, target: str, **detail: object
) -> None:
    """Record a read of content through the API (actor `api:<email>`, the token's id in
    the detail), committed beside the read's transaction (`privacy.record_read_apart`)."""
    actor = f"api:{who.viewer.email}"
    privacy.record_read_apart(session, actor, action, target, {"token": who.token.id, **detail})


class MessageMeta(BaseModel):
    """A message as a list shows it. `level`: what the caller may see of it ("content":
    they read it; "metadata": date, direction, participants, subject only); `snippet` is
    empty unless they read it."""

    id: int
    thread_id: int | None
    sent_at: datetime | None
    direction: str
    subject: str
    parties: list[Party]
    level: Literal["metadata", "content"]
    snippet: str
    mailboxes: list[str]

    @classmethod
    def of(cls, h: MessageHead) -> MessageMeta:
        level: Literal["metadata", "content"] = "content" if h.readable else "metadata"
        return cls(
            id=h.id,
            thread_id=h.thread_id,
            sent_at=h.sent_at,
            direction=h.direction,
            subject=h.subject,
            parties=list(h.parties),
            level=level,
            snippet=h.snippet,
            mailboxes=list(h.mailboxes),
        )


class ThreadItem(BaseModel):
    """A thread, from the messages the caller sees (`level`: the most they see of one)."""

    id: int
    subject: str
    first_at: datetime | None
    last_at: datetime | None
    updated_at: datetime
    message_count: int
    level: Literal["metadata", "content"]
    records: list[LinkedRecord]


class ThreadPage(BaseModel):
    """A page of threads, newest first; `next`: the cursor of the next page (null: last)."""

    items: list[ThreadItem]
    next: str | None


class ThreadMessage(MessageMeta):
    """A message of a thread; `text`: what its sender wrote (quoted text and signature
    left out), for the last 50 messages the caller reads, else null."""

    text: str | None


class ThreadOut(BaseModel):
    id: int
    subject: str
    records: list[LinkedRecord]
    may_curate: bool
    messages: list[ThreadMessage]  # oldest first


class Attachment(BaseModel):
    index: int
    filename: str
    content_type: str
    size: int
    inline: bool


class MessageOut(MessageMeta):
    """A message; `text` (its plain text), `has_html`, `attachments` and `stored_as` only
    when the caller reads its content (else null)."""

    text: str | None
    has_html: bool | None
    attachments: list[Attachment] | None
    stored_as: str | None


class LinkOut(BaseModel):
    kind: str
    target_id: int
    target: str
    method: str
    confidence: float
    explanation: str
    scope: str
    created_by: str


class LinksOut(BaseModel):
    """Why a message is linked where it is: the matcher's verdict (`reason`, null: not
    matched yet), its links, those unlinked by hand, and its thread's review if any."""

    message_id: int
    reason: str | None
    detail: str
    links: list[LinkOut]
    unlinked: list[LinkOut]
    review: str | None
    review_candidates: list[str]


@router.get("/threads", summary="Threads")
def threads(
    request: Request,
    who: v1.Reader,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
    company_id: Annotated[int | None, Query(ge=1, le=problems.MAX_ID)] = None,
    contact_id: Annotated[int | None, Query(ge=1, le=problems.MAX_ID)] = None,
    opportunity_id: Annotated[int | None, Query(ge=1, le=problems.MAX_ID)] = None,
    since: Annotated[problems.Instant, Query(description="Last message at or after.")] = None,
    until: Annotated[problems.Instant, Query(description="Last message before.")] = None,
    updated_since: Annotated[problems.Instant, Query(description="Changed at or after.")] = None,
) -> ThreadPage:
    """The threads the caller sees (their mail and their reports', and colleagues' mail on
    client records as the org's visibility allows), newest first; with a record's id,
    only those linked to it."""
    before = problems.cursor_id(cursor)
    filters = threadlist.Filters(
        company_id, contact_id, opportunity_id, since, until, updated_since
    )
    state = v1.api(request)
    with v1.transaction(request) as s:
        found, last = threadlist.page(s, state.cfg, who.viewer, filters, before, limit)
    items = [
        ThreadItem(
            id=t.id,
            subject=t.subject,
            first_at=t.first_at,
            last_at=t.last_at,
            updated_at=t.updated_at,
            message_count=t.message_count,
            level="content" if t.level == "content" else "metadata",
            records=list(t.records),
        )
        for t in found
    ]
    return ThreadPage(items=items, next=paging.encode(last) if last is not None else None)


@router.get("/threads/{thread_id}", summary="A thread")
def thread(request: Request, thread_id: problems.Id, who: v1.Reader) -> ThreadOut:
    """A thread's messages the caller sees, oldest first, with the text of those they
    read. Audited when it shows any text."""
    try:
        with v1.transaction(request) as s:
            view = threadview.thread(s, v1.api(request).cfg, who.viewer, thread_id)
            if view.texts:
                target = f"thread:{thread_id}"
                audit_read(s, who, "thread.read", target, messages=len(view.texts))
    except AccessError as exc:
        raise problems.refused(exc) from None
    return ThreadOut(
        id=view.id,
        subject=view.subject,
        records=list(view.records),
        may_curate=view.may_curate,
        messages=[
            ThreadMessage(**MessageMeta.of(h).model_dump(), text=view.texts.get(h.id))
            for h in view.messages
        ],
    )


@router.get("/messages/{message_id}", summary="A message")
def message(request: Request, message_id: problems.Id, who: v1.Reader) -> MessageOut:
    """A message's metadata, and its text, attachments and kind of storage when the caller
    reads its content (audited)."""
    cfg = v1.api(request).cfg
    try:
        with v1.transaction(request) as s:
            found = threadview.message_head(s, cfg, who.viewer, message_id)
            view = None
            if found.readable:
                view = threadview.message(s, cfg, who.viewer, message_id)
                audit_read(s, who, "message.read", f"message:{message_id}")
    except AccessError as exc:
        raise problems.refused(exc) from None
    meta = MessageMeta.of(found).model_dump()
    if view is None:
        return MessageOut(**meta, text=None, has_html=None, attachments=None, stored_as=None)
    return MessageOut(
        **meta,
        text=view.text,
        has_html=view.has_html,
        attachments=[
            Attachment(
                index=p.index,
                filename=p.filename,
                content_type=p.content_type,
                size=p.size,
                inline=p.inline,
            )
            for p in view.attachments
        ],
        stored_as=view.stored_as,
    )


@router.get(
    "/messages/{message_id}/eml",
    summary="A message as received",
    response_class=Response,
    responses={
        200: {
            "description": "The message as received (RFC 5322).",
            "content": {EML: {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
def eml(request: Request, message_id: problems.Id, who: v1.Reader) -> Response:
    """The raw message, when the caller reads its content (audited): 403 for a colleague's
    message they see on a client record, 404 when they may not know of it or its bytes
    were not kept."""
    try:
        with v1.transaction(request) as s:
            data = threadview.raw(s, v1.api(request).cfg, who.viewer, message_id)
            audit_read(s, who, "message.read_raw", f"message:{message_id}")
    except AccessError as exc:
        raise problems.refused(exc) from None
    return Response(
        data,
        media_type=EML,
        headers={
            "Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/messages/{message_id}/links", summary="Why it is linked")
def links(request: Request, message_id: problems.Id, who: v1.Reader) -> LinksOut:
    """The message's links (record, method, confidence, the matcher's explanation), those
    unlinked by hand, and its thread's pending review, as the "why this link?" page."""
    try:
        with v1.transaction(request) as s:
            why = records.explain(s, v1.api(request).cfg, who.viewer, message_id)
    except AccessError as exc:
        raise problems.refused(exc) from None

    def out(rows: tuple[records.ExplainedLink, ...]) -> list[LinkOut]:
        return [LinkOut(**vars(r)) for r in rows]

    return LinksOut(
        message_id=why.message_id,
        reason=why.reason,
        detail=why.detail,
        links=out(why.links),
        unlinked=out(why.unlinked),
        review=why.review,
        review_candidates=list(why.review_candidates),
    )
