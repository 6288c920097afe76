"""CRM records for the REST API: lists in keyset pages, one record, and single writes.

A record's identity in another CRM is its (`source`, `external_id`) pair, unique per source
(migration 0023). Lists are ordered by (`updated_at`, `id`), so a client can page through
everything, or through what changed since its last run (`updated_since`); a row written
while a client pages gets a newer `updated_at` and shows up on a later page, never twice
on the same run's earlier pages. `updated_at` is set by every write (the ORM's `onupdate`;
explicitly when only a record's addresses or domains change).

Writes go through `crm.records` and `crm.opportunities` (the rules every CRM write obeys),
retro-link the records they touch (as the CSV import does) and write an audit entry with
the caller as actor (`api:<email>`). Bulk upserts are in `crmbulk`, deletion in `crmdelete`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import opportunities as opps
from mailmanager.crm import records as crm
from mailmanager.db import audit, models
from mailmanager.db.models import Company, CompanyDomain, Contact, ContactEmail, Opportunity
from mailmanager.services.access import Viewer

KINDS: dict[str, Any] = {"companies": Company, "contacts": Contact, "opportunities": Opportunity}
SINGULAR = {"companies": "company", "contacts": "contact", "opportunities": "opportunity"}


CrmError = crm.CrmError  # what a refused write raises (`field` names the input at fault)


class MissingError(crm.CrmError):
    """Raised when the record a route names by id does not exist (404, not 422)."""


class ForbiddenError(crm.CrmError):
    """Raised when the caller may not do this to the record (403)."""


@dataclass(frozen=True)
class CompanyOut:
    id: int
    name: str
    domains: list[str]
    source: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ContactOut:
    id: int
    first_name: str
    last_name: str
    emails: list[str]
    company_id: int | None
    owner: str | None
    status: str
    phone: str
    title: str
    source: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OpportunityOut:
    id: int
    reference: str | None
    title: str
    company_id: int | None
    contact_ids: list[int]
    owner: str | None
    stage: str
    pipeline_step: str
    amount: Decimal | None
    currency: str
    expected_close: datetime | None
    closed_at: datetime | None
    source: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Filters:
    """What a list keeps: changed at or after `updated_since`, from `source`, with this
    `external_id`, at `company_id` (contacts, opportunities), with address `email` (contacts)."""

    updated_since: datetime | None = None
    source: str | None = None
    external_id: str | None = None
    company_id: int | None = None
    email: str | None = None


Out = CompanyOut | ContactOut | OpportunityOut


# --- reading -----------------------------------------------------------------------------------


def _owners(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    U = models.User
    return {i: e for i, e in session.execute(sa.select(U.id, U.email).where(U.id.in_(wanted)))}


def _shape(session: Session, kind: str, rows: Sequence[Any]) -> list[Out]:
    """The API's view of `rows` (of `kind`), their related rows loaded in one query each."""
    ids = [r.id for r in rows]
    many: dict[int, list[Any]] = {i: [] for i in ids}
    if kind == "companies":
        stmt: Any = sa.select(CompanyDomain.company_id, CompanyDomain.domain).where(
            CompanyDomain.company_id.in_(ids)
        )
        for owner, value in session.execute(stmt.order_by(CompanyDomain.id)):
            many[owner].append(value)
        return [
            CompanyOut(
                r.id, r.name, many[r.id], r.source, r.external_id, r.created_at, r.updated_at
            )
            for r in rows
        ]
    owners = _owners(session, {r.owner_id for r in rows})
    if kind == "contacts":
        E = ContactEmail
        stmt = sa.select(E.contact_id, sa.func.coalesce(sa.func.nullif(E.display, ""), E.email))
        for owner, value in session.execute(stmt.where(E.contact_id.in_(ids)).order_by(E.id)):
            many[owner].append(value)
        return [
            ContactOut(
                r.id,
                r.first_name,
                r.last_name,
                many[r.id],
                r.company_id,
                owners.get(r.owner_id),
                r.status,
                r.phone,
                r.title,
                r.source,
                r.external_id,
                r.created_at,
                r.updated_at,
            )
            for r in rows
        ]
    oc = models.OpportunityContact
    stmt = sa.select(oc.opportunity_id, oc.contact_id).where(oc.opportunity_id.in_(ids))
    for owner, value in session.execute(stmt.order_by(oc.contact_id)):
        many[owner].append(value)
    return [
        OpportunityOut(
            r.id,
            r.reference,
            r.title,
            r.company_id,
            many[r.id],
            owners.get(r.owner_id),
            r.stage,
            r.pipeline_step,
            r.amount,
            r.currency,
            r.expected_close,
            r.closed_at,
            r.source,
            r.external_id,
            r.created_at,
            r.updated_at,
        )
        for r in rows
    ]


def list_records(
    session: Session,
    cfg: config_mod.Config,
    kind: str,
    filters: Filters,
    limit: int,
    after: tuple[datetime, int] | None,
) -> list[Out]:
    """Up to `limit` records of `kind` after the keyset `after`, by (updated_at, id)."""
    model = KINDS[kind]
    # The table's columns, not the ORM entity: rows, not objects to track (a third of a
    # page's CPU time went to building them).
    stmt: Any = sa.select(*model.__table__.c)
    f = filters
    if f.updated_since is not None:
        stmt = stmt.where(model.updated_at >= f.updated_since)
    if f.source is not None:
        stmt = stmt.where(model.source == f.source)
    if f.external_id is not None:
        stmt = stmt.where(model.external_id == f.external_id)
    if f.company_id is not None and model is not Company:
        stmt = stmt.where(model.company_id == f.company_id)
    if f.email is not None and model is Contact:
        key = crm.address_key(cfg, f.email) or f.email.strip().lower()
        owner = sa.select(ContactEmail.contact_id).where(ContactEmail.email == key)
        stmt = stmt.where(Contact.id.in_(owner.scalar_subquery()))
    if after is not None:
        stmt = stmt.where(sa.tuple_(model.updated_at, model.id) > sa.tuple_(*after))
    stmt = stmt.order_by(model.updated_at, model.id).limit(limit)
    return _shape(session, kind, session.execute(stmt).all())


def get_row(session: Session, kind: str, record_id: int) -> Any:
    """The stored record; raises MissingError when there is none."""
    return _get(session, kind, record_id)


def _get(session: Session, kind: str, record_id: int) -> Any:
    row = session.get(KINDS[kind], record_id)
    if row is None:
        raise MissingError(f"no {SINGULAR[kind]} #{record_id}")
    return row


def _named(session: Session, kind: str, record_id: int, field: str) -> Any:
    """The record a body names; CrmError (422, not 404) when there is none."""
    row = session.get(KINDS[kind], record_id)
    if row is None:
        raise crm.CrmError(f"no {SINGULAR[kind]} #{record_id}", field)
    return row


def get_record(session: Session, kind: str, record_id: int) -> Out:
    """The record; raises MissingError when there is none."""
    return _shape(session, kind, [_get(session, kind, record_id)])[0]


# --- writing one record ------------------------------------------------------------------------


def _check_external(session: Session, kind: str, row: Any, source: str, ext: str | None) -> None:
    if not ext:
        return
    model = KINDS[kind]
    stmt = sa.select(model.id).where(model.source == source, model.external_id == ext)
    other = session.scalar(stmt)
    if other is not None and other != row.id:
        raise crm.CrmError(f"{source} id {ext!r} is already used by #{other}", "external_id")


def _identity(session: Session, kind: str, row: Any, values: Mapping[str, Any]) -> bool:
    """Set `source` and `external_id` from `values`; whether they changed."""
    source = values.get("source") or row.source or "manual"
    ext = values.get("external_id", row.external_id) or None
    if (source, ext) == (row.source, row.external_id):
        return False
    _check_external(session, kind, row, source, ext)
    row.source, row.external_id = source, ext
    return True


def _owner_id(session: Session, cfg: config_mod.Config, email: str | None) -> int | None:
    return None if not email else crm.find_user(session, cfg, email).id


def _company_values(
    session: Session, cfg: config_mod.Config, row: Any, v: Mapping[str, Any]
) -> bool:
    changed = _identity(session, "companies", row, v)
    changed |= crm.update_company(
        session,
        cfg,
        row,
        v.get("name"),
        [*v.get("add_domains", ()), *v.get("domains", ())],
        v.get("remove_domains", ()),
        relink_now=False,
    )
    return changed


_CONTACT_PLAIN = ("first_name", "last_name", "status", "phone", "title", "company_id")


def _contact_values(
    session: Session, cfg: config_mod.Config, row: Any, v: Mapping[str, Any]
) -> bool:
    fields: dict[str, str | int | None] = {k: v[k] for k in _CONTACT_PLAIN if k in v}
    if "company_id" in fields and fields["company_id"] is not None:
        _named(session, "companies", int(fields["company_id"]), "company_id")
    if "owner" in v:
        fields["owner_id"] = _owner_id(session, cfg, v["owner"])
    changed = _identity(session, "contacts", row, v)
    changed |= crm.update_contact(
        session,
        cfg,
        row,
        fields,
        [*v.get("add_emails", ()), *v.get("emails", ())],
        v.get("remove_emails", ()),
        relink_now=False,
    )
    return changed


_OPP_PLAIN = (
    "reference",
    "title",
    "company_id",
    "stage",
    "pipeline_step",
    "amount",
    "currency",
    "expected_close",
    "closed_at",
)


def _opportunity_values(
    session: Session, cfg: config_mod.Config, row: Any, v: Mapping[str, Any]
) -> bool:
    values: dict[str, object] = {k: v[k] for k in _OPP_PLAIN if k in v}
    if values.get("company_id") is not None:
        _named(session, "companies", int(str(values["company_id"])), "company_id")
    if "owner" in v:
        values["owner_id"] = _owner_id(session, cfg, v["owner"])
    contacts = [_named(session, "contacts", i, "contact_ids") for i in v.get("contact_ids", ())]
    _, changed = opps.save(session, cfg, row, values, contacts, relink_now=False)
    return _identity(session, "opportunities", row, v) or changed


def _touch(session: Session, cfg: config_mod.Config, kind: str, row: Any, now: datetime) -> None:
    row.updated_at = now
    session.flush()
    crm.relink(session, cfg, **{kind: [row.id]})


def create_row(
    session: Session, cfg: config_mod.Config, kind: str, values: Mapping[str, Any]
) -> Any:
    """A new record of `kind` from `values` (the API's create body), not yet retro-linked;
    raises CrmError."""
    if kind == "companies":
        name = str(values.get("name") or "")
        row: Any = crm.create_company(
            session, cfg, name, values.get("domains", ()), relink_now=False
        )
        _company_values(session, cfg, row, values)
    elif kind == "contacts":
        row = crm.create_contact(session, cfg, values.get("emails", ()), relink_now=False)
        _contact_values(session, cfg, row, {k: v for k, v in values.items() if k != "emails"})
    else:
        if not str(values.get("title") or "").strip():
            raise crm.CrmError("an opportunity needs a title", "title")
        row, _ = opps.save(session, cfg, None, {"title": values["title"]}, relink_now=False)
        _opportunity_values(session, cfg, row, values)
    return row


def create_record(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    values: Mapping[str, Any],
    now: datetime,
) -> Out:
    """Create a record of `kind` from `values`, retro-link it and audit it; raises CrmError."""
    row = create_row(session, cfg, kind, values)
    row.created_at = now
    _touch(session, cfg, kind, row, now)
    _audit(session, viewer, kind, "create", row.id, values)
    return get_record(session, kind, row.id)


def _audit(
    session: Session,
    viewer: Viewer,
    kind: str,
    action: str,
    record_id: int,
    values: Mapping[str, Any],
) -> None:
    name = SINGULAR[kind]
    audit.record(
        session, f"api:{viewer.email}", f"{name}.{action}", f"{name}:{record_id}", dict(values)
    )


UPDATE = {
    "companies": _company_values,
    "contacts": _contact_values,
    "opportunities": _opportunity_values,
}


def update_record(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    record_id: int,
    values: Mapping[str, Any],
    now: datetime,
) -> Out:
    """Change the fields given in `values`; raises MissingError, CrmError."""
    row = _get(session, kind, record_id)
    if UPDATE[kind](session, cfg, row, values):
        _touch(session, cfg, kind, row, now)
        _audit(session, viewer, kind, "update", row.id, values)
    return get_record(session, kind, row.id)
