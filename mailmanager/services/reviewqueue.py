"""The review queue as a signed-in person works it: threads whose opportunity the matcher
would not choose alone (`curation` keeps the items and does the linking).

A person sees and settles the items of the threads they may curate (`access.may_curate`:
their own mail, or mail of someone they manage). Accepting links the thread by hand to the
chosen candidate and matches it again at once; rejecting closes the item without a link.
Each item is settled once: a second click finds it closed (CurationError).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models
from mailmanager.services import access, curation
from mailmanager.services.access import AccessError, Viewer
from mailmanager.services.threadview import LinkedRecord


@dataclass(frozen=True)
class ReviewEntry:
    id: int
    thread_id: int
    subject: str
    explanation: str  # the matcher's words: why it would not choose
    candidates: tuple[LinkedRecord, ...]  # opportunities


def reviews(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    after: int = 0,
    limit: int | None = None,
) -> list[ReviewEntry]:
    """The pending review items of the threads `viewer` may curate, oldest first: those
    whose id is above `after`, at most `limit` of them (the API's pages)."""
    out: list[ReviewEntry] = []
    for item in curation.list_reviews(session):
        if limit is not None and len(out) >= limit:
            break
        if item["id"] <= after or not access.may_curate(session, cfg, viewer, item["thread_id"]):
            continue
        candidates = item["candidates"]
        out.append(
            ReviewEntry(
                item["id"],
                item["thread_id"],
                item["subject"],
                item["explanation"],
                tuple(LinkedRecord("opportunity", c["id"], c["label"]) for c in candidates),
            )
        )
    return out


def _pending(
    session: Session, cfg: config_mod.Config, viewer: Viewer, item_id: int
) -> models.ReviewItem:
    item = session.get(models.ReviewItem, item_id) if access.row_id(item_id) else None
    if item is None:
        raise AccessError(f"no review item #{item_id}", exists=False)
    access.require_curator(session, cfg, viewer, item.thread_id)
    if item.status != "pending":
        raise curation.CurationError(f"review item #{item_id} is already {item.status}")
    return item


def accept(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    item_id: int,
    opportunity_id: int | None,
) -> curation.Target:
    """Link the item's thread to the chosen opportunity (or its only candidate); close it.
    Raises AccessError, or CurationError when the choice is not one of its candidates or
    the item is closed already."""
    item = _pending(session, cfg, viewer, item_id)
    choice = None
    if opportunity_id is not None:
        if str(opportunity_id) not in item.candidates.split():
            raise curation.CurationError(
                f"opportunity #{opportunity_id} is not a candidate of review #{item_id}"
            )
        label = curation.target_label(session, "opportunity", opportunity_id)
        choice = curation.Target("opportunity", opportunity_id, label)
    return curation.accept_review(session, cfg, item_id, choice, viewer.email)


def reject(session: Session, cfg: config_mod.Config, viewer: Viewer, item_id: int) -> None:
    """Close the item without linking. Raises AccessError when `viewer` may not, or
    CurationError when it is closed already."""
    _pending(session, cfg, viewer, item_id)
    curation.reject_review(session, item_id, viewer.email)
