"""The matcher's side tables: contacts it creates, and the suggested-contacts queue."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import linkindex, matcher, models, store
from mailmanager.models import Contact, ContactEmail, Message, Participant, Suggestion


def create_contacts(s: Session, new: Sequence[matcher.NewContact]) -> dict[str, int]:
    """Insert the auto-created contacts (source "auto") with their address; key → id."""
    now = models.utcnow()
    rows = []
    for c in new:
        first, last = matcher.split_name(c.name)
        rows.append(
            {
                "first_name": first[:200],
                "last_name": last[:200],
                "company_id": c.company_id,
                "status": "prospect",
                "source": "auto",
                "phone": "",
                "title": "",
                "created_at": now,
            }
        )
    t = store.table(Contact)
    ids = list(
        s.connection()
        .execute(sa.insert(t).returning(t.c.id, sort_by_parameter_order=True), rows)
        .scalars()
    )
    s.connection().execute(
        sa.insert(store.table(ContactEmail)),
        [
            {"contact_id": cid, "email": c.key, "display": c.key}
            for c, cid in zip(new, ids, strict=True)
        ],
    )
    return {c.key: cid for c, cid in zip(new, ids, strict=True)}


def write_suggestions(
    s: Session,
    verdicts: Sequence[matcher.ThreadVerdict],
    facts: Sequence[matcher.ThreadFacts],
    ix: matcher.Index,
) -> int:
    """Refresh the suggested contacts these threads' unknown correspondents give; count them.

    Counts are recomputed from the stored messages (noise and internal mail excluded), so
    matching the same mail again never inflates them. Addresses that are contacts now
    leave the queue.
    """
    known = {p.key for t in facts for m in t.messages for p in m.parties if p.key in ix.contacts}
    for part in linkindex.parts(s, sorted(known)):
        s.connection().execute(
            sa.delete(Suggestion).where(
                linkindex.among(s, Suggestion.email, part), Suggestion.status == "pending"
            )
        )
    people: dict[str, tuple[str, int | None]] = {}
    raw_to_key: dict[str, str] = {}
    for tv in verdicts:
        for mv in tv.messages:
            for party, company in mv.unknown:
                if party.key in ix.contacts:
                    continue
                raw_to_key[party.email] = party.key
                name, _ = people.get(party.key, ("", None))
                people[party.key] = (name or party.name, company)
    if not people:
        return 0
    stats: dict[str, list[Any]] = {}
    m, p = Message, Participant
    for part in linkindex.parts(s, sorted(raw_to_key)):
        for email, n, sent, first, last in (
            s.connection()
            .execute(
                sa.select(
                    p.email,
                    sa.func.count(sa.distinct(m.id)),
                    sa.func.count(sa.distinct(sa.case((m.direction == "outbound", m.id)))),
                    sa.func.min(m.sent_at),
                    sa.func.max(m.sent_at),
                )
                .join(m, m.id == p.message_id)
                .where(
                    linkindex.among(s, p.email, part),
                    m.direction != "internal",
                    ~(m.is_bulk | m.is_auto_reply | m.is_out_of_office | m.is_bounce),
                )
                .group_by(p.email)
            )
            .all()
        ):
            acc = stats.setdefault(raw_to_key[email], [0, 0, None, None])
            acc[0] += n
            acc[1] += sent
            acc[2] = first if acc[2] is None or (first and first < acc[2]) else acc[2]
            acc[3] = last if acc[3] is None or (last and last > acc[3]) else acc[3]
    now = models.utcnow()
    rows = []
    for key, (name, company) in people.items():
        n, sent, first, last = stats.get(key, [0, 0, None, None])
        rows.append(
            {
                "email": key,
                "name": name[:300],
                "company_id": company,
                "messages": n,
                "sent": sent,
                "first_seen": first,
                "last_seen": last,
                "status": "pending",
                "updated_at": now,
            }
        )
    store.upsert(
        s,
        store.table(Suggestion),
        rows,
        keys=("email",),
        update=("name", "company_id", "messages", "sent", "first_seen", "last_seen", "updated_at"),
    )
    return len(rows)


def drop_suggestions_for(s: Session, contacts: Collection[int]) -> None:
    """Pending suggestions of addresses that belong to these contacts now leave the queue."""
    for part in linkindex.parts(s, sorted(contacts)):
        emails = sa.select(ContactEmail.email).where(
            linkindex.among(s, ContactEmail.contact_id, part)
        )
        s.connection().execute(
            sa.delete(Suggestion).where(
                Suggestion.email.in_(emails), Suggestion.status == "pending"
            )
        )
