"""The matcher's side tables: contacts it creates, and the suggested-contacts queue."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Contact, ContactEmail, Suggestion
from mailmanager.matching import cascade as matcher
from mailmanager.matching import reads as linkindex
from mailmanager.matching import writes as linkwrite


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


_STATS = (
    "SELECT p.email, count(DISTINCT m.id), "
    "count(DISTINCT CASE WHEN m.direction = 'outbound' THEN m.id END), "
    "min(m.sent_at), max(m.sent_at) "
    "FROM participants p JOIN messages m ON m.id = p.message_id "
    "WHERE m.direction <> 'internal' "
    "AND NOT (m.is_bulk OR m.is_auto_reply OR m.is_out_of_office OR m.is_bounce) "
    "AND p.email {} GROUP BY p.email"
)
_COLUMNS = (
    ("email", "text"),
    ("name", "text"),
    ("company_id", "int"),
    ("messages", "int"),
    ("sent", "int"),
    ("first_seen", "timestamp"),
    ("last_seen", "timestamp"),
    ("status", "text"),
    ("updated_at", "timestamp"),
)
_REFRESH = ("name", "company_id", "messages", "sent", "first_seen", "last_seen", "updated_at")


def write_suggestions(
    s: Session,
    verdicts: Sequence[matcher.ThreadVerdict],
    facts: Sequence[matcher.ThreadMatchFacts],
    ix: matcher.Index,
) -> int:
    """Refresh the suggested contacts these threads' unknown correspondents give; count them.

    Counts are recomputed from the stored messages (noise and internal mail excluded), so
    matching the same mail again never inflates them. Addresses that are contacts now
    leave the queue. Plain SQL: this runs after every sync batch.
    """
    known = {p.key for t in facts for m in t.messages for p in m.parties if p.key in ix.contacts}
    for part in linkindex.parts(s, sorted(known)):
        linkindex.raw_execute(
            s, "DELETE FROM suggestions WHERE status = 'pending' AND email {}", part
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
    # Dates stay as the driver gives them (text on SQLite, in a format that sorts as the
    # dates do) and go back the same way.
    stats: dict[str, list[Any]] = {}
    for part in linkindex.parts(s, sorted(raw_to_key)):
        for email, n, sent, first, last in linkindex.raw_rows(s, _STATS, part):
            acc = stats.setdefault(raw_to_key[email], [0, 0, None, None])
            acc[0] += n
            acc[1] += sent
            acc[2] = first if acc[2] is None or (first and first < acc[2]) else acc[2]
            acc[3] = last if acc[3] is None or (last and last > acc[3]) else acc[3]
    now = linkwrite.driver_time(s, models.utcnow())
    rows = []
    for key, (name, company) in people.items():
        n, sent, first, last = stats.get(key, [0, 0, None, None])
        rows.append((key, name[:300], company, n, sent, first, last, "pending", now))
    refresh = ", ".join(f"{c} = excluded.{c}" for c in _REFRESH)
    linkwrite.bulk_insert(
        s, "suggestions", _COLUMNS, rows, f"ON CONFLICT (email) DO UPDATE SET {refresh}"
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
