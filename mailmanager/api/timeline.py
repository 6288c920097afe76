"""A client record's timeline, and the dashboard's figures, as the token's user sees them.

    GET /companies/{id}/timeline, /contacts/{id}/timeline, /opportunities/{id}/timeline
    GET /engagement                 the clients of the caller's scope and their segment
    GET /kpis                       the dashboard: the scope's figures (a manager: per person)

A timeline is the client record page (`services.records.record`): the record's threads,
latest exchange first, each with its latest messages at the level the caller sees them,
the record's engagement figures and open reminders. Its pages follow the page's order, so
`next` names a page by its number: a thread that gets a new message between two requests
moves to the first page (use `GET /threads?company_id=...` for pages stable under
inserts). A timeline showing content (a snippet the caller reads) is audited, as the
CLI's `timeline` is. The figures' scope is the dashboard's (`services.kpis`): a manager's
team, anyone else their own mail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from mailmanager.api import mail, paging, problems, v1
from mailmanager.services import access, clientlist, kpis, records
from mailmanager.services.access import AccessError
from mailmanager.services.threadview import LinkedRecord

router = APIRouter(tags=["records"])

Kind = Literal["company", "contact", "opportunity"]


class TimelineThread(BaseModel):
    """A thread on the record: its latest messages the caller sees (`message_count` in
    all; `GET /threads/{id}` has them all)."""

    id: int
    subject: str
    last_at: datetime | None
    message_count: int
    messages: list[mail.MessageMeta]


class Timeline(BaseModel):
    kind: Kind
    id: int
    label: str
    engagement: records.Figures
    linked: list[LinkedRecord]
    reminders: list[records.ReminderBrief]
    thread_count: int
    threads: list[TimelineThread]
    next: str | None


def _timeline(
    request: Request, who: v1.Reader, kind: Kind, record_id: int, cursor: str | None
) -> Timeline:
    number = problems.cursor_id(cursor) or 1
    if number > access.MAX_ID // records.THREADS_PER_PAGE:
        raise HTTPException(422, "the cursor is not one this API gave")
    state = v1.api(request)
    try:
        with v1.transaction(request) as s:
            rec = records.record(s, state.cfg, who.viewer, kind, record_id, number, state.clock())
            if any(t.readable for t in rec.threads):
                mail.audit_read(s, who, "timeline.read", f"{kind}:{record_id}", page=number)
    except AccessError as exc:
        raise problems.refused(exc) from None
    return Timeline(
        kind=kind,
        id=rec.id,
        label=rec.label,
        engagement=rec.engagement,
        linked=list(rec.linked),
        reminders=list(rec.reminders),
        thread_count=rec.thread_count,
        threads=[
            TimelineThread(
                id=t.id,
                subject=t.subject,
                last_at=t.last_at,
                message_count=t.message_count,
                messages=[mail.MessageMeta.of(m) for m in t.messages],
            )
            for t in rec.threads
        ],
        next=paging.encode(number + 1) if number < rec.pages else None,
    )


_DOC = """The client record's threads, latest exchange first (20 a page), with its
engagement figures and open reminders, as its page shows them to the caller."""


@router.get("/companies/{record_id}/timeline", summary="A company's timeline", description=_DOC)
def company_timeline(
    request: Request, record_id: problems.Id, who: v1.Reader, cursor: paging.Cursor = None
) -> Timeline:
    return _timeline(request, who, "company", record_id, cursor)


@router.get("/contacts/{record_id}/timeline", summary="A contact's timeline", description=_DOC)
def contact_timeline(
    request: Request, record_id: problems.Id, who: v1.Reader, cursor: paging.Cursor = None
) -> Timeline:
    return _timeline(request, who, "contact", record_id, cursor)


@router.get(
    "/opportunities/{record_id}/timeline", summary="An opportunity's timeline", description=_DOC
)
def opportunity_timeline(
    request: Request, record_id: problems.Id, who: v1.Reader, cursor: paging.Cursor = None
) -> Timeline:
    return _timeline(request, who, "opportunity", record_id, cursor)


class EngagementPage(BaseModel):
    """Clients of the caller's scope by id; `next`: the cursor of the next page."""

    items: list[clientlist.CompanyEngagement]
    next: str | None


@router.get("/engagement", summary="Clients' engagement")
def engagement(
    request: Request,
    who: v1.Reader,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
    segment: Annotated[Literal["vip", "active", "at_risk", "dormant"] | None, Query()] = None,
) -> EngagementPage:
    """The companies linked to the mail of the caller's scope (a manager's team, else
    their own), each with its engagement segment and what it is rated on (last exchange,
    threads and messages of the last 365 days), as the dashboard counts them."""
    after = problems.cursor_id(cursor)
    state = v1.api(request)
    with v1.transaction(request) as s:
        found = clientlist.companies(s, who.viewer, state.clock(), segment, after, limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return EngagementPage(items=page, next=paging.encode(page[-1].company_id) if more else None)


class Figures(BaseModel):
    """One person's figures, or the scope's (`services.kpis`); `median_answer_hours`:
    the median time to answer a client, null when none was measured."""

    email: str
    name: str
    median_answer_hours: float | None
    unanswered: int
    followups_done: int
    followups_overdue: int
    churn: int
    quiet: list[kpis.Quiet]
    segments: dict[str, int]
    weeks: list[kpis.Week]

    @classmethod
    def of(cls, f: kpis.Figures) -> Figures:
        return cls(
            email=f.email,
            name=f.name,
            median_answer_hours=f.median_hours,
            unanswered=f.unanswered,
            followups_done=f.followups_done,
            followups_overdue=f.followups_overdue,
            churn=f.churn,
            quiet=list(f.quiet),
            segments=dict(f.segments),
            weeks=list(f.weeks),
        )


class Kpis(BaseModel):
    """The dashboard over [`start`, `end`): `total` for the caller's scope, `people` one
    line per person of a manager's team (empty for anyone else)."""

    start: datetime
    end: datetime
    churn_days: int
    total: Figures
    people: list[Figures]


@router.get("/kpis", summary="Dashboard figures")
def kpis_(
    request: Request,
    who: v1.Reader,
    weeks: Annotated[int, Query(ge=1, le=53, description="ISO weeks, this one included.")] = 8,
    user: Annotated[
        str | None, Query(max_length=320, description="One person: yourself or a report.")
    ] = None,
) -> Kpis:
    """The dashboard's figures for the caller's scope (a manager: their team, with a line
    per person), or one person's (`user`: themself or someone they manage; 404 for
    anyone else, as the dashboard answers)."""
    state = v1.api(request)
    v, now = who.viewer, state.clock()
    try:
        with v1.transaction(request) as s:
            if user is None:
                data = kpis.dashboard(s, state.cfg, v, now, weeks)
            else:
                one = kpis.person(s, state.cfg, v, user, now, weeks)
                bounds = kpis.week_starts(now, v.timezone, weeks, False)
                data = kpis.Dashboard(
                    v.email, bounds[0], bounds[-1], state.cfg.web.churn_days, one, ()
                )
    except AccessError as exc:
        raise problems.refused(exc) from None
    return Kpis(
        start=data.start,
        end=data.end,
        churn_days=data.churn_days,
        total=Figures.of(data.total),
        people=[Figures.of(p) for p in data.people],
    )
