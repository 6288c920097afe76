"""The matcher's reads and side tables: thread facts, CRM lookups, suggestions, new contacts.

Every function works on a whole chunk with a handful of set queries (`IN` lists of at most
`store.chunks` items), never one query per message: see `linking` for how they combine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from mailmanager import matcher, models, normalize, store
from mailmanager.models import (
    CompanyDomain,
    Contact,
    ContactEmail,
    Link,
    Message,
    Opportunity,
    OpportunityContact,
)

MATCHER = "matcher"


def among(s: Session, column: Any, values: Collection[Any]) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, one parameter however many
    values (psycopg parses a query of thousands of placeholders slower than it runs it)."""
    if s.get_bind().dialect.name == "postgresql":
        array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == sa.any_(array)  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def parts(s: Session, values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """`values` in slices sized for `among`: 500 on SQLite, 20,000 on PostgreSQL."""
    size = 20000 if s.get_bind().dialect.name == "postgresql" else 500
    return store.chunks(values, size)


def raw_rows(s: Session, sql: str, values: Sequence[Any]) -> Sequence[Any]:
    """Rows of `sql` (plain SQL whose "{}" becomes "IN (...)" or "= ANY(...)" over `values`),
    as the driver returns them: only for columns that need no type processing."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql(sql.format("= ANY(%s)"), (list(values),)).all()
    marks = ", ".join("?" * len(values))
    return conn.exec_driver_sql(sql.format(f"IN ({marks})"), tuple(values)).all()


def _sqlite_utc(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _driver_utc(s: Session) -> Callable[[Any], datetime | None]:
    """How a `models.UTCDateTime` value read by `raw_rows` becomes an aware datetime: SQLite
    returns SQLAlchemy's text form, PostgreSQL a naive UTC datetime."""
    return _sqlite_utc if s.get_bind().dialect.name == "sqlite" else _naive_utc


@functools.lru_cache(maxsize=262144)
def key_of(email: str, strip_plus: bool = True) -> str | None:
    """`normalize.match_key`, memoised: a run sees the same addresses again and again."""
    return normalize.match_key(email, strip_plus)


def _flags(auto: bool, ooo: bool, bulk: bool, bounce: bool) -> frozenset[str]:
    out = []
    if auto or ooo:
        out.append("auto_reply")
    if bulk:
        out.append("bulk")
    if bounce:
        out.append("bounce")
    return frozenset(out)


def load_threads(
    s: Session, thread_ids: Sequence[int], strip_plus: bool, with_owners: bool
) -> list[matcher.ThreadFacts]:
    """The facts of these threads: every message, its participants, the manual marks."""
    m = Message
    in_chunk = among(s, m.thread_id, thread_ids)
    msgs: dict[int, list[Any]] = {}
    when = _driver_utc(s)
    for row in raw_rows(
        s,
        "SELECT id, thread_id, message_id, sent_at, direction, subject, is_auto_reply, "
        "is_out_of_office, is_bulk, is_bounce FROM messages WHERE thread_id {}",
        thread_ids,
    ):
        msgs[row[0]] = [*row[:3], when(row[3]), *row[4:], []]
    # The biggest read of a run: straight from the driver, without per-row processing.
    for mid, role, email, name in raw_rows(
        s,
        "SELECT p.message_id, p.role, p.email, p.name FROM participants p "
        "JOIN messages m ON m.id = p.message_id WHERE m.thread_id {}",
        thread_ids,
    ):
        key = key_of(email, strip_plus)
        if key is not None and mid in msgs:
            msgs[mid][-1].append(matcher.Party(role, key, email, name))
    owners: dict[int, set[str]] = {}
    if with_owners:
        ml, f, mb, u = models.MessageLocation, models.Folder, models.Mailbox, models.User
        for mid, email in (
            s.connection()
            .execute(
                sa.select(ml.message_id, u.email)
                .join(f, f.id == ml.folder_id)
                .join(mb, mb.id == f.mailbox_id)
                .join(u, u.id == mb.owner_id)
                .join(m, m.id == ml.message_id)
                .where(in_chunk)
            )
            .all()
        ):
            owners.setdefault(mid, set()).add(email)
    marks: dict[int, list[matcher.Mark]] = {}
    for mark_mid, tid, kind, target, tomb, by in (
        s.connection()
        .execute(
            sa.select(
                Link.message_id,
                Link.thread_id,
                Link.target_kind,
                Link.target_id,
                Link.tombstone,
                Link.created_by,
            ).where(
                among(s, Link.thread_id, thread_ids),
                sa.or_(Link.tombstone, Link.created_by != MATCHER),
            )
        )
        .all()
    ):
        if tid is not None:
            marks.setdefault(tid, []).append(matcher.Mark(kind, target, bool(tomb), mark_mid, by))
    by_thread: dict[int, list[matcher.MessageFacts]] = {}
    for (
        mid,
        tid,
        msgid,
        sent,
        direction,
        subject,
        auto,
        ooo,
        bulk,
        bounce,
        parties,
    ) in msgs.values():
        by_thread.setdefault(tid, []).append(
            matcher.MessageFacts(
                mid,
                tid,
                msgid,
                sent,
                direction,
                subject,
                _flags(auto, ooo, bulk, bounce),
                tuple(parties),
                frozenset(owners.get(mid, ())),
            )
        )
    return [
        matcher.ThreadFacts(tid, tuple(ms), tuple(marks.get(tid, ())))
        for tid, ms in sorted(by_thread.items())
    ]


def _opp(row: Any) -> matcher.Opp:
    oid, ref, company, stage, created, closed, activity = row
    return matcher.Opp(oid, ref, company, stage == "open", created, closed, activity)


_OPP_COLUMNS = (
    Opportunity.id,
    Opportunity.reference,
    Opportunity.company_id,
    Opportunity.stage,
    Opportunity.created_at,
    Opportunity.closed_at,
    Opportunity.last_activity_at,
)


def _fill_opps(
    ix: matcher.Index, opps: Iterable[matcher.Opp], members: Iterable[tuple[int, int]]
) -> None:
    by_company: dict[int, list[int]] = {}
    for o in opps:
        ix.opps[o.id] = o
        if o.reference:
            ix.opp_by_ref[o.reference.upper()] = o.id
        if o.company_id is not None:
            by_company.setdefault(o.company_id, []).append(o.id)
    by_contact: dict[int, list[int]] = {}
    for oid, cid in members:
        by_contact.setdefault(cid, []).append(oid)
    ix.company_opps.update((k, tuple(v)) for k, v in by_company.items())
    ix.contact_opps.update((k, tuple(v)) for k, v in by_contact.items())


def load_all(s: Session) -> matcher.Index:
    """The whole CRM as an in-memory index (for full re-matches)."""
    ix = matcher.Index()
    for email, cid, company in (
        s.connection()
        .execute(
            sa.select(ContactEmail.email, ContactEmail.contact_id, Contact.company_id).join(
                Contact, Contact.id == ContactEmail.contact_id
            )
        )
        .all()
    ):
        ix.contacts[email] = cid
        ix.contact_company[cid] = company
    ix.companies.update(
        (d, c)
        for d, c in s.connection()
        .execute(sa.select(CompanyDomain.domain, CompanyDomain.company_id))
        .all()
    )
    members = s.connection().execute(
        sa.select(OpportunityContact.opportunity_id, OpportunityContact.contact_id)
    )
    _fill_opps(
        ix,
        (_opp(r) for r in s.connection().execute(sa.select(*_OPP_COLUMNS))),
        [(o, c) for o, c in members],
    )
    return ix


def load_for(
    s: Session, facts: Sequence[matcher.ThreadFacts], policy: matcher.Policy
) -> matcher.Index:
    """The part of the CRM these threads can reach: their addresses, domains, references."""
    ix = matcher.Index()
    keys = {p.key for t in facts for m in t.messages for p in m.parties}
    domains = {d for k in keys for d in matcher.domain_facts(k.rpartition("@")[2])[2]}
    refs: set[str] = set()
    for t in facts:
        for m in t.messages:
            for found in policy.opportunity_pattern.finditer(m.subject):
                ref = found.group(1) if found.groups() else found.group(0)
                refs.update((ref, ref.upper(), ref.lower()))
    marked = {(k.kind, k.target_id) for t in facts for k in t.marks if not k.tombstone}
    for part in parts(s, sorted(keys)):
        for email, cid, company in (
            s.connection()
            .execute(
                sa.select(ContactEmail.email, ContactEmail.contact_id, Contact.company_id)
                .join(Contact, Contact.id == ContactEmail.contact_id)
                .where(among(s, ContactEmail.email, part))
            )
            .all()
        ):
            ix.contacts[email] = cid
            ix.contact_company[cid] = company
    for part in parts(s, sorted(domains)):
        query = sa.select(CompanyDomain.domain, CompanyDomain.company_id)
        ix.companies.update(
            (d, c)
            for d, c in s.connection().execute(query.where(among(s, CompanyDomain.domain, part)))
        )
    contact_ids = set(ix.contacts.values()) | {t for k, t in marked if k == "contact"}
    company_ids = set(ix.companies.values()) | {t for k, t in marked if k == "company"}
    company_ids |= {c for c in ix.contact_company.values() if c is not None}
    members: list[tuple[int, int]] = []
    for part in parts(s, sorted(contact_ids)):
        pairs = sa.select(OpportunityContact.opportunity_id, OpportunityContact.contact_id)
        pairs_found = s.connection().execute(
            pairs.where(among(s, OpportunityContact.contact_id, part))
        )
        members.extend((o, c) for o, c in pairs_found)
    opp_ids = {o for o, _ in members}
    rows: dict[int, matcher.Opp] = {}
    for column, values in (
        (Opportunity.id, opp_ids),
        (Opportunity.company_id, company_ids),
        (Opportunity.reference, refs),
    ):
        for part in parts(s, sorted(values)):
            rows.update(
                (r[0], _opp(r))
                for r in s.connection()
                .execute(sa.select(*_OPP_COLUMNS).where(among(s, column, part)))
                .all()
            )
    _fill_opps(ix, rows.values(), members)
    return ix
