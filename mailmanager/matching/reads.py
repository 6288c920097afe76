"""The matcher's reads and side tables: thread facts, CRM lookups, suggestions, new contacts.

Every function works on a whole chunk with a handful of set queries (`IN` lists of at most
`store.chunks` items), never one query per message: see `matching.run` for how they combine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import (
    CompanyDomain,
    Contact,
    ContactEmail,
    Opportunity,
    OpportunityContact,
)
from mailmanager.mail import normalize
from mailmanager.matching import cascade as matcher

MATCHER = "matcher"


among = store.among  # `column IN values`, one array parameter on PostgreSQL
parts = store.parts  # slices sized for `among`


def raw_rows(s: Session, sql: str, values: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of `sql` (plain SQL whose "{}" becomes "IN (...)" or "= ANY(...)" over `values`;
    with no `values`, run as it is), as plain tuples straight from the driver's cursor:
    only for columns that need no type processing. (SQLAlchemy's result rows cost more
    than the query on the big reads.)"""
    return _raw(s, sql, values, fetch=True)


def rows_by(
    s: Session,
    columns: str,
    table: str,
    key: str,
    ids: Sequence[int],
    where: str = "",
    order: str = "",
) -> list[tuple[Any, ...]]:
    """`raw_rows` of `SELECT columns FROM table WHERE [where AND] key IN ids [order]`, for
    an indexed integer `key`. PostgreSQL probes the index once per id (a LATERAL subquery
    that the planner may not flatten), whatever its statistics say: with statistics taken
    while the table was nearly empty (a new install, a cleared table, autovacuum off), it
    planned `key = ANY(ids)` as a scan of the whole table, and the matcher's read of the
    previous links grew slower with every batch (measured: 26 s of a 49 s run)."""
    dialect = s.get_bind().dialect.name
    sql = rows_by_sql(dialect, columns, table, key, where, order)
    return _raw(s, sql, ids, True, bare=dialect == "postgresql")


def rows_by_sql(dialect: str, columns: str, table: str, key: str, where: str, order: str) -> str:
    """The statement `rows_by` runs, with "{}" where the ids go (on PostgreSQL, the array
    itself rather than `= ANY(array)`)."""
    cond = f"{where} AND " if where else ""
    if dialect != "postgresql":
        return f"SELECT {columns} FROM {table} WHERE {cond}{key} {{}} {order}"
    return (
        f"SELECT {columns} FROM unnest({{}}) AS probe(v) CROSS JOIN LATERAL "
        f"(SELECT * FROM {table} WHERE {cond}{key} = probe.v OFFSET 0) AS r {order}"
    )


def raw_execute(s: Session, sql: str, values: Sequence[Any]) -> None:
    """`raw_rows` for a statement that returns nothing (DELETE, UPDATE)."""
    _raw(s, sql, values, fetch=False)


def _raw(
    s: Session, sql: str, values: Sequence[Any] | None, fetch: bool, bare: bool = False
) -> list[tuple[Any, ...]]:
    # PostgreSQL: never a server-side prepared statement (psycopg prepares a query from its
    # fifth run). A prepared `= ANY($1)` gets a generic plan, made once and kept for the
    # connection's life: planned while a table was empty (a new install, a cleared queue),
    # it goes on scanning the whole table, comparing each row with every value in the list,
    # once the table has grown. Planned per call, the plan sees the list and the table.
    conn = s.connection()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if values is None:
            cursor.execute(sql)
        elif conn.dialect.name == "postgresql":
            among = "{}" if bare else "= ANY({})"  # `bare`: "{}" stands for the array
            if all(type(v) is int for v in values):
                # Ids as one array literal: psycopg dumps a list of ints element by element
                # in Python, which cost more than the query on the matcher's reads.
                array = "{" + ",".join(map(str, values)) + "}"
                cursor.execute(sql.format(among.format("%s::bigint[]")), (array,), prepare=False)
            else:
                cursor.execute(sql.format(among.format("%s")), (list(values),), prepare=False)
        else:
            marks = ", ".join("?" * len(values))
            cursor.execute(sql.format(f"IN ({marks})"), tuple(values))
        return cursor.fetchall() if fetch else []
    finally:
        cursor.close()


def _sqlite_utc(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value + "+00:00")


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


# The sixteen flag sets, by (auto-reply, out-of-office, bulk, bounce) as the driver gives
# them (0/1 or False/True, which hash alike).
_FLAGS = {
    (a, o, b, x): _flags(bool(a), bool(o), bool(b), bool(x))
    for a in (0, 1)
    for o in (0, 1)
    for b in (0, 1)
    for x in (0, 1)
}


@functools.lru_cache(maxsize=65536)
def _party(role: str, email: str, name: str, strip_plus: bool) -> matcher.Party | None:
    """A participant row as the matcher sees it, memoised: the same people write again and
    again, and a run makes hundreds of thousands of these."""
    key = key_of(email, strip_plus)
    return None if key is None else matcher.Party(role, key, email, name)


def load_threads(
    s: Session, thread_ids: Sequence[int], strip_plus: bool, with_owners: bool
) -> list[matcher.ThreadMatchFacts]:
    """The facts of these threads: every message, its participants, the manual marks."""
    when = _driver_utc(s)
    msgs: dict[int, tuple[Any, ...]] = {}
    parties: dict[int, list[matcher.Party]] = {}
    for row in rows_by(
        s,
        "id, thread_id, message_id, sent_at, direction, subject, is_auto_reply, "
        "is_out_of_office, is_bulk, is_bounce",
        "messages",
        "thread_id",
        thread_ids,
    ):
        msgs[row[0]] = row
        parties[row[0]] = []
    # The biggest read of a run: by message id (an index seek each, no join), straight
    # from the driver, without per-row processing.
    for part in parts(s, list(msgs)):
        for mid, role, email, name in rows_by(
            s,
            "message_id, role, email, name",
            "participants",
            "message_id",
            part,
            order="ORDER BY message_id, id",  # header order: the detail text lists people in it
        ):
            party = _party(role, email, name, strip_plus)
            if party is not None:
                parties[mid].append(party)
    owners: dict[int, set[str]] = {}
    if with_owners:
        for mid, email in raw_rows(
            s,
            "SELECT ml.message_id, u.email FROM message_locations ml "
            "JOIN folders f ON f.id = ml.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id "
            "JOIN users u ON u.id = mb.owner_id JOIN messages m ON m.id = ml.message_id "
            "WHERE m.thread_id {}",
            thread_ids,
        ):
            owners.setdefault(mid, set()).add(email)
    marks: dict[int, list[matcher.Mark]] = {}
    for mark_mid, tid, kind, target, tomb, by in rows_by(
        s,
        "message_id, thread_id, target_kind, target_id, tombstone, created_by",
        "links",
        "thread_id",
        thread_ids,
        where=f"({models.MANUAL_LINKS})",  # ix_links_manual
    ):
        if tid is not None:
            marks.setdefault(tid, []).append(matcher.Mark(kind, target, bool(tomb), mark_mid, by))
    by_thread: dict[int, list[matcher.MessageFacts]] = {}
    none: frozenset[str] = frozenset()
    for mid, tid, msgid, sent, direction, subject, auto, ooo, bulk, bounce in msgs.values():
        who = owners.get(mid)
        by_thread.setdefault(tid, []).append(
            matcher.MessageFacts(
                mid,
                tid,
                msgid,
                when(sent),
                direction,
                subject,
                _FLAGS[(auto, ooo, bulk, bounce)],
                tuple(parties[mid]),
                none if who is None else frozenset(who),
            )
        )
    return [
        matcher.ThreadMatchFacts(tid, tuple(ms), tuple(marks.get(tid, ())))
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
    """The whole CRM as an in-memory index (for full re-matches, and `crmcache`): read
    straight from the driver, a few hundred thousand rows."""
    ix = matcher.Index()
    for email, cid, company in raw_rows(
        s,
        "SELECT e.email, e.contact_id, c.company_id FROM contact_emails e "
        "JOIN contacts c ON c.id = e.contact_id",
    ):
        ix.contacts[email] = cid
        ix.contact_company[cid] = company
    ix.companies.update(raw_rows(s, "SELECT domain, company_id FROM company_domains"))
    members = raw_rows(s, "SELECT opportunity_id, contact_id FROM opportunity_contacts")
    when = _driver_utc(s)

    def at(value: Any) -> datetime:
        moment = when(value)
        assert moment is not None  # created_at is NOT NULL
        return moment

    opps = (
        matcher.Opp(oid, ref, company, stage == "open", at(created), when(closed), when(last))
        for oid, ref, company, stage, created, closed, last in raw_rows(
            s,
            "SELECT id, reference, company_id, stage, created_at, closed_at, last_activity_at "
            "FROM opportunities",
        )
    )
    _fill_opps(ix, opps, members)
    return ix


def load_for(
    s: Session, facts: Sequence[matcher.ThreadMatchFacts], policy: matcher.Policy
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
