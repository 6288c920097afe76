"""Bulk upsert of CRM records by their id in another CRM (`source`, `external_id`).

All or nothing: every item is checked first; when any is refused nothing is written and
`BulkError.errors` lists each refusal as (index, field, detail). An item sets the fields it
gives and leaves the others; addresses and domains it lists are added, none removed (as the
CSV import does: a CRM export never erases what mail taught). On success the answer counts
created, updated and unchanged items and gives each item's id in input order; the records
created or changed are retro-linked once for the batch, and one audit entry is written.

Contacts, the bulk of any CRM, are written set-based: a handful of statements per request
whatever its size (look-ups by tuple `IN`, multi-row INSERT ... RETURNING, UPDATE by primary
key in one executemany), so that an upsert of 100,000 contacts runs at thousands of records a
second. Companies and opportunities go item by item through `crmapi` (each in a SAVEPOINT,
so one failure does not hide the next); there are far fewer of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import records as crm
from mailmanager.db import audit, models, store
from mailmanager.db.models import Company, Contact, ContactEmail
from mailmanager.services import crmapi
from mailmanager.services.access import Viewer

MAX_ITEMS = 1000


@dataclass(frozen=True)
class ItemError:
    index: int
    field: str
    detail: str


class BulkError(crm.CrmError):
    """Raised when any item of a bulk upsert is refused; `errors` has one entry per refusal."""

    def __init__(self, errors: Sequence[ItemError]) -> None:
        super().__init__(f"{len(errors)} item(s) refused: nothing was written")
        self.errors = sorted(errors, key=lambda e: e.index)


@dataclass(frozen=True)
class BulkResult:
    created: int
    updated: int
    unchanged: int
    ids: list[int]
    relink_seconds: float = field(compare=False)


@dataclass(frozen=True)
class ContactItem:
    """One contact of a bulk upsert; None means "not given" (left as it is)."""

    source: str
    external_id: str
    emails: tuple[str, ...] = ()
    first_name: str | None = None
    last_name: str | None = None
    company_id: int | None = None
    company_external_id: str | None = None  # the company's id in the same source
    owner: str | None = None  # a user's e-mail
    status: str | None = None
    phone: str | None = None
    title: str | None = None


_PLAIN = ("first_name", "last_name", "status", "phone", "title")


class _Check:
    """The refusals of one batch, gathered while checking it."""

    def __init__(self) -> None:
        self.errors: list[ItemError] = []

    def fail(self, index: int, name: str, detail: str) -> None:
        self.errors.append(ItemError(index, name, detail))


def _pairs_in(session: Session, model: Any, pairs: set[tuple[str, str]], *cols: Any) -> list[Any]:
    """Rows of `model` with these (source, external_id) pairs: one `external_id IN` query per
    source (a batch has one, usually), which the (source, external_id) index answers; a
    tuple `IN` is much slower on SQLite."""
    by_source: dict[str, list[str]] = {}
    for source, ext in pairs:
        by_source.setdefault(source, []).append(ext)
    out: list[Any] = []
    pg = session.get_bind().dialect.name == "postgresql"
    for source, exts in sorted(by_source.items()):
        if not pg:
            stmt = sa.select(model.source, model.external_id, *cols).where(
                model.source == source, model.external_id.in_(sorted(exts))
            )
            out += session.execute(stmt).all()
            continue
        # PostgreSQL: one probe of the (source, external_id) index per id, whatever the
        # statistics say. With `external_id = ANY(…)` and statistics taken before this
        # source had rows (a CRM's first push, a source cleared and pushed again), it
        # planned an index scan on `source` alone, filtering each of its rows against the
        # whole list: 5 s a request at 100,000 contacts.
        probe = sa.func.unnest(store.pg_array(sorted(exts), model.external_id.type))
        ids = probe.table_valued("v").render_derived(name="probe")
        found = (
            sa.select(model.source, model.external_id, *cols)
            .where(model.source == source, model.external_id == ids.c.v)
            .offset(0)
            .lateral("found")
        )
        out += session.execute(sa.select(*found.c).select_from(ids).join(found, sa.true())).all()
    return out


def _users(session: Session, cfg: config_mod.Config) -> dict[str, int]:
    U = models.User
    ids = {e: i for e, i in session.execute(sa.select(U.email, U.id))}
    return {
        alias.lower(): ids[u.email]
        for u in cfg.users
        if u.email in ids
        for alias in (u.email, *getattr(u, "aliases", ()))
    }


def upsert_contacts(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    items: Sequence[ContactItem],
    now: datetime,
) -> BulkResult:
    """Create or update these contacts, all or none; raises BulkError."""
    check = _Check()
    users = _users(session, cfg)
    seen: dict[tuple[str, str], int] = {}
    keys: list[list[tuple[str, str]]] = []
    key_item: dict[str, int] = {}
    owner_of: dict[int, int] = {}
    for i, it in enumerate(items):
        if (it.source, it.external_id) in seen:
            check.fail(i, "external_id", f"the same as item {seen[(it.source, it.external_id)]}")
        seen.setdefault((it.source, it.external_id), i)
        mine: list[tuple[str, str]] = []
        for address in it.emails:
            try:
                key = crm.contact_key(cfg, address)
            except (crm.CrmError, ValueError) as exc:
                check.fail(i, "emails", str(exc))
                continue
            if key_item.setdefault(key, i) != i:
                check.fail(i, "emails", f"{key} is also an address of item {key_item[key]}")
            if key not in {k for k, _ in mine}:  # the same address twice: once
                mine.append((key, address.strip()))
        keys.append(mine)
        if it.status is not None and it.status not in crm.CONTACT_STATUSES:
            check.fail(i, "status", f"status {it.status!r}: use one of prospect, client")
        if it.owner is not None:
            if it.owner.strip().lower() not in users:
                check.fail(i, "owner", f"{it.owner!r} is not a user")
            else:
                owner_of[i] = users[it.owner.strip().lower()]
        if it.company_id is not None and it.company_external_id is not None:
            check.fail(i, "company_id", "give company_id or company_external_id, not both")
    # The companies named, by id or by their id in the same source.
    named = sorted({it.company_id for it in items if it.company_id is not None})
    by_id = set(
        session.scalars(sa.select(Company.id).where(store.among(session, Company.id, named)))
    )
    wanted = {(it.source, it.company_external_id) for it in items if it.company_external_id}
    by_ext = {(s, e): cid for s, e, cid in _pairs_in(session, Company, wanted, Company.id)}
    company_of: dict[int, int] = {}
    for i, it in enumerate(items):
        if it.company_id is not None:
            if it.company_id not in by_id:
                check.fail(i, "company_id", f"no company #{it.company_id}")
            company_of[i] = it.company_id
        elif it.company_external_id is not None:
            found = by_ext.get((it.source, it.company_external_id))
            if found is None:
                detail = f"no company with {it.source} id {it.company_external_id!r}"
                check.fail(i, "company_external_id", detail)
            else:
                company_of[i] = found
    # The contacts these items already are, and who holds their addresses.
    cols = [
        Contact.id,
        Contact.company_id,
        Contact.owner_id,
        *(getattr(Contact, n) for n in _PLAIN),
    ]
    existing = {(r[0], r[1]): r for r in _pairs_in(session, Contact, set(seen), *cols)}
    all_keys = list(key_item)
    holders: dict[str, int] = {}
    for part in store.parts(session, all_keys):
        stmt = sa.select(ContactEmail.email, ContactEmail.contact_id).where(
            store.among(session, ContactEmail.email, part)
        )
        holders.update({e: c for e, c in session.execute(stmt)})
    for i, it in enumerate(items):
        row = existing.get((it.source, it.external_id))
        if row is None and not it.emails:
            check.fail(i, "emails", "a new contact needs at least one e-mail address")
        for key, _ in keys[i]:
            holder = holders.get(key)
            if holder is not None and (row is None or holder != row.id):
                check.fail(i, "emails", f"{key} already belongs to contact #{holder}")
    if check.errors:
        raise BulkError(check.errors)
    return _write_contacts(
        session, cfg, viewer, items, now, _Plan(existing, keys, holders, company_of, owner_of)
    )


@dataclass
class _Plan:
    existing: dict[tuple[str, str], Any]
    keys: list[list[tuple[str, str]]]
    holders: dict[str, int]
    company_of: dict[int, int]
    owner_of: dict[int, int]


def _write_contacts(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    items: Sequence[ContactItem],
    now: datetime,
    plan: _Plan,
) -> BulkResult:
    new: list[dict[str, Any]] = []
    new_at: list[int] = []
    changes: list[dict[str, Any]] = []
    ids: list[int | None] = [None] * len(items)
    relink: set[int] = set()
    unchanged = 0
    for i, it in enumerate(items):
        given: dict[str, Any] = {
            n: getattr(it, n).strip() for n in _PLAIN if getattr(it, n) is not None
        }
        if i in plan.company_of:
            given["company_id"] = plan.company_of[i]
        if i in plan.owner_of:
            given["owner_id"] = plan.owner_of[i]
        row = plan.existing.get((it.source, it.external_id))
        if row is None:
            new.append(
                {
                    "source": it.source,
                    "external_id": it.external_id,
                    "created_at": now,
                    "updated_at": now,
                    "status": "prospect",
                    **given,
                }
            )
            new_at.append(i)
            continue
        ids[i] = row.id
        diff = {k: v for k, v in given.items() if getattr(row, k) != v}
        adds = any(plan.holders.get(key) is None for key, _ in plan.keys[i])
        if diff or adds:
            changes.append({"id": row.id, "updated_at": now, **diff})
            if adds or "company_id" in diff:
                relink.add(row.id)
        else:
            unchanged += 1
    if new:
        # A multi-row INSERT, then the ids by their keys. (RETURNING in parameter order makes
        # SQLAlchemy insert row by row on SQLite; in any order, its multi-row INSERTs of
        # thousands of parameters cost psycopg more to parse than PostgreSQL to run.)
        for group in _same_keys(new):
            store.insert_many(session, Contact, group)
        pairs = {(r["source"], r["external_id"]) for r in new}
        made = {(r[0], r[1]): r[2] for r in _pairs_in(session, Contact, pairs, Contact.id)}
        for i in new_at:
            ids[i] = made[(items[i].source, items[i].external_id)]
            relink.add(made[(items[i].source, items[i].external_id)])
    for group in _same_keys(changes):
        session.execute(sa.update(Contact), group)
    addresses = [
        {"contact_id": ids[i], "email": key, "display": shown}
        for i in range(len(items))
        for key, shown in plan.keys[i]
        if plan.holders.get(key) is None
    ]
    store.insert_many(session, ContactEmail, addresses)
    started = time.perf_counter()
    crm.relink(session, cfg, contacts=relink)
    took = time.perf_counter() - started
    result = BulkResult(len(new), len(changes), unchanged, [i for i in ids if i is not None], took)
    _audit(session, viewer, "contacts", result)
    return result


def _same_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`rows` grouped by the set of keys they have (one executemany per group)."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(frozenset(r), []).append(r)
    return list(groups.values())


def _audit(session: Session, viewer: Viewer, kind: str, result: BulkResult) -> None:
    detail = {"created": result.created, "updated": result.updated, "unchanged": result.unchanged}
    audit.record(session, f"api:{viewer.email}", f"{kind}.bulk_upsert", kind, detail)


# --- companies and opportunities, item by item -------------------------------------------------


def upsert_each(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    items: Sequence[Mapping[str, Any]],
    now: datetime,
) -> BulkResult:
    """Create or update companies or opportunities (each item holds `source` and
    `external_id` and the create body's fields), all or none; raises BulkError.
    Opportunities may name their company and contacts by their ids in the same source
    (`company_external_id`, `contact_external_ids`)."""
    model = crmapi.KINDS[kind]
    check = _Check()
    ids: list[int] = []
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    touched: set[int] = set()
    outer = session.begin_nested()
    for i, item in enumerate(items):
        try:
            with session.begin_nested():
                values = _resolve(session, dict(item))
                stmt = sa.select(model).where(
                    model.source == item["source"], model.external_id == item["external_id"]
                )
                row = session.scalar(stmt)
                if row is None:
                    row, outcome = crmapi.create_row(session, cfg, kind, values), "created"
                elif crmapi.UPDATE[kind](session, cfg, row, values):
                    outcome = "updated"
                else:
                    outcome = "unchanged"
                if outcome != "unchanged":
                    row.updated_at = now
                    touched.add(row.id)
                session.flush()
                ids.append(row.id)
                counts[outcome] += 1
        except (crm.CrmError, ValueError) as exc:
            check.fail(i, getattr(exc, "field", ""), str(exc))
    if check.errors:
        outer.rollback()
        raise BulkError(check.errors)
    outer.commit()
    started = time.perf_counter()
    crm.relink(session, cfg, **{kind: touched})
    took = time.perf_counter() - started
    result = BulkResult(counts["created"], counts["updated"], counts["unchanged"], ids, took)
    _audit(session, viewer, kind, result)
    return result


def _resolve(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """`company_external_id` and `contact_external_ids` as ids (same source)."""
    source = values["source"]
    ext = values.pop("company_external_id", None)
    if ext is not None:
        found = session.scalar(
            sa.select(Company.id).where(Company.source == source, Company.external_id == ext)
        )
        if found is None:
            raise crm.CrmError(f"no company with {source} id {ext!r}", "company_external_id")
        values["company_id"] = found
    refs = values.pop("contact_external_ids", None) or []
    if refs:
        stmt = sa.select(Contact.external_id, Contact.id).where(
            Contact.source == source, Contact.external_id.in_(refs)
        )
        found_ids = {e: c for e, c in session.execute(stmt)}
        for ref in refs:
            if ref not in found_ids:
                raise crm.CrmError(f"no contact with {source} id {ref!r}", "contact_external_ids")
        values["contact_ids"] = [*values.get("contact_ids", ()), *found_ids.values()]
    return values
