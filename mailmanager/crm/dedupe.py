"""Duplicate contacts: finding them by address, and merging two into one.

A merge moves everything that points at the removed contact (addresses, links, opportunity
memberships, message participants) to the kept one, fills the kept contact's empty fields,
writes an AuditLog row and asks the matcher to re-link the kept contact.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import records as crm
from mailmanager.db import audit, models
from mailmanager.db.models import Contact, ContactEmail
from mailmanager.mail import normalize

log = logging.getLogger(__name__)


# --- duplicates and merging --------------------------------------------------------------------


@dataclass(frozen=True)
class MergeReport:
    """What `merge_contacts` moved from the removed contact to the kept one."""

    kept: int
    removed: int
    addresses: int
    links: int
    links_dropped: int  # the kept contact already had the same link: the other one is deleted
    opportunities: int
    participants: int
    fields: tuple[str, ...]  # fields of the kept contact filled from the removed one


def find_duplicate_contacts(session: Session, strip_plus: bool = True) -> list[tuple[int, ...]]:
    """Groups of contact ids (ascending) whose addresses share a match key.

    Addresses are unique as stored, so duplicates are rows written under an older rule
    ("j.doe@gmail.com" beside "jdoe@gmail.com"): keys are recomputed from both forms.
    """
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_owner: dict[str, int] = {}
    rows = session.execute(
        sa.select(ContactEmail.email, ContactEmail.display, ContactEmail.contact_id)
    )
    for email, display, contact_id in rows:
        for form in {email, display} - {""}:
            key = normalize.match_key(form, strip_plus)
            if key is None:
                continue
            owner = first_owner.setdefault(key, contact_id)
            parent[root(contact_id)] = root(owner)
    groups: dict[int, list[int]] = {}
    for i in list(parent):
        groups.setdefault(root(i), []).append(i)
    return sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)


def _merge_fields(session: Session, keep: Contact, other: Contact) -> list[str]:
    filled = []
    for name in ("first_name", "last_name", "phone", "title", "company_id", "owner_id"):
        if not getattr(keep, name) and getattr(other, name):
            setattr(keep, name, getattr(other, name))
            filled.append(name)
    if other.status == "client" and keep.status != "client":
        keep.status = "client"
        filled.append("status")
    if other.external_id and not keep.external_id:
        value, other.external_id = other.external_id, None
        session.flush()  # free the unique value before the kept row takes it
        keep.external_id = value
        filled.append("external_id")
    return filled


def _rekey_addresses(session: Session, cfg: config_mod.Config, contact_id: int) -> None:
    """Rewrite the contact's addresses under the current match key, dropping doubles."""
    seen: set[str] = set()
    for row in crm.contact_emails(session, contact_id):
        key = crm.address_key(cfg, row.email) or row.email
        if key in seen:
            session.delete(row)
            continue
        seen.add(key)
        if (
            key != row.email
            and session.scalar(sa.select(ContactEmail.id).where(ContactEmail.email == key)) is None
        ):
            row.email = key
    session.flush()


def _rowcount(result: sa.Result[Any]) -> int:
    assert isinstance(result, sa.CursorResult)
    return int(result.rowcount)


def merge_contacts(
    session: Session,
    cfg: config_mod.Config,
    keep: Contact,
    other: Contact,
    actor: str = "cli",
    relink_now: bool = True,
) -> MergeReport:
    """Fold `other` into `keep` and delete `other`.

    Its addresses, links, opportunity memberships and message participants move to `keep`;
    empty fields of `keep` are filled from `other`; an AuditLog row records the merge.
    Raises CrmError when both are the same contact.
    """
    if keep.id == other.id:
        raise crm.CrmError(f"contact #{keep.id} cannot be merged with itself", "contact")
    removed_id = other.id
    removed_label = {
        "name": f"{other.first_name} {other.last_name}".strip(),
        "emails": [e.email for e in crm.contact_emails(session, other.id)],
    }
    fields = _merge_fields(session, keep, other)
    addresses = _rowcount(
        session.execute(
            sa.update(ContactEmail)
            .where(ContactEmail.contact_id == other.id)
            .values(contact_id=keep.id)
        )
    )
    _rekey_addresses(session, cfg, keep.id)

    oc = models.OpportunityContact
    kept_opps = set(session.scalars(sa.select(oc.opportunity_id).where(oc.contact_id == keep.id)))
    other_opps = set(session.scalars(sa.select(oc.opportunity_id).where(oc.contact_id == other.id)))
    session.execute(sa.delete(oc).where(oc.contact_id == other.id))
    for opp_id in sorted(other_opps - kept_opps):
        session.add(oc(opportunity_id=opp_id, contact_id=keep.id))

    participants = _rowcount(
        session.execute(
            sa.update(models.Participant)
            .where(models.Participant.contact_id == other.id)
            .values(contact_id=keep.id)
        )
    )

    link = models.Link
    have = {
        (lk.message_id, lk.thread_id)
        for lk in session.scalars(sa.select(link).where(models.linking("contact", [keep.id])))
    }
    moved = dropped = 0
    for lk in session.scalars(sa.select(link).where(models.linking("contact", [other.id]))).all():
        if (lk.message_id, lk.thread_id) in have:
            session.delete(lk)
            dropped += 1
        else:
            lk.target_id = keep.id
            moved += 1
    session.flush()
    session.delete(other)
    session.flush()
    report = MergeReport(
        kept=keep.id,
        removed=removed_id,
        addresses=addresses,
        links=moved,
        links_dropped=dropped,
        opportunities=len(other_opps - kept_opps),
        participants=participants,
        fields=tuple(fields),
    )
    detail = {**asdict(report), "removed_contact": removed_label}
    audit.record(session, actor, "contact.merge", f"contact:{keep.id}", detail)
    log.info(
        "contacts merged",
        extra={"action": "contact_merge", "kept": keep.id, "removed": report.removed},
    )
    if relink_now:
        crm.relink(session, cfg, contacts=[keep.id])
    return report
