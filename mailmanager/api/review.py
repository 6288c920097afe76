"""The review queue (threads whose opportunity the matcher would not choose alone), as the
review page shows and settles it (`services.reviewqueue`):

    GET  /review                    the pending items of the threads the caller curates
    POST /review/{id}/accept        {"opportunity_id": ID} (or none: its only candidate)
    POST /review/{id}/reject

A caller sees and settles the items of threads whose content they read (their mail, or
their reports'); another item is 404, or 403 when they see its thread on a client record.
An item is settled once: again is 409. Settling needs the write scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from mailmanager.api import paging, problems, v1
from mailmanager.services import curation, reviewqueue
from mailmanager.services.access import AccessError
from mailmanager.services.threadview import LinkedRecord

router = APIRouter(tags=["review"])


class ReviewItem(BaseModel):
    id: int
    thread_id: int
    subject: str
    explanation: str
    candidates: list[LinkedRecord]


class ReviewPage(BaseModel):
    """Pending items, oldest first; `next`: the cursor of the next page (null: last)."""

    items: list[ReviewItem]
    next: str | None


class Accept(BaseModel):
    opportunity_id: Annotated[int | None, Field(ge=1, le=problems.MAX_ID)] = None


class Settled(BaseModel):
    id: int
    status: str  # accepted, rejected
    linked_to: LinkedRecord | None


@router.get("/review", summary="The review queue")
def queue(
    request: Request,
    who: v1.Reader,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
) -> ReviewPage:
    """The pending review items of the threads the caller reads, oldest first, each with
    the matcher's explanation and its candidate opportunities."""
    after = problems.cursor_id(cursor) or 0
    with v1.transaction(request) as s:
        found = reviewqueue.reviews(s, v1.api(request).cfg, who.viewer, after, limit + 1)
    page = found[:limit]
    items = [
        ReviewItem(
            id=e.id,
            thread_id=e.thread_id,
            subject=e.subject,
            explanation=e.explanation,
            candidates=list(e.candidates),
        )
        for e in page
    ]
    more = len(found) > limit
    return ReviewPage(items=items, next=paging.encode(page[-1].id) if more else None)


def _settle(request: Request, who: v1.Writer, item_id: int, accept: Accept | None) -> Settled:
    cfg = v1.api(request).cfg
    try:
        with v1.transaction(request) as s:
            if accept is None:
                reviewqueue.reject(s, cfg, who.viewer, item_id)
                return Settled(id=item_id, status="rejected", linked_to=None)
            chosen = reviewqueue.accept(s, cfg, who.viewer, item_id, accept.opportunity_id)
    except AccessError as exc:
        raise problems.refused(exc) from None
    except curation.CurationError as exc:
        raise HTTPException(409, str(exc)) from None
    record = LinkedRecord(chosen.kind, chosen.id, chosen.label)
    return Settled(id=item_id, status="accepted", linked_to=record)


@router.post("/review/{item_id}/accept", summary="Accept a candidate", responses=problems.BAD_BODY)
def accept(
    request: Request, item_id: problems.Id, who: v1.Writer, body: Accept | None = None
) -> Settled:
    """Link the item's thread by hand to `opportunity_id` (one of its candidates; may be
    left out when it has only one) and close the item. 409 when the item is settled
    already, or the choice is not one of its candidates."""
    return _settle(request, who, item_id, body or Accept())


@router.post("/review/{item_id}/reject", summary="Reject")
def reject(request: Request, item_id: problems.Id, who: v1.Writer) -> Settled:
    """Close the item without linking: the matcher does not ask again for these
    candidates. 409 when it is settled already."""
    return _settle(request, who, item_id, None)
