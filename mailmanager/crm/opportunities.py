"""Opportunities (deals): reference codes, stages, amounts and their contacts.

A reference such as OPP-2041 is upper-case and unique: the matcher finds it as a tag in
subjects ("[OPP-2041] Devis"), so it must be letters, then dash-separated groups holding a
digit. `stage` is open, won or lost; the sales team's own pipeline step ("Proposition",
"Négociation") is kept apart in `pipeline_step`. Closing records `closed_at` and an audit row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import records as crm
from mailmanager.db import audit, models
from mailmanager.db.models import Contact, Opportunity

STAGES = ("open", "won", "lost")
FIELDS = frozenset(
    {"reference", "title", "company_id", "owner_id", "stage", "pipeline_step", "amount"}
    | {"currency", "expected_close", "created_at", "closed_at"}
)
_REFERENCE_RE = re.compile(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+")


def clean_reference(text: str) -> str:
    """`text` as an opportunity reference (upper case, e.g. OPP-2041).

    Raises CrmError unless it is letters, then one or more "-" groups, with a digit.
    """
    ref = text.strip().upper()
    if _REFERENCE_RE.fullmatch(ref) is None or not any(c.isdigit() for c in ref) or len(ref) > 64:
        raise crm.CrmError(
            f"reference {text.strip()!r}: write letters, a dash and digits (OPP-2041)",
            "reference",
        )
    return ref


def next_reference(session: Session, prefix: str = "OPP") -> str:
    """The number after the highest `<prefix>-<n>` in use (OPP-1001 on an empty database)."""
    refs = session.scalars(
        sa.select(Opportunity.reference).where(Opportunity.reference.like(f"{prefix}-%"))
    )
    numbers = [int(r.partition("-")[2]) for r in refs if r and r.partition("-")[2].isdigit()]
    return f"{prefix}-{max([1000, *numbers]) + 1}"


def find(session: Session, ref: str) -> Opportunity:
    """An opportunity by reference (any case) or id. Raises NotFoundError if none."""
    ref = ref.strip()
    found = session.scalar(sa.select(Opportunity).where(Opportunity.reference == ref.upper()))
    if found is None and ref.lstrip("#").isdigit():
        found = session.get(Opportunity, int(ref.lstrip("#")))
    if found is None:
        raise crm.NotFoundError(f"no opportunity {ref!r} (reference or id)", "opportunity")
    return found


def contact_ids(session: Session, opportunity_id: int) -> list[int]:
    oc = models.OpportunityContact
    stmt = sa.select(oc.contact_id).where(oc.opportunity_id == opportunity_id)
    return sorted(session.scalars(stmt))


def _check(session: Session, opp: Opportunity | None, values: dict[str, object]) -> None:
    for key, value in values.items():
        if key not in FIELDS:
            raise crm.CrmError(f"opportunities have no field {key!r}", key)
        if key == "reference":
            other = session.scalar(sa.select(Opportunity.id).where(Opportunity.reference == value))
            if other is not None and (opp is None or other != opp.id):
                raise crm.CrmError(f"reference {value} is already used by #{other}", key)
        elif key == "stage" and value not in STAGES:
            raise crm.CrmError(f"stage {value!r}: use one of {', '.join(STAGES)}", key)
        elif key == "amount" and value is not None:
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise crm.CrmError(f"amount {value}: a positive number is needed", key)
            if abs(value) >= Decimal("1e12"):
                raise crm.CrmError(f"amount {value} is too large", key)
        elif key in ("expected_close", "created_at", "closed_at") and value is not None:
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise crm.CrmError(f"{key} needs a date", key)
        elif key == "title" and opp is None and not str(value).strip():
            raise crm.CrmError("an opportunity needs a title", key)


def save(
    session: Session,
    cfg: config_mod.Config,
    opp: Opportunity | None,
    values: dict[str, object],
    contacts: Sequence[Contact] = (),
    relink_now: bool = True,
) -> tuple[Opportunity, bool]:
    """Create (`opp` None) or update an opportunity; returns it and whether anything changed.

    `values` may hold: reference (a new opportunity without one gets `next_reference`),
    title, company_id, owner_id, stage, pipeline_step, amount (Decimal), currency,
    expected_close, created_at, closed_at (aware datetimes). `contacts` are added to its
    contacts. Closing an open opportunity records now as its close date unless `closed_at`
    is given; one created already closed has the close date given or none (its dates are
    unknown: the matcher does not link mail to it by inference).
    Raises CrmError for an unknown field, a malformed or taken reference, an unknown stage,
    a negative amount, a missing title, or a close date before the creation date.
    """
    values = dict(values)
    if opp is None and not values.get("reference"):
        values["reference"] = next_reference(session)
    if "reference" in values:
        values["reference"] = clean_reference(str(values["reference"]))
    if "amount" in values and values["amount"] is not None:
        values["amount"] = Decimal(str(values["amount"])).quantize(Decimal("0.01"))
    _check(session, opp, values)
    created, closed = values.get("created_at"), values.get("closed_at")
    if isinstance(created, datetime) and isinstance(closed, datetime) and closed < created:
        raise crm.CrmError(
            f"close date {closed:%Y-%m-%d} is before the creation date {created:%Y-%m-%d}",
            "closed_at",
        )
    changed = opp is None
    was_open = opp is not None and opp.stage == "open"
    if opp is None:
        opp = Opportunity(title="")
        session.add(opp)
    for key, value in values.items():
        if getattr(opp, key) != value:
            setattr(opp, key, value)
            changed = True
    if "stage" in values:
        if values["stage"] == "open":
            opp.closed_at = None
        elif opp.closed_at is None and was_open and "closed_at" not in values:
            opp.closed_at = models.utcnow()  # closed now, here: a known close date
    session.flush()
    have = set(contact_ids(session, opp.id))
    for contact in contacts:
        if contact.id not in have:
            session.add(models.OpportunityContact(opportunity_id=opp.id, contact_id=contact.id))
            have.add(contact.id)
            changed = True
    session.flush()
    if relink_now and changed:
        crm.relink(session, cfg, opportunities=[opp.id])
    return opp, changed


def remove_contact(
    session: Session, cfg: config_mod.Config, opp: Opportunity, contact: Contact
) -> None:
    """Take `contact` off `opp`. Raises CrmError if it was not one of its contacts."""
    oc = models.OpportunityContact
    row = session.get(oc, (opp.id, contact.id))
    if row is None:
        raise crm.CrmError(f"contact #{contact.id} is not on {opp.reference}", "contacts")
    session.delete(row)
    session.flush()
    crm.relink(session, cfg, opportunities=[opp.id])


def close(
    session: Session, cfg: config_mod.Config, opp: Opportunity, won: bool, actor: str
) -> bool:
    """Mark `opp` won or lost; False if it already was. The change is written to the audit log."""
    before = opp.stage
    _, changed = save(session, cfg, opp, {"stage": "won" if won else "lost"})
    if changed:
        detail = {"from": before, "to": opp.stage, "reference": opp.reference}
        audit.record(session, actor, "opportunity.close", f"opportunity:{opp.id}", detail)
    return changed
