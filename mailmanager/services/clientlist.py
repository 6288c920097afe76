"""The clients of a person's scope and their engagement segment, a page at a time: the
REST API's `GET /engagement`, the list behind the dashboard's segment counts.

The scope is the dashboard's (`services.kpis`): a manager's team, anyone else their own
mail; the companies are those linked to mail held in the scope's mailboxes, rated by
`engagement.rate` on the same figures (`kpis.company_stats`). Pages are keyset pages on
the company id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models
from mailmanager.db.models import Folder, Link, Mailbox, MessageLocation
from mailmanager.services import access, engagement, kpis


@dataclass(frozen=True)
class CompanyEngagement:
    """A client of the dashboard's scope with the figures its segment is rated on."""

    company_id: int
    name: str
    segment: str
    last_exchange: datetime | None
    threads_365: int
    messages_365: int


def companies(
    session: Session,
    viewer: access.Viewer,
    now: datetime,
    segment: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[CompanyEngagement]:
    """The companies the dashboard's segments count for `viewer` (those linked to mail
    of their scope's mailboxes: a manager's team, else their own), by id, at most `limit`
    after the id `after`, only those of `segment` when given."""
    emails = sorted(viewer.sees_content_of) if viewer.is_manager else [viewer.email]
    users = sa.select(models.User.id).where(models.User.email.in_(emails))
    linked = (
        sa.select(Link.target_id)
        .distinct()
        .join(MessageLocation, MessageLocation.message_id == Link.message_id)
        .join(Folder, Folder.id == MessageLocation.folder_id)
        .join(Mailbox, Mailbox.id == Folder.mailbox_id)
        .where(Link.target_kind == "company", ~Link.tombstone, Mailbox.owner_id.in_(users))
    )
    out: list[CompanyEngagement] = []
    start = after
    while len(out) < limit:
        query = linked if start is None else linked.where(Link.target_id > start)
        ids = list(session.scalars(query.order_by(Link.target_id).limit(limit)))
        if not ids:
            break
        start = ids[-1]
        stats = kpis.company_stats(session, ids, now)
        names = dict(
            session.execute(
                sa.select(models.Company.id, models.Company.name).where(models.Company.id.in_(ids))
            )
            .tuples()
            .all()
        )
        for cid in ids:
            last, threads, volume = stats[cid]
            age = (now - last).total_seconds() / 86400 if last else float("inf")
            rated = engagement.rate(age, threads, volume)[3]
            if segment is None or rated == segment:
                out.append(
                    CompanyEngagement(cid, names.get(cid, f"#{cid}"), rated, last, threads, volume)
                )
    return out[:limit]
