"""The threads a person may see, a page at a time: the REST API's `GET /threads`.

Which threads: those with at least one message `access.level` shows the viewer (its
metadata or content): in SQL (`_visible`) the threads holding mail of the viewer's own
mailboxes or their reports', the viewer's private threads, and (unless `[web] visibility`
is "none") the threads with a message on a client record; never a thread private to
someone else. `access.levels` then judges each message of the page, as every page does,
and a thread it refuses entirely is left out.

Pages are keyset pages on the thread id, newest first (`before`: the last id of the
previous page): a thread created meanwhile sorts before the cursor, so a client following
`next` never sees a thread twice nor misses one that existed when it started. (An order by
last message would move a thread that gets a reply, which then could be skipped.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from mailmanager import config as config_mod
from mailmanager.db import models, store
from mailmanager.db.models import Link, Message, MessageLocation, Thread
from mailmanager.services import access, curation
from mailmanager.services.access import Level, Viewer
from mailmanager.services.threadview import LinkedRecord

_RANK: dict[str, int] = {"none": 0, "metadata": 1, "content": 2}
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    """What `page` keeps: threads linked to each record given (by a link that is not a
    tombstone), whose last message is in [`since`, `until`), changed since
    `updated_since` (`Thread.updated_at`: a new message, a merge)."""

    company_id: int | None = None
    contact_id: int | None = None
    opportunity_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    updated_since: datetime | None = None

    def records(self) -> list[tuple[str, int]]:
        pairs = (
            ("company", self.company_id),
            ("contact", self.contact_id),
            ("opportunity", self.opportunity_id),
        )
        return [(kind, rid) for kind, rid in pairs if rid is not None]


@dataclass(frozen=True)
class ThreadSummary:
    """A thread as a list shows it, from the messages the viewer sees: `level` is the
    most they see of one of them ("content": they read at least one)."""

    id: int
    subject: str  # of the first message the viewer sees
    first_at: datetime | None
    last_at: datetime | None
    updated_at: datetime
    message_count: int  # the messages the viewer sees
    level: Level
    records: tuple[LinkedRecord, ...]


def _visible(on_records: bool) -> sa.ColumnElement[bool]:
    """`access.level` > "none" for some message of the thread, in SQL (module docstring),
    for the viewer of parameters `viewer` (their email) and `folders` (their
    `access.content_folders`); `on_records`: colleagues' threads on a client record count
    (`[web] visibility` is "full" or "metadata"). Each test is an EXISTS on the
    thread's messages (their index by thread), asked only of the threads the page reads.
    `OFFSET 0` keeps PostgreSQL from turning each into a hashed set of every thread it
    holds, built per request (200 ms at 200,000 messages; 2 ms so, `benchmarks/web.py`'s
    world)."""
    t, m = Thread, Message
    held = (
        sa.select(MessageLocation.id)
        .join(m, m.id == MessageLocation.message_id)
        # `+ 0`: the folder is a filter, not a way in. SQLite otherwise reads the viewer's
        # whole folder (by its unique index) for each thread: 1.8 s per page at 200,000
        # messages in one mailbox, against a few ms through the messages' thread index.
        .where(
            m.thread_id == t.id,
            (MessageLocation.folder_id + 0).in_(sa.bindparam("folders", expanding=True)),
        )
        .offset(0)
        .exists()
    )
    shared = [held]
    if on_records:
        wanted = (~Link.tombstone, Link.target_kind != "any")
        shared.append(
            sa.select(Link.id)
            .join(m, m.id == Link.message_id)
            .where(m.thread_id == t.id, *wanted)
            .offset(0)
            .exists()
        )
        shared.append(
            sa.select(Link.id)
            .where(
                models.manual_links(), Link.thread_id == t.id, Link.message_id.is_(None), *wanted
            )
            .offset(0)
            .exists()
        )
    viewer = sa.bindparam("viewer", type_=Thread.private_owner.type)
    return sa.or_(t.private_owner == viewer, sa.and_(t.private_owner.is_(None), sa.or_(*shared)))


def linked_to(kind: str) -> sa.Select[Any]:
    """The threads linked to the record of kind `kind` and id parameter `<kind>_id` by a
    link that is not a tombstone (the anchors' index, `models.anchored_threads`)."""
    a = aliased(Link, name="anchors")
    rid = sa.bindparam(f"{kind}_id", type_=sa.Integer)
    return sa.select(a.thread_id).where(
        sa.text("anchors.anchor"), a.target_kind == kind, a.target_id == rid, ~a.tombstone
    )


@functools.cache
def _ids_query(
    on_records: bool,
    kinds: tuple[str, ...],
    since: bool,
    until: bool,
    updated_since: bool,
    before: bool,
) -> sa.Select[int, datetime]:
    """`page`'s query of the threads' ids (and update times), built once for each shape of
    filters (which are given): its parameters are `viewer`, `folders`, `<kind>_id` for
    each of `kinds`, `since`, `until`, `updated_since`, `before` and `limit`."""
    t = Thread
    query = sa.select(t.id, t.updated_at).where(_visible(on_records))
    for kind in kinds:
        query = query.where(t.id.in_(linked_to(kind)))
    if since:
        query = query.where(t.last_at >= sa.bindparam("since", type_=t.last_at.type))
    if until:
        query = query.where(t.last_at < sa.bindparam("until", type_=t.last_at.type))
    if updated_since:
        stamp = sa.bindparam("updated_since", type_=t.updated_at.type)
        query = query.where(t.updated_at >= stamp)
    if before:
        query = query.where(t.id < sa.bindparam("before"))
    return query.order_by(t.id.desc()).limit(sa.bindparam("limit", type_=sa.Integer))


def page(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    filters: Filters,
    before: int | None,
    limit: int,
) -> tuple[list[ThreadSummary], int | None]:
    """The threads `viewer` sees that `filters` keep, newest first, at most `limit` of
    those whose id is below `before`; and the id to pass as `before` for the next page
    (None on the last)."""
    f = filters
    folders = access.content_folders(session, viewer)
    records = f.records()
    query = _ids_query(
        access.visibility(cfg) in ("full", "metadata"),
        tuple(kind for kind, _ in records),
        f.since is not None,
        f.until is not None,
        f.updated_since is not None,
        before is not None,
    )
    values: dict[str, Any] = {"viewer": viewer.email, "folders": folders, "limit": limit + 1}
    values |= {f"{kind}_id": rid for kind, rid in records}
    values |= {"since": f.since, "until": f.until, "updated_since": f.updated_since}
    rows = session.execute(query, {**values, "before": before}).all()
    more = len(rows) > limit
    updated: dict[int, datetime] = dict(rows[:limit])
    ids = list(updated)
    found = summaries(session, cfg, viewer, ids, folders, updated)
    return found, (ids[-1] if more and ids else None)


def summaries(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    thread_ids: list[int],
    folders: list[int],
    updated: dict[int, datetime],
) -> list[ThreadSummary]:
    """The threads `thread_ids`, in that order, as `viewer` sees them (`access.level` of
    each of their messages, `access.thread_levels_of`); a thread of which they see nothing
    is left out. `folders`: the viewer's `access.content_folders`; `updated`: each
    thread's `updated_at` (`page` read both already)."""
    members: dict[int, list[access.Seen]] = {}
    for seen_one in access.thread_levels_of(session, cfg, viewer, thread_ids, folders):
        if seen_one.level != "none":
            members.setdefault(seen_one.thread_id, []).append(seen_one)
    linked = _records(session, thread_ids)
    out = []
    for tid in thread_ids:
        seen = sorted(
            members.get(tid, ()),
            key=lambda x: (x.sent_at is None, x.sent_at or _EPOCH, x.id),
        )
        if not seen:
            continue
        dates = [x.sent_at for x in seen if x.sent_at is not None]
        out.append(
            ThreadSummary(
                id=tid,
                subject=seen[0].subject,
                first_at=min(dates, default=None),
                last_at=max(dates, default=None),
                updated_at=updated[tid],
                message_count=len(seen),
                level=max((x.level for x in seen), key=_RANK.__getitem__),
                records=linked.get(tid, ()),
            )
        )
    return out


def _records(session: Session, thread_ids: list[int]) -> dict[int, tuple[LinkedRecord, ...]]:
    """`threadview.thread_records` of many threads, in a few queries: the links of their
    messages and their manual thread links (the two indexed reads of
    `threadview.records_query`), then the labels (`curation.target_labels`)."""
    postgres = store.is_postgres(session)
    query = _records_query(postgres)
    rows: set[tuple[int | None, str, int]] = set()
    for part in store.parts(session, thread_ids):
        rows.update(session.execute(query, {"threads": store.ids_param(postgres, part)}))
    labels = curation.target_labels(session, {(kind, rid) for _, kind, rid in rows})
    order = {k: i for i, k in enumerate(curation.KINDS)}
    out: dict[int, list[LinkedRecord]] = {}
    for tid, kind, rid in sorted(rows, key=lambda r: (order[r[1]], r[2])):
        if tid is not None:
            out.setdefault(tid, []).append(LinkedRecord(kind, rid, labels[kind, rid]))
    return {tid: tuple(found) for tid, found in out.items()}


@functools.cache
def _records_query(postgres: bool) -> sa.CompoundSelect[int | None, str, int]:
    """`_records`' query, built once per backend (the threads are its parameter
    `threads`): the links of the threads' messages, and their manual thread links."""
    wanted = (~Link.tombstone, Link.target_kind.in_(curation.KINDS))
    return sa.union(
        _message_links(postgres, wanted),
        sa.select(Link.thread_id, Link.target_kind, Link.target_id).where(
            models.manual_links(),
            store.among_param(postgres, Link.thread_id, "threads"),
            Link.message_id.is_(None),
            *wanted,
        ),
    )


def _message_links(
    postgres: bool, wanted: tuple[sa.ColumnElement[bool], ...]
) -> sa.Select[int | None, str, int]:
    """(thread id, kind, record id) of the links of the messages of the threads (parameter
    `threads`). On PostgreSQL a probe of the links' index per message (`LATERAL … OFFSET
    0`): by its statistics it would rather hash every link of the database, once per
    request (2.8 ms a page in the benchmark's world, against 0.6 so)."""
    m = Message
    if postgres:
        probe = (
            sa.select(Link.target_kind, Link.target_id)
            .where(Link.message_id == m.id, *wanted)
            .offset(0)
            .lateral("probe")
        )
        return (
            sa.select(m.thread_id, probe.c.target_kind, probe.c.target_id)
            .join(probe, sa.true())
            .where(store.among_param(postgres, m.thread_id, "threads"))
        )
    messages = sa.select(m.id).where(store.among_param(postgres, m.thread_id, "threads"))
    return (
        sa.select(m.thread_id, Link.target_kind, Link.target_id)
        .join(m, m.id == Link.message_id)
        .where(Link.message_id.in_(messages), *wanted)
    )
