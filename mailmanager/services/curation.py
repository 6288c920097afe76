"""What people decide by hand: sticky links and unlinks, the review queue, suggested contacts.

A manual link or unlink is a Link row whose `created_by` names a person ("cli:alice"), never
"matcher": the matcher reads those rows and never writes them, so they survive every sync
and every re-match. An unlink is a tombstone (`tombstone=True`): the target is never linked
again on that message (or thread); `kind="any"` marks the message or thread as not
CRM-relevant at all. Linking a target by hand lifts a tombstone of the same scope.
Each action writes an AuditLog row and re-matches the thread at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import opportunities
from mailmanager.crm import records as crm
from mailmanager.db import audit, lookup, models, store, webhookevents
from mailmanager.db.models import Link, Message, ReviewItem, Suggestion
from mailmanager.errors import MailmanagerError
from mailmanager.matching import run as linking
from mailmanager.matching import suggestions

log = logging.getLogger(__name__)

KINDS = ("contact", "company", "opportunity")


class CurationError(MailmanagerError):
    """Raised when a message, thread, record, review item or suggestion named does not
    exist, or the action does not apply to it (e.g. accepting a review without a choice)."""


@dataclass(frozen=True)
class Target:
    kind: str
    id: int
    label: str


@dataclass(frozen=True)
class Scope:
    """A message (its thread is kept too) or a whole thread."""

    thread_id: int
    message_id: int | None = None

    def describe(self) -> str:
        return f"message #{self.message_id}" if self.message_id else f"thread #{self.thread_id}"


def contact_label(session: Session, contact_id: int) -> str:
    c = session.get(models.Contact, contact_id)
    if c is None:
        return f"contact #{contact_id} (deleted)"
    email = session.scalar(_first_address(contact_id))
    return _label("contact", contact_id, c.first_name, c.last_name, email)


def _first_address(contact_id: Any) -> sa.Select[str]:
    """A contact's first address as written (`display`), not the match key."""
    ce = models.ContactEmail
    return (
        sa.select(sa.case((ce.display == "", ce.email), else_=ce.display))
        .where(ce.contact_id == contact_id)
        .order_by(ce.id)
        .limit(1)
    )


def target_label(session: Session, kind: str, target_id: int) -> str:
    """A readable name for a link target: "Jane Doe <jane@acme.com>", "Acme", "OPP-12 Title"."""
    if kind == "contact":
        return contact_label(session, target_id)
    if kind == "company":
        company = session.get(models.Company, target_id)
        return company.name if company else f"company #{target_id} (deleted)"
    if kind == "opportunity":
        opp = session.get(models.Opportunity, target_id)
        if opp is None:
            return f"opportunity #{target_id} (deleted)"
        return _label(kind, opp.id, opp.reference, opp.title, None)
    return "everything" if kind == "any" else f"{kind} #{target_id}"


def target_labels(
    session: Session, targets: Collection[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """`target_label` of many (kind, id) at once, in one query (per 500 ids of a kind on
    SQLite): the companies, opportunities and contacts asked, each contact with its first
    address (a list of threads names hundreds of records)."""
    postgres = store.is_postgres(session)
    slices = {
        kind: list(store.parts(session, sorted({i for k, i in targets if k == kind})))
        for kind in KINDS
    }
    out: dict[tuple[str, int], str] = {}
    for n in range(max(len(found) for found in slices.values())):
        present = tuple(kind for kind in KINDS if n < len(slices[kind]))
        values = {kind: store.ids_param(postgres, slices[kind][n]) for kind in present}
        for kind, rid, a, b, address in session.execute(_labels_query(postgres, present), values):
            out[kind, rid] = _label(kind, rid, a, b, address)
    for kind, rid in targets:  # deleted records, and kinds without a table
        if (kind, rid) not in out:
            out[kind, rid] = target_label(session, kind, rid)
    return out


@functools.cache
def _labels_query(postgres: bool, kinds: tuple[str, ...]) -> sa.CompoundSelect[Any]:
    """`target_labels`' query for `kinds`, built once (each kind's ids are the parameter
    of its name): kind, id and the fields `_label` makes the label of."""
    c, o, co = models.Contact, models.Opportunity, models.Company
    email = _first_address(c.id).scalar_subquery()
    none = sa.cast(sa.null(), sa.Text)
    shapes: dict[str, tuple[Any, tuple[Any, ...]]] = {
        "company": (co.id, (co.name, none, none)),
        "opportunity": (o.id, (o.reference, o.title, none)),
        "contact": (c.id, (c.first_name, c.last_name, email)),
    }
    return sa.union_all(
        *(
            sa.select(sa.literal(kind, sa.Text), key, *fields).where(
                store.among_param(postgres, key, kind)
            )
            for kind, (key, fields) in shapes.items()
            if kind in kinds
        )
    )


def _label(kind: str, rid: int, a: str | None, b: str | None, email: str | None) -> str:
    """A record's label from its fields (`target_label`, `target_labels`): a company's
    name; an opportunity's reference and title; a contact's first and last names and first
    address."""
    if kind == "company":
        return a or ""
    if kind == "opportunity":
        return f"{a or '#' + str(rid)} {b}".strip()
    name = f"{a} {b}".strip()
    return f"{name} <{email}>" if name and email else (name or email or f"#{rid}")


def resolve_target(session: Session, cfg: config_mod.Config, kind: str, ref: str) -> Target:
    """The record `ref` names: contact by id/e-mail, company by id/domain/name, opportunity
    by reference/id. Raises CurationError if there is none (or several)."""
    try:
        if kind == "contact":
            target_id = crm.find_contact(session, cfg, ref).id
        elif kind == "company":
            target_id = crm.find_company(session, ref).id
        elif kind == "opportunity":
            target_id = opportunities.find(session, ref).id
        else:
            raise CurationError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    except crm.CrmError as exc:
        raise CurationError(str(exc)) from exc
    return Target(kind, target_id, target_label(session, kind, target_id))


def resolve_scope(session: Session, message_ref: str | None, thread_id: int | None) -> Scope:
    """A message (database id or Message-ID) or a thread. Raises CurationError if unknown."""
    if message_ref is not None:
        message = lookup.find_message(session, message_ref)
        if message is None or message.thread_id is None:
            raise CurationError(f"no message {message_ref!r} (give a database id or Message-ID)")
        return Scope(message.thread_id, message.id)
    if thread_id is None or session.get(models.Thread, thread_id) is None:
        raise CurationError(f"no thread {thread_id}")
    return Scope(thread_id)


def _same_scope(scope: Scope) -> sa.ColumnElement[bool]:
    if scope.message_id is not None:
        return Link.message_id == scope.message_id
    return sa.and_(
        models.manual_links(), Link.thread_id == scope.thread_id, Link.message_id.is_(None)
    )


def link(
    session: Session, cfg: config_mod.Config, scope: Scope, target: Target, by: str
) -> linking.MatchReport:
    """Link the message or thread to `target` by hand (sticky), then re-match the thread."""
    by = by if by != linking.MATCHER else f"user:{by}"
    session.execute(
        sa.delete(Link).where(
            _same_scope(scope),
            Link.tombstone,
            sa.or_(
                sa.and_(Link.target_kind == target.kind, Link.target_id == target.id),
                Link.target_kind == "any",
            ),
        )
    )
    existing = session.scalars(
        sa.select(Link).where(
            _same_scope(scope), Link.target_kind == target.kind, Link.target_id == target.id
        )
    ).all()
    manual = [row for row in existing if row.created_by != linking.MATCHER]
    for row in existing:
        if row.created_by == linking.MATCHER:
            session.delete(row)
    session.flush()
    if not manual:
        session.add(
            Link(
                message_id=scope.message_id,
                thread_id=scope.thread_id,
                target_kind=target.kind,
                target_id=target.id,
                method="manual",
                confidence=1,
                explanation=f"linked by hand by {by}",
                created_by=by,
            )
        )
    audit.record(session, by, "link", scope.describe(), {"kind": target.kind, "id": target.id})
    edit = ("add", scope.message_id, target.kind, target.id, "manual")
    webhookevents.links_changed(session, [edit], by)
    session.flush()
    log.info("manual link", extra={"action": "manual_link", "scope": scope.describe()})
    return linking.match_threads(session, cfg, [scope.thread_id])


def unlink(
    session: Session, cfg: config_mod.Config, scope: Scope, target: Target | None, by: str
) -> linking.MatchReport:
    """Unlink `target` (None: everything) by hand, leaving a tombstone; re-match the thread."""
    by = by if by != linking.MATCHER else f"user:{by}"
    kind, target_id = (target.kind, target.id) if target else ("any", 0)
    same_target = sa.and_(Link.target_kind == kind, Link.target_id == target_id)
    # A thread-wide unlink also removes the links made by hand on its messages (the
    # matcher's go when the thread is matched again below).
    inside = (
        Link.message_id == scope.message_id
        if scope.message_id is not None
        else sa.and_(models.manual_links(), Link.thread_id == scope.thread_id)
    )
    wanted = [inside, ~Link.tombstone] + ([same_target] if target is not None else [])
    session.execute(sa.delete(Link).where(*wanted))
    exists = session.scalar(
        sa.select(Link.id).where(_same_scope(scope), same_target, Link.tombstone)
    )
    if exists is None:
        session.add(
            Link(
                message_id=scope.message_id,
                thread_id=scope.thread_id,
                target_kind=kind,
                target_id=target_id,
                method="manual",
                confidence=1,
                explanation=f"unlinked by hand by {by}",
                tombstone=True,
                created_by=by,
            )
        )
    audit.record(session, by, "unlink", scope.describe(), {"kind": kind, "id": target_id})
    webhookevents.links_changed(
        session, [("remove", scope.message_id, kind, target_id, "manual")], by
    )
    session.flush()
    log.info("manual unlink", extra={"action": "manual_unlink", "scope": scope.describe()})
    return linking.match_threads(session, cfg, [scope.thread_id])


# --- review queue ---------------------------------------------------------------------------


def review_item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise CurationError(f"no review item #{item_id} (see `mailmanager review list`)")
    return item


def accept_review(
    session: Session, cfg: config_mod.Config, item_id: int, choice: Target | None, by: str
) -> Target:
    """Link the item's thread to `choice` (or to its only candidate) by hand; close it.

    Raises CurationError when the item has several candidates and no choice is given.
    """
    item = review_item(session, item_id)
    candidates = [int(c) for c in item.candidates.split()]
    if choice is None:
        if len(candidates) != 1:
            raise CurationError(
                f"review #{item_id} has {len(candidates)} candidates: pass --opportunity REF"
            )
        choice = Target(
            "opportunity", candidates[0], target_label(session, "opportunity", candidates[0])
        )
    item.status, item.chosen_id = "accepted", choice.id
    item.resolved_by, item.resolved_at = by, models.utcnow()
    session.flush()
    link(session, cfg, Scope(item.thread_id), choice, by)
    return choice


def reject_review(session: Session, item_id: int, by: str) -> None:
    """Close the item without linking: the matcher will not ask again for these candidates."""
    item = review_item(session, item_id)
    item.status, item.resolved_by, item.resolved_at = "rejected", by, models.utcnow()
    audit.record(session, by, "review_reject", Scope(item.thread_id).describe(), {"item": item_id})
    session.flush()


def list_reviews(session: Session, include_closed: bool = False) -> list[dict[str, Any]]:
    """Review items, oldest first (only pending ones unless `include_closed`): the thread,
    its subject, why, and each candidate with its label."""
    query = sa.select(ReviewItem).order_by(ReviewItem.id)
    if not include_closed:
        query = query.where(ReviewItem.status == "pending")
    items: list[dict[str, Any]] = []
    for item in session.scalars(query):
        thread = session.get(models.Thread, item.thread_id)
        items.append(
            {
                "id": item.id,
                "thread_id": item.thread_id,
                "subject": thread.subject if thread else "",
                "status": item.status,
                "explanation": item.explanation,
                "candidates": [
                    {"id": int(c), "label": target_label(session, item.kind, int(c))}
                    for c in item.candidates.split()
                ],
            }
        )
    return items


# --- suggested contacts ---------------------------------------------------------------------


def suggestion(session: Session, cfg: config_mod.Config, address: str) -> Suggestion:
    key = crm.address_key(cfg, address) or address.strip().lower()
    row = session.scalar(sa.select(Suggestion).where(Suggestion.email == key))
    if row is None:
        raise CurationError(f"no suggestion for {address!r} (see `mailmanager suggestions list`)")
    return row


def dismiss_suggestion(session: Session, cfg: config_mod.Config, address: str, by: str) -> None:
    """Keep the address out of the queue (its counts still update)."""
    row = suggestion(session, cfg, address)
    row.status, row.updated_at = "dismissed", models.utcnow()
    session.flush()


def accept_suggestion(
    session: Session, cfg: config_mod.Config, address: str, by: str, company_ref: str | None = None
) -> models.Contact:
    """Create the contact (name and company as suggested, unless `company_ref` is given);
    creating it retro-links its history. Raises CurationError if refused by the CRM."""
    row = suggestion(session, cfg, address)
    from mailmanager.matching import cascade as matcher

    first, last = matcher.split_name(row.name)
    row.status, row.updated_at = "accepted", models.utcnow()  # before the relink drops it
    session.flush()
    try:
        company = crm.find_company(session, company_ref) if company_ref else None
        if company is None and row.company_id is not None:
            company = session.get(models.Company, row.company_id)
        written = suggestions.written_forms(session, [row.email]).get(row.email, [row.email])
        contact = crm.create_contact(
            session, cfg, [written[0]], first, last, company=company, source="suggestion"
        )
    except crm.CrmError as exc:
        raise CurationError(str(exc)) from exc
    return contact


def list_suggestions(
    session: Session, include_closed: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """Suggested contacts, most messages first (only pending ones unless `include_closed`),
    with the label of the company they would join and the address as written in mail.

    Bounced, mailing-list and robot addresses (`suggestions.unwanted`) are left out; with
    `include_closed` they are listed too, with status "excluded" and the reason."""
    query = sa.select(Suggestion).order_by(Suggestion.messages.desc(), Suggestion.email)
    if not include_closed:
        query = query.where(Suggestion.status == "pending")
    rows: list[Suggestion] = []
    forms: dict[str, list[str]] = {}
    excluded: dict[str, str] = {}
    offset = 0
    while len(rows) < limit:
        page = session.scalars(query.offset(offset).limit(limit * 2)).all()
        if not page:
            break
        offset += len(page)
        page_forms = suggestions.written_forms(session, [r.email for r in page])
        for r in page:
            page_forms.setdefault(r.email, [r.email])
        page_excluded = suggestions.unwanted(session, page_forms)
        forms.update(page_forms)
        excluded.update(page_excluded)
        rows += [r for r in page if include_closed or r.email not in page_excluded]
    rows = rows[:limit]
    companies = {
        r.company_id: target_label(session, "company", r.company_id) for r in rows if r.company_id
    }
    return [
        {
            "email": forms[r.email][0],
            "key": r.email,
            "name": r.name,
            "company": companies.get(r.company_id) if r.company_id else None,
            "messages": r.messages,
            "sent": r.sent,
            "first_seen": r.first_seen.isoformat() if r.first_seen else None,
            "last_seen": r.last_seen.isoformat() if r.last_seen else None,
            "status": "excluded" if r.email in excluded else r.status,
            "excluded": excluded.get(r.email),
        }
        for r in rows
    ]


def message_thread(session: Session, message_id: int) -> int | None:
    return session.scalar(sa.select(Message.thread_id).where(Message.id == message_id))
