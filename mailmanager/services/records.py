"""Client records as a signed-in person sees them: company, contact, opportunity.

A record page shows the whole conversation with the client across the team's mailboxes
(`engagement.timeline`), grouped by thread, each message at the level `access` gives the
viewer: content for their own mail and their reports', metadata or nothing for a
colleague's (`[web] visibility`). With it: the record's details (`crm.views`), engagement
segment and last exchange (`engagement.engagement`, from all linked mail: figures, not
content), linked records, and the open reminders of the record's threads. Linking and
unlinking a thread by hand (`curation`) is for those who read it (`access.require_curator`);
`explain` tells in plain words why a message is linked where it is. The review queue is in
`reviewqueue`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import views
from mailmanager.db import models, store
from mailmanager.reminders import plan
from mailmanager.services import access, curation, engagement
from mailmanager.services.access import AccessError, Viewer
from mailmanager.services.threadview import LinkedRecord, MessageHead, heads

log = logging.getLogger(__name__)

TIMELINE_LIMIT = 5000  # the latest messages of a record a page looks at
THREADS_PER_PAGE = 50
_MODELS: dict[str, Any] = {
    "company": models.Company,
    "contact": models.Contact,
    "opportunity": models.Opportunity,
}
Details = views.CompanyView | views.ContactView | views.OpportunityView


@dataclass(frozen=True)
class ThreadEntry:
    id: int
    subject: str  # of its first message the viewer sees
    last_at: datetime | None
    messages: tuple[MessageHead, ...]  # oldest first

    @property
    def readable(self) -> bool:
        return any(m.readable for m in self.messages)


@dataclass(frozen=True)
class ReminderBrief:
    id: int
    kind: str
    status: str
    user: str
    due_at: datetime
    thread_id: int | None
    reason: str


@dataclass(frozen=True)
class Record:
    kind: str
    id: int
    label: str
    details: Details
    engagement: engagement.Engagement
    linked: tuple[LinkedRecord, ...]
    threads: tuple[ThreadEntry, ...]  # this page's, latest exchange first
    reminders: tuple[ReminderBrief, ...]
    thread_count: int  # threads the viewer sees on the record, all pages
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.thread_count // THREADS_PER_PAGE))


@dataclass(frozen=True)
class Lookup:
    companies: tuple[views.CompanyView, ...]
    contacts: tuple[views.ContactView, ...]
    opportunities: tuple[views.OpportunityView, ...]


def _row(session: Session, kind: str, record_id: int) -> Any:
    model = _MODELS.get(kind)
    row = session.get(model, record_id) if model is not None and access.row_id(record_id) else None
    if row is None:
        raise AccessError(f"no {kind} #{record_id}", exists=False)
    return row


def lookup(session: Session, text: str = "", limit: int = 25) -> Lookup:
    """Companies (name or domain), contacts (name or address) and opportunities (reference
    or title) matching `text`; the first of each when it is empty."""
    search = text.strip() or None
    return Lookup(
        tuple(views.companies(session, search, limit)),
        tuple(views.contacts(session, search=search, limit=limit)),
        tuple(views.opportunities(session, search=search, limit=limit)),
    )


def _linked(session: Session, kind: str, row: Any) -> list[LinkedRecord]:
    def rec(k: str, i: int) -> LinkedRecord:
        return LinkedRecord(k, i, curation.target_label(session, k, i))

    out: list[LinkedRecord] = []
    if kind in ("contact", "opportunity") and row.company_id is not None:
        out.append(rec("company", row.company_id))
    if kind == "company":
        out += [rec("contact", c.id) for c in views.contacts(session, company_id=row.id)]
        opps = views.opportunities(session, company_id=row.id)
        out += [rec("opportunity", o.id) for o in opps]
    if kind == "contact":
        out += [rec("opportunity", o.id) for o in views.contact_opportunities(session, row.id)]
    if kind == "opportunity":
        oc = models.OpportunityContact
        ids = session.scalars(sa.select(oc.contact_id).where(oc.opportunity_id == row.id))
        out += [rec("contact", c) for c in sorted(ids)]
    return out


def _details(session: Session, kind: str, row: Any) -> Details:
    if kind == "company":
        return views.company_views(session, [row])[0]
    if kind == "contact":
        return views.contact_views(session, [row])[0]
    return views.opportunity_views(session, [row])[0]


def _threads(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    record_id: int,
    page: int,
) -> tuple[list[ThreadEntry], list[int]]:
    """The `page`-th `THREADS_PER_PAGE` threads of the record the viewer sees, latest
    exchange first, and the ids of all the threads they see on it (all pages)."""
    linked = engagement.linked_messages(session, kind, record_id, TIMELINE_LIMIT)
    found = access.levels(session, cfg, viewer, [m.id for m in linked], all_on_records=True)
    members: dict[int, list[int]] = {}
    latest: dict[int, datetime | None] = {}
    seen: set[int] = set()
    for m in linked:  # oldest first
        if found.get(m.id, "none") != "none" and m.thread_id is not None and m.id not in seen:
            seen.add(m.id)
            members.setdefault(m.thread_id, []).append(m.id)
            latest[m.thread_id] = m.sent_at or latest.get(m.thread_id)
    order = sorted(members, key=lambda t: (latest[t] is not None, latest[t], t), reverse=True)
    shown = order[(page - 1) * THREADS_PER_PAGE : page * THREADS_PER_PAGE]
    listed = heads(session, {i: found[i] for t in shown for i in members[t]})
    entries = [
        ThreadEntry(
            tid,
            listed[members[tid][0]].subject,
            latest[tid],
            tuple(listed[i] for i in members[tid] if i in listed),
        )
        for tid in shown
    ]
    return entries, order


def _reminders(
    session: Session, kind: str, record_id: int, thread_ids: list[int]
) -> list[ReminderBrief]:
    """Open reminders about the record itself (target "company:3") or one of its threads;
    each query by one of the reminders' unique keys (target / thread first), so that a
    database of a million reminders is not scanned."""
    r, u = models.Reminder, models.User
    query = sa.select(r, u.email).join(u, u.id == r.user_id).where(r.status.in_(plan.OPEN))
    rows = list(session.execute(query.where(r.target == f"{kind}:{record_id}")))
    for part in store.chunks(sorted(thread_ids)):
        rows += session.execute(query.where(r.thread_id.in_(part))).all()
    rows.sort(key=lambda row: (row[0].due_at, row[0].id))
    return [
        ReminderBrief(x.id, x.kind, x.status, email, x.due_at, x.thread_id, x.reason)
        for x, email in rows
    ]


def record(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    record_id: int,
    page: int = 1,
) -> Record:
    """A company, contact or opportunity as `viewer` sees it, with the `page`-th page of
    its threads. Raises AccessError (not found) when there is no such record."""
    row = _row(session, kind, record_id)
    page = max(1, page)
    threads, every = _threads(session, cfg, viewer, kind, record_id, page)
    figures = engagement.engagement(session, kind, [record_id])[record_id]
    return Record(
        kind=kind,
        id=record_id,
        label=curation.target_label(session, kind, record_id),
        details=_details(session, kind, row),
        engagement=figures,
        linked=tuple(_linked(session, kind, row)),
        threads=tuple(threads),
        reminders=tuple(_reminders(session, kind, record_id, every)),
        thread_count=len(every),
        page=page,
    )


# --- what a reader does with a thread: link, unlink, explain ---------------------------------


def _resolve(session: Session, cfg: config_mod.Config, kind: str, ref: str) -> curation.Target:
    if kind not in curation.KINDS:
        raise curation.CurationError(
            f"unknown kind {kind!r}: use one of {', '.join(curation.KINDS)}"
        )
    return curation.resolve_target(session, cfg, kind, ref.strip())


def link_thread(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    thread_id: int,
    kind: str,
    ref: str,
) -> curation.Target:
    """Link a thread by hand (sticky; `curation.link`) to the record `ref` names (an id,
    an address, a domain or name, a reference: `curation.resolve_target`). Raises
    AccessError when `viewer` does not read the thread, CurationError when `ref` names no
    record (or several)."""
    access.require_curator(session, cfg, viewer, thread_id)
    target = _resolve(session, cfg, kind, ref)
    curation.link(session, cfg, curation.Scope(thread_id), target, viewer.email)
    return target


def unlink_thread(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    thread_id: int,
    kind: str,
    ref: str,
) -> curation.Target:
    """Unlink a thread by hand from the record `ref` names (a tombstone; `curation.unlink`).
    Raises AccessError or CurationError as `link_thread` does."""
    access.require_curator(session, cfg, viewer, thread_id)
    target = _resolve(session, cfg, kind, ref)
    curation.unlink(session, cfg, curation.Scope(thread_id), target, viewer.email)
    return target


@dataclass(frozen=True)
class ExplainedLink:
    kind: str
    target_id: int
    target: str
    method: str  # address, domain, thread, subject_tag, manual...
    confidence: float
    explanation: str  # the matcher's own words
    scope: str  # message or thread
    created_by: str


@dataclass(frozen=True)
class Explanation:
    message_id: int
    subject: str
    reason: str | None  # the matcher's verdict code (linked, noise_bulk...), None: not yet
    detail: str
    links: tuple[ExplainedLink, ...]
    unlinked: tuple[ExplainedLink, ...]  # unlinked by hand: never linked again
    review: str | None  # status of the thread's review item, if any
    review_candidates: tuple[str, ...]


def explain(
    session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int
) -> Explanation:
    """Why a message is linked where it is (`engagement.explain`). Raises AccessError
    unless `viewer` sees the message (metadata is enough: it says nothing of the body)."""
    message = access.require(session, cfg, viewer, message_id, "metadata")
    data = engagement.explain(session, message)

    def links(rows: list[dict[str, Any]]) -> tuple[ExplainedLink, ...]:
        return tuple(
            ExplainedLink(
                r["kind"],
                r["target_id"],
                r["target"],
                r["method"],
                r["confidence"],
                r["explanation"],
                r["scope"],
                r["created_by"],
            )
            for r in rows
        )

    review = data["review"] or {}
    return Explanation(
        message_id=message.id,
        subject=message.subject,
        reason=data["reason"],
        detail=data["detail"],
        links=links(data["links"] + data["thread_links"]),
        unlinked=links(data["unlinked"]),
        review=review.get("status"),
        review_candidates=tuple(review.get("candidates", ())),
    )
