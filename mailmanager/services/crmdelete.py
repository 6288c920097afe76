"""Deleting a CRM record through the API, and who may.

Who may delete: an admin, or the owner of a contact or an opportunity (a company has no
owner: admins only). A deletion removes the record's links and what points to it (its
addresses or domains, its opportunity roles; reminders and message participants keep the
mail, without the record), writes an audit entry, and matches again the threads that were
linked to it (their mail may belong to a company by domain, say). A company's contacts and
opportunities stay, without a company, and count as changed (`updated_at`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import audit, models, store
from mailmanager.db.models import CompanyDomain, Contact, ContactEmail, Opportunity
from mailmanager.matching import run as matching
from mailmanager.services import crmapi
from mailmanager.services.access import Viewer


def may_delete(session: Session, viewer: Viewer, kind: str, row: Any) -> bool:
    """Admins delete anything; a user deletes the contacts and opportunities they own."""
    if viewer.is_admin:
        return True
    if kind == "companies" or row.owner_id is None:
        return False
    owner = session.get(models.User, row.owner_id)
    return owner is not None and owner.email == viewer.email


def delete_record(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    kind: str,
    record_id: int,
    now: datetime,
) -> None:
    """Delete the record, its links, and what points to it; the mail that was linked to it
    is matched again. Raises MissingError, ForbiddenError (see `may_delete`)."""
    row = crmapi.get_row(session, kind, record_id)
    if not may_delete(session, viewer, kind, row):
        who = "admins" if kind == "companies" else "admins and its owner"
        raise crmapi.ForbiddenError(f"only {who} may delete {crmapi.SINGULAR[kind]} #{record_id}")
    target = crmapi.SINGULAR[kind]
    L = models.Link
    linked = L.target_kind == target, L.target_id == record_id
    threads = set(session.scalars(sa.select(L.thread_id).where(*linked, L.thread_id.is_not(None))))
    threads |= set(
        session.scalars(
            sa.select(models.Message.thread_id)
            .join(L, L.message_id == models.Message.id)
            .where(*linked, models.Message.thread_id.is_not(None))
        )
    )
    session.execute(sa.delete(L).where(*linked))
    R = store.table(models.Reminder)
    if kind == "contacts":
        P = models.Participant
        session.execute(sa.update(P).where(P.contact_id == record_id).values(contact_id=None))
        session.execute(sa.update(R).where(R.c.contact_id == record_id).values(contact_id=None))
        session.execute(sa.delete(ContactEmail).where(ContactEmail.contact_id == record_id))
        oc = models.OpportunityContact
        session.execute(sa.delete(oc).where(oc.contact_id == record_id))
    elif kind == "companies":
        for model in (Contact, Opportunity):
            session.execute(
                sa.update(model)
                .where(model.company_id == record_id)
                .values(company_id=None, updated_at=now)
            )
        session.execute(sa.update(R).where(R.c.company_id == record_id).values(company_id=None))
        session.execute(sa.delete(CompanyDomain).where(CompanyDomain.company_id == record_id))
    else:
        session.execute(
            sa.update(R).where(R.c.opportunity_id == record_id).values(opportunity_id=None)
        )
        oc = models.OpportunityContact
        session.execute(sa.delete(oc).where(oc.opportunity_id == record_id))
    session.execute(sa.delete(crmapi.KINDS[kind]).where(crmapi.KINDS[kind].id == record_id))
    session.expunge(row)
    if threads:
        matching.match_threads(session, cfg, sorted(t for t in threads if t is not None))
    audit.record(session, f"api:{viewer.email}", f"{target}.delete", f"{target}:{record_id}", {})
