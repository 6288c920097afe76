"""Which threads a new or changed CRM record concerns: the retro-linking search.

`matching.run.relink_for` re-matches these threads. Threads already linked to the records are
found through their links, whatever their age; within the retro window, threads involving
the records' addresses (every spelling of a free-mail address: Gmail dots, "+tags"), their
companies' domains and subdomains, or their opportunity references in a subject.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import (
    CompanyDomain,
    ContactEmail,
    Message,
    Opportunity,
    OpportunityContact,
    Participant,
)
from mailmanager.mail import normalize
from mailmanager.matching import reads as linkindex


def threads_touching(
    s: Session,
    contacts: Collection[int],
    companies: Collection[int],
    opportunities: Collection[int],
    since: datetime | None,
    strip_plus: bool,
) -> set[int]:
    """Threads linked to these records, and threads since `since` that involve them."""
    tids: set[int] = set()
    among = functools.partial(store.among, s)
    for kind, ids in (
        ("contact", contacts),
        ("company", companies),
        ("opportunity", opportunities),
    ):
        for part in store.parts(s, sorted(ids)):
            tids.update(
                t
                for t in s.connection().scalars(
                    models.anchored_threads(kind, part, among).distinct()
                )
                if t is not None
            )
    if since is None:
        return tids
    contacts, companies = set(contacts), set(companies)
    refs: set[str] = set()
    for part in store.chunks(sorted(opportunities)):
        for ref, company in (
            s.connection()
            .execute(
                sa.select(Opportunity.reference, Opportunity.company_id).where(
                    Opportunity.id.in_(part)
                )
            )
            .all()
        ):
            if ref:
                refs.add(ref)
            if company is not None:
                companies.add(company)
        contacts.update(
            s.connection().scalars(
                sa.select(OpportunityContact.contact_id).where(
                    OpportunityContact.opportunity_id.in_(part)
                )
            )
        )
    keys: set[str] = set()
    for part in store.parts(s, sorted(contacts)):
        keys.update(
            s.connection().scalars(
                sa.select(ContactEmail.email).where(store.among(s, ContactEmail.contact_id, part))
            )
        )
    domains: set[str] = set()
    for part in store.chunks(sorted(companies)):
        domains.update(
            s.connection().scalars(
                sa.select(CompanyDomain.domain).where(CompanyDomain.company_id.in_(part))
            )
        )
    recent = Message.sent_at >= since
    # Free-mail keys stand for several spellings (Gmail dots, "+tags").
    folded = any(normalize.is_free_mail(k.rpartition("@")[2]) for k in keys)
    if domains or folded:
        # One pass over the window's participants: a domain covers its subdomains, and a
        # Gmail key matches every dotted spelling, which no index lookup can find.
        query = (
            sa.select(Message.thread_id, Participant.email)
            .join(Message, Message.id == Participant.message_id)
            .where(recent)
            .execution_options(yield_per=10000)
        )
        for tid, email in (r for part in s.connection().execute(query).partitions() for r in part):
            key = linkindex.key_of(email, strip_plus)
            if key is None or tid is None:
                continue
            if key in keys or (domains and not domains.isdisjoint(normalize.address_suffixes(key))):
                tids.add(tid)
    else:
        for part in store.parts(s, sorted(keys)):
            tids.update(
                t
                for t in s.connection().scalars(
                    sa.select(Message.thread_id)
                    .join(Participant, Participant.message_id == Message.id)
                    .where(recent, store.among(s, Participant.email, part))
                    .distinct()
                )
                if t is not None
            )
    for ref in sorted(refs):
        tids.update(
            t
            for t in s.connection().scalars(
                sa.select(Message.thread_id).where(recent, Message.subject.ilike(f"%{ref}%"))
            )
            if t is not None
        )
    return tids
