"""Client records as a signed-in person sees them: company, contact, opportunity.

A record page shows the whole conversation with the client across the team's mailboxes,
grouped by thread, each message at the level `access` gives the viewer: content for their
own mail and their reports', metadata or nothing for a colleague's (`[web] visibility`).
With it: the record's details (`crm.views`), engagement segment and last exchange (from
all linked mail but the threads a colleague marked private: figures, not content), linked
records, and the open reminders of the record's threads. Linking and unlinking a thread by
hand (`curation`) is for those who read it (`access.require_curator`); `explain` tells in
plain words why a message is linked where it is. The review queue is in `reviewqueue`.

A record may hold thousands of messages (a big client over years), so a page is made in
SQL. One grouped query over the record's mail (`_mail`, with `_sees`: the SQL form of
`access.level` for mail on a record) counts, orders and cuts to the page the threads the
viewer sees, and totals the engagement figures; then only the messages of the page's
`THREADS_PER_PAGE` threads are read (the first and the latest `MESSAGES_PER_THREAD` of
each) and checked by `access.levels`, which stays the judge of what is shown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from mailmanager import config as config_mod
from mailmanager.crm import views
from mailmanager.db import models
from mailmanager.reminders import about as reminder_about
from mailmanager.reminders import plan
from mailmanager.services import access, curation, engagement
from mailmanager.services.access import AccessError, Viewer
from mailmanager.services.threadview import LinkedRecord, MessageHead, heads

log = logging.getLogger(__name__)

THREADS_PER_PAGE = 20
MESSAGES_PER_THREAD = 10  # the latest a record page lists of a thread; its page has them all
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
    messages: tuple[MessageHead, ...]  # the latest `MESSAGES_PER_THREAD`, oldest first
    message_count: int  # the messages of the thread on the record the viewer sees

    @property
    def earlier(self) -> int:
        """How many of them are not listed (the thread page has them)."""
        return self.message_count - len(self.messages)

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
    reason: str  # the rule's English sentence; pages word it by `kind` in the user's language
    contact: str = ""  # whom it is about now (`about.describe`): a name, else an address
    escalated_from: str | None = None  # whose reminder it escalates


@dataclass(frozen=True)
class Figures:
    """The engagement a record page shows (`engagement.Engagement` without the reply times,
    which need every message)."""

    last_inbound: datetime | None
    last_outbound: datetime | None
    exchanges_30: int
    exchanges_90: int
    exchanges_365: int
    recency: int
    frequency: int
    volume: int
    rfm: str
    segment: str


@dataclass(frozen=True)
class Record:
    kind: str
    id: int
    label: str
    details: Details
    engagement: Figures
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


def _contact_label(c: views.ContactView) -> str:
    """A contact as `curation.target_label` names it: "Jane Doe <jane@acme.com>"."""
    email = c.emails[0] if c.emails else ""
    return f"{c.name} <{email}>" if c.name and email else (c.name or email or f"#{c.id}")


def _opportunity_label(o: views.OpportunityView) -> str:
    """An opportunity as `curation.target_label` names it: "OPP-12 Title"."""
    return f"{o.reference or '#' + str(o.id)} {o.title}".strip()


def _linked(session: Session, kind: str, row: Any) -> list[LinkedRecord]:
    """The records linked to this one, labelled from their views (a few set queries)."""
    out: list[LinkedRecord] = []
    if kind in ("contact", "opportunity") and row.company_id is not None:
        company = row.company_id
        out.append(
            LinkedRecord("company", company, curation.target_label(session, "company", company))
        )
    contacts: list[views.ContactView] = []
    opps: list[views.OpportunityView] = []
    if kind == "company":
        contacts = views.contacts(session, company_id=row.id)
        opps = views.opportunities(session, company_id=row.id)
    if kind == "contact":
        opps = views.contact_opportunities(session, row.id)
    if kind == "opportunity":
        oc, c = models.OpportunityContact, models.Contact
        members = sa.select(oc.contact_id).where(oc.opportunity_id == row.id)
        rows = session.scalars(sa.select(c).where(c.id.in_(members)).order_by(c.id))
        contacts = views.contact_views(session, list(rows))
    out += [LinkedRecord("contact", c.id, _contact_label(c)) for c in contacts]
    out += [LinkedRecord("opportunity", o.id, _opportunity_label(o)) for o in opps]
    return out


def _details(session: Session, kind: str, row: Any) -> Details:
    if kind == "company":
        return views.company_views(session, [row])[0]
    if kind == "contact":
        return views.contact_views(session, [row])[0]
    return views.opportunity_views(session, [row])[0]


def _hidden(viewer: Viewer) -> sa.Select[Any]:
    """The threads private to someone other than `viewer` (`access.level`: seen by their
    owner alone)."""
    t = models.Thread
    return sa.select(t.id).where(t.private_owner.is_not(None), t.private_owner != viewer.email)


def _sees(cfg: config_mod.Config, viewer: Viewer) -> sa.ColumnElement[bool] | None:
    """The rest of `access.level` > "none", in SQL, for a message on a record (`Message` in
    the query) of a thread not `_hidden`: None (every one) with `visibility` "full" or
    "metadata"; with "none", those of the viewer's private threads and those held in their
    own mailboxes or their reports'. It decides what is counted and which threads make a
    page; `access.levels` still judges each message shown."""
    if access.visibility(cfg) in ("full", "metadata"):
        return None
    m, t = models.Message, models.Thread
    loc, folder, box, user = models.MessageLocation, models.Folder, models.Mailbox, models.User
    held = (
        sa.select(loc.message_id)
        .join(folder, folder.id == loc.folder_id)
        .join(box, box.id == folder.mailbox_id)
        .join(user, user.id == box.owner_id)
        .where(loc.message_id == m.id, user.email.in_(sorted(viewer.sees_content_of)))
    )
    mine = sa.select(t.id).where(t.private_owner == viewer.email)
    return sa.or_(m.thread_id.in_(mine), held.exists())


def _not_hidden(viewer: Viewer) -> sa.ColumnElement[bool]:
    m = models.Message
    return sa.or_(m.thread_id.is_(None), m.thread_id.not_in(_hidden(viewer)))


def _mail(cfg: config_mod.Config, viewer: Viewer, linking: sa.ColumnElement[bool]) -> sa.Subquery:
    """The messages linked to the record by `linking` (`models.linking`, not by a
    tombstone), each once, but those of `_hidden` threads: id, thread_id, sent_at,
    direction, `real` (1: counted in the engagement, as `engagement.engagement` counts)
    and `seen` (1: the viewer sees it, `_sees`)."""
    m, link = models.Message, models.Link
    linked = sa.select(link.message_id).where(linking, ~link.tombstone)
    noise = m.is_bulk | m.is_auto_reply | m.is_out_of_office | m.is_bounce
    real = sa.and_(m.sent_at.is_not(None), m.direction.in_(("inbound", "outbound")), ~noise)
    sees = _sees(cfg, viewer)
    seen = sa.literal(1) if sees is None else sa.case((sees, 1), else_=0)
    return (
        sa.select(
            m.id,
            m.thread_id,
            m.sent_at,
            m.direction,
            sa.case((real, 1), else_=0).label("real"),
            seen.label("seen"),
        )
        .where(m.id.in_(linked), _not_hidden(viewer))
        .subquery()
    )


@dataclass(frozen=True)
class _Overview:
    threads: list[tuple[int, datetime | None]]  # the page's: id, latest message seen
    thread_count: int  # the threads the viewer sees, all pages
    figures: Figures


def _overview(session: Session, mail: sa.Subquery, page: int, now: datetime) -> _Overview:
    """In one pass over the record's mail (`_mail`), grouped by thread: the `page`-th
    `THREADS_PER_PAGE` threads the viewer sees, latest exchange first, and, as window
    totals over every thread, how many they are and the engagement figures (those of
    `engagement.summarize` but the reply times, which need every message)."""
    c = mail.c

    def when(cond: Any, value: Any) -> Any:
        return sa.case((cond, value))

    def moment(value: Any) -> Any:
        return sa.type_coerce(value, models.UTCDateTime)

    def since(days: int) -> Any:
        return sa.and_(c.real == 1, c.sent_at >= now - timedelta(days=days))

    latest = sa.func.max(when(c.seen == 1, c.sent_at))
    shown = sa.case((sa.and_(c.thread_id.is_not(None), sa.func.max(c.seen) == 1), 1), else_=0)
    last_in = sa.func.max(when(sa.and_(c.real == 1, c.direction == "inbound"), c.sent_at))
    last_out = sa.func.max(when(sa.and_(c.real == 1, c.direction == "outbound"), c.sent_at))
    counts = [sa.func.sum(sa.case((since(d), 1), else_=0)) for d in (30, 90, 365)]
    year = sa.func.max(sa.case((since(365), 1), else_=0))  # a thread of the year
    query = (
        sa.select(
            c.thread_id,
            moment(latest),
            shown,
            sa.func.sum(shown).over(),
            moment(sa.func.max(last_in).over()),
            moment(sa.func.max(last_out).over()),
            *(sa.func.sum(n).over() for n in counts),
            sa.func.sum(year).over(),
        )
        .group_by(c.thread_id)
        .order_by(shown.desc(), latest.is_(None), latest.desc(), c.thread_id.desc())
        .limit(THREADS_PER_PAGE)
    )
    rows = session.execute(query.offset((page - 1) * THREADS_PER_PAGE)).all()
    if not rows and page > 1:  # past the last page: no thread, the same totals
        rows = [(None, None, 0, *row[3:]) for row in session.execute(query.limit(1))]
    if not rows:
        rows = [(None, None, 0, 0, None, None, 0, 0, 0, 0)]
    _, _, _, count, last_in_, last_out_, n30, n90, n365, threads = rows[0]
    recent = max((x for x in (last_in_, last_out_) if x is not None), default=None)
    age = (now - recent).total_seconds() / 86400 if recent else float("inf")
    r, f, v, segment = engagement.rate(age, int(threads or 0), int(n365 or 0))
    figures = Figures(
        last_in_, last_out_, int(n30 or 0), int(n90 or 0), int(n365 or 0),
        r, f, v, f"{r}{f}{v}", segment,
    )  # fmt: skip
    listed = [(tid, at) for tid, at, is_shown, *_ in rows if is_shown]
    return _Overview(listed, int(count or 0), figures)


def _threads(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    target: tuple[str, int],
    listed: list[tuple[int, datetime | None]],
) -> list[ThreadEntry]:
    """The threads `listed` (id, latest message) of the record `target` with their
    messages the viewer sees; only those are read and checked (`access.levels`)."""
    m, link = models.Message, models.Link
    # The messages of these threads linked to the record: by their own links (the
    # messages of a record's threads are all found so, as `models.linking` finds them).
    on_record = (
        sa.select(link.id)
        .where(
            link.message_id == m.id,
            link.target_kind == target[0],
            link.target_id == target[1],
            ~link.tombstone,
        )
        .exists()
    )
    query = sa.select(m.id, m.thread_id).where(
        m.thread_id.in_([tid for tid, _ in listed]), on_record, _not_hidden(viewer)
    )
    sees = _sees(cfg, viewer)
    if sees is not None:
        query = query.where(sees)
    rows = session.execute(query.order_by(m.sent_at, m.id))
    members: dict[int, list[int]] = {}
    for mid, tid in rows:  # oldest first
        if tid is not None:  # one of `listed`
            members.setdefault(tid, []).append(mid)
    # The first message (the thread's subject) and the latest ones are read and checked.
    wanted = {tid: [ids[0], *ids[1:][-MESSAGES_PER_THREAD:]] for tid, ids in members.items()}
    found = access.levels(
        session, cfg, viewer, [i for ids in wanted.values() for i in ids], all_on_records=True
    )
    heads_ = heads(session, found)
    entries = []
    for tid, last_at in listed:
        read = [heads_[i] for i in wanted.get(tid, ()) if i in heads_]
        if read:  # else `access` refused them all after all
            count = len(members[tid]) - (len(wanted[tid]) - len(read))
            latest = tuple(read[-MESSAGES_PER_THREAD:])
            entries.append(ThreadEntry(tid, read[0].subject, last_at, latest, count))
    return entries


def _reminders(
    session: Session, kind: str, record_id: int, threads: sa.Select[Any]
) -> list[ReminderBrief]:
    """Open reminders about the record itself (target "company:3") or one of the record's
    `threads` (a query of their ids), with what they are about now (`about.describe`);
    each query by one of the reminders' unique keys (target / thread first), so that a
    database of a million reminders is not scanned."""
    r, u = models.Reminder, models.User
    esc = aliased(u)
    query = (
        sa.select(r, u.email, esc.email)
        .join(u, u.id == r.user_id)
        .outerjoin(esc, esc.id == r.escalated_from_id)
        .where(r.status.in_(plan.OPEN))
    )
    rows = list(session.execute(query.where(r.target == f"{kind}:{record_id}")))
    rows += session.execute(query.where(r.thread_id.in_(threads))).all()
    if not rows:
        return []
    rows.sort(key=lambda row: (row[0].due_at, row[0].id))
    about = reminder_about.describe(session, [x for x, _, _ in rows])
    return [
        ReminderBrief(
            x.id,
            x.kind,
            x.status,
            email,
            x.due_at,
            x.thread_id,
            x.reason,
            contact=about[x.id].contact_name or about[x.id].contact_email,
            escalated_from=esc_email,
        )
        for x, email, esc_email in rows
    ]


def record(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    record_id: int,
    page: int = 1,
    now: datetime | None = None,
) -> Record:
    """A company, contact or opportunity as `viewer` sees it, with the `page`-th page of
    its threads and its engagement at `now`. Raises AccessError (not found) when there is
    no such record."""
    row = _row(session, kind, record_id)
    page = max(1, min(page, access.MAX_ID // THREADS_PER_PAGE))
    mail = _mail(cfg, viewer, models.linking(kind, [record_id]))
    overview = _overview(session, mail, page, now or models.utcnow())
    seen = sa.select(mail.c.thread_id).where(mail.c.seen == 1)
    return Record(
        kind=kind,
        id=record_id,
        label=curation.target_label(session, kind, record_id),
        details=_details(session, kind, row),
        engagement=overview.figures,
        linked=tuple(_linked(session, kind, row)),
        threads=tuple(_threads(session, cfg, viewer, (kind, record_id), overview.threads)),
        reminders=tuple(_reminders(session, kind, record_id, seen)),
        thread_count=overview.thread_count,
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
