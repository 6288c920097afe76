"""Read-only views of CRM records, for the CLI, JSON output and CSV export.

Each list query loads its related rows (domains, addresses, owners, companies) in a few
bulk queries, not one per record, so listing or exporting 50,000 contacts stays quick.
Addresses are shown in the form they were entered (`ContactEmail.display`), or as their
match key when that is empty (contacts created by the matcher).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Company, CompanyDomain, Contact, ContactEmail, Opportunity


@dataclass(frozen=True)
class CompanyView:
    id: int
    name: str
    domains: tuple[str, ...]
    external_id: str | None
    contacts: int
    open_opportunities: int


@dataclass(frozen=True)
class ContactView:
    id: int
    first_name: str
    last_name: str
    emails: tuple[str, ...]
    company: str | None
    owner: str | None
    status: str
    phone: str
    title: str
    source: str
    external_id: str | None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True)
class OpportunityView:
    id: int
    reference: str | None
    title: str
    company: str | None
    contacts: tuple[str, ...]  # the first address of each contact
    owner: str | None
    stage: str
    pipeline_step: str
    amount: str | None  # "12500.50": a string keeps the decimal exact in JSON
    currency: str
    expected_close: str | None  # ISO date
    closed_at: str | None
    last_activity_at: str | None


def as_dict(view: CompanyView | ContactView | OpportunityView) -> dict[str, Any]:
    data = asdict(view)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _grouped(
    session: Session, key: Any, value: Any, ids: Sequence[int], order: Any
) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for part in store.chunks(sorted(set(ids))):
        for k, v in session.execute(sa.select(key, value).where(key.in_(part)).order_by(order)):
            out.setdefault(k, []).append(v)
    return out


def _names(session: Session, model: Any, column: Any, ids: Sequence[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    out: dict[int, str] = {}
    for part in store.chunks(wanted):
        out.update(session.execute(sa.select(model.id, column).where(model.id.in_(part))).all())
    return out


def _emails(session: Session, contact_ids: Sequence[int]) -> dict[int, list[str]]:
    ce = ContactEmail
    shown = sa.case((ce.display == "", ce.email), else_=ce.display)
    return _grouped(session, ce.contact_id, shown, contact_ids, ce.id)


def _like(text: str, fold: Callable[[str], str] = models.name_key) -> str:
    """A LIKE pattern (escape "\\") for the values containing `text` folded by `fold`."""
    needle = fold(text)
    return "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _containing(session: Session, text: str, *columns: Any) -> Any:
    """Whether one of `columns` contains `text` case-folded (as `models.name_key` folds
    it), as a WHERE clause: the database filters, and a search reads only the rows it
    shows. PostgreSQL's lower() folds every letter; SQLite's LIKE folds ASCII letters only,
    so for a search with other letters ("Çelik") SQLite folds each value with `name_key`
    (a Python function of `store`'s connections: slower, so only then)."""
    if session.get_bind().dialect.name != "sqlite":
        like = _like(text, lambda x: " ".join(x.split()).lower())
        return sa.or_(*(sa.func.lower(c).like(like, escape="\\") for c in columns))
    like = _like(text)
    if text.isascii():
        return sa.or_(*(c.like(like, escape="\\") for c in columns))
    # LIKE first, with any character in place of the others, keeps most rows from Python.
    rough = "".join(ch if ch.isascii() else "_" for ch in like)
    return sa.or_(
        *(
            sa.and_(c.like(rough, escape="\\"), sa.func.name_key(c).like(like, escape="\\"))
            for c in columns
        )
    )


def companies(
    session: Session, search: str | None = None, limit: int | None = None
) -> list[CompanyView]:
    """Companies by name; `search` matches part of a name or a domain."""
    stmt = sa.select(Company).order_by(Company.name_key, Company.id)
    if search:
        in_domain = sa.select(CompanyDomain.company_id).where(
            CompanyDomain.domain.like(_like(search), escape="\\")
        )
        stmt = stmt.where(
            Company.name_key.like(_like(search), escape="\\") | Company.id.in_(in_domain)
        )
    return company_views(session, list(session.scalars(stmt.limit(limit))))


def company_views(session: Session, rows: Sequence[Company]) -> list[CompanyView]:
    ids = [c.id for c in rows]
    domains = _grouped(
        session, CompanyDomain.company_id, CompanyDomain.domain, ids, CompanyDomain.id
    )
    contacts = _counts(session, Contact.company_id, ids, None)
    open_opps = _counts(session, Opportunity.company_id, ids, Opportunity.stage == "open")
    return [
        CompanyView(
            c.id,
            c.name,
            tuple(domains.get(c.id, ())),
            c.external_id,
            contacts.get(c.id, 0),
            open_opps.get(c.id, 0),
        )
        for c in rows
    ]


def _counts(session: Session, column: Any, ids: Sequence[int], where: Any) -> dict[int, int]:
    out: dict[int, int] = {}
    for part in store.chunks(ids):
        stmt = sa.select(column, sa.func.count()).where(column.in_(part)).group_by(column)
        if where is not None:
            stmt = stmt.where(where)
        out.update(session.execute(stmt).all())
    return out


def contacts(
    session: Session,
    search: str | None = None,
    company_id: int | None = None,
    owner_id: int | None = None,
    limit: int | None = None,
) -> list[ContactView]:
    """Contacts by name; `search` matches part of a name or an address."""
    stmt = sa.select(Contact).order_by(
        sa.func.lower(Contact.last_name), sa.func.lower(Contact.first_name), Contact.id
    )
    if company_id is not None:
        stmt = stmt.where(Contact.company_id == company_id)
    if owner_id is not None:
        stmt = stmt.where(Contact.owner_id == owner_id)
    if search:
        ce = ContactEmail
        full_name = Contact.first_name + " " + Contact.last_name
        by_address = sa.select(ce.contact_id).where(
            _containing(session, search, ce.email, ce.display)
        )
        stmt = stmt.where(
            _containing(session, search, Contact.first_name, Contact.last_name, full_name)
            | Contact.id.in_(by_address)
        )
    return contact_views(session, list(session.scalars(stmt.limit(limit))))


def contact_views(session: Session, rows: Sequence[Contact]) -> list[ContactView]:
    emails = _emails(session, [c.id for c in rows])
    companies_ = _names(session, Company, Company.name, [c.company_id for c in rows])
    owners = _names(session, models.User, models.User.email, [c.owner_id for c in rows])
    return [
        ContactView(
            c.id,
            c.first_name,
            c.last_name,
            tuple(emails.get(c.id, ())),
            companies_.get(c.company_id) if c.company_id else None,
            owners.get(c.owner_id) if c.owner_id else None,
            c.status,
            c.phone,
            c.title,
            c.source,
            c.external_id,
        )
        for c in rows
    ]


def opportunities(
    session: Session,
    stage: str | None = None,
    search: str | None = None,
    company_id: int | None = None,
    owner_id: int | None = None,
    limit: int | None = None,
) -> list[OpportunityView]:
    """Opportunities, open ones first then by reference; `search` matches reference or title."""
    opp = Opportunity
    stmt = sa.select(opp).order_by((opp.stage != "open"), opp.reference, opp.id)
    if stage:
        stmt = stmt.where(opp.stage == stage)
    if company_id is not None:
        stmt = stmt.where(opp.company_id == company_id)
    if owner_id is not None:
        stmt = stmt.where(opp.owner_id == owner_id)
    if search:
        stmt = stmt.where(_containing(session, search, opp.reference, opp.title))
    return opportunity_views(session, list(session.scalars(stmt.limit(limit))))


def contact_opportunities(session: Session, contact_id: int) -> list[OpportunityView]:
    """The opportunities contact `contact_id` takes part in."""
    oc = models.OpportunityContact
    ids = sa.select(oc.opportunity_id).where(oc.contact_id == contact_id)
    rows = session.scalars(sa.select(Opportunity).where(Opportunity.id.in_(ids)))
    return opportunity_views(session, list(rows))


def opportunity_views(session: Session, rows: Sequence[Opportunity]) -> list[OpportunityView]:
    oc = models.OpportunityContact
    members = _grouped(
        session, oc.opportunity_id, oc.contact_id, [o.id for o in rows], oc.contact_id
    )
    emails = _emails(session, [c for ids in members.values() for c in ids])
    companies_ = _names(session, Company, Company.name, [o.company_id for o in rows])
    owners = _names(session, models.User, models.User.email, [o.owner_id for o in rows])
    return [
        OpportunityView(
            o.id,
            o.reference,
            o.title,
            companies_.get(o.company_id) if o.company_id else None,
            tuple(emails[c][0] for c in members.get(o.id, ()) if emails.get(c)),
            owners.get(o.owner_id) if o.owner_id else None,
            o.stage,
            o.pipeline_step,
            None if o.amount is None else f"{o.amount:.2f}",
            o.currency,
            o.expected_close.date().isoformat() if o.expected_close else None,
            _iso(o.closed_at),
            _iso(o.last_activity_at),
        )
        for o in rows
    ]


def recent_messages(
    session: Session, kind: str, target_id: int, limit: int = 10
) -> list[dict[str, Any]]:
    """The latest messages linked to a contact, company or opportunity (not tombstones)."""
    m, link = models.Message, models.Link
    stmt = (
        sa.select(m.id, m.sent_at, m.direction, m.from_email, m.subject, link.method)
        .join(link, link.message_id == m.id)
        .where(models.linking(kind, [target_id]), ~link.tombstone)
        .order_by(m.sent_at.desc().nulls_last(), m.id.desc())
        .limit(limit)
    )
    return [
        {"id": i, "sent_at": _iso(at), "direction": d, "from": f, "subject": s, "method": how}
        for i, at, d, f, s, how in session.execute(stmt)
    ]
