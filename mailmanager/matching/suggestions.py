"""The matcher's side tables: contacts it creates, and the suggested-contacts queue.

Who is never suggested (`unwanted`): an address a permanent bounce (RFC 3464) said does not
exist, a mailing list (its address is the List-Id of mail it carries, RFC 2919 §3, or all it
ever sent came with a List-Id), and robot senders (`normalize.is_system_sender`). The
queue's writer skips them and its readers (`services.curation.list_suggestions`) leave them
out, so an address that bounces after it was suggested leaves the queue too. Suggestions
are keyed by match key; `written_forms` gives the address as people wrote it, for display.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Contact, ContactEmail, Message, Participant, Suggestion
from mailmanager.mail import normalize
from mailmanager.matching import cascade as matcher
from mailmanager.matching import reads as linkindex
from mailmanager.matching import writes as linkwrite

# Every bounce's report; found through the partial index `ix_messages_bounces` (bounces are
# few), so reading them on each batch does not read the messages table.
BOUNCE_REPORTS = sa.select(Message.bounce).where(Message.is_bounce, Message.bounce != "")


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
    by_key: dict[str, list[str]] = {}
    for raw, key in raw_to_key.items():
        by_key.setdefault(key, []).append(raw)
    for key in unwanted(s, by_key):
        del people[key]
        for raw in by_key[key]:
            del raw_to_key[raw]
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


# --- who is never suggested, and how addresses were written ----------------------------------


def written_forms(s: Session, keys: Collection[str]) -> dict[str, list[str]]:
    """Each match key's spellings in stored mail ("marc.bonnet@gmail.com" for the key
    "marcbonnet@gmail.com"), most used first; keys never seen in mail are left out."""
    domains = {k.rpartition("@")[2] for k in keys}
    if "gmail.com" in domains:
        domains |= normalize.GMAIL_DOMAINS
    counts: dict[str, dict[str, int]] = {}
    for part in store.chunks(sorted(domains), 100):
        low = sa.func.lower(Participant.email)
        stmt = (
            sa.select(Participant.email, sa.func.count())
            .where(sa.or_(*(low.endswith(f"@{d}", autoescape=True) for d in part)))
            .group_by(Participant.email)
        )
        for email, n in s.execute(stmt):
            for k in (normalize.match_key(email), normalize.match_key(email, strip_plus=False)):
                if k is not None and k in keys:
                    counts.setdefault(k, {})[email] = int(n)
    return {
        key: sorted(spellings, key=lambda e: (-spellings[e], e))
        for key, spellings in counts.items()
    }


def unwanted(s: Session, forms: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """The keys of `forms` (key → its spellings in stored mail) that must not be suggested,
    with the reason: "bounced", "mailing list" or "robot" (see the module docstring).

    Reads every permanent bounce (bounces are few) and the mail of these addresses."""
    out = {key: "robot" for key in forms if normalize.is_system_sender(key)}
    raw_to_key = {raw: key for key, raws in forms.items() for raw in raws}
    sent: dict[str, list[bool]] = {}
    for part in linkindex.parts(s, sorted(raw_to_key)):
        rows = s.execute(
            sa.select(Participant.email, Participant.role, Message.list_id)
            .join(Message, Message.id == Participant.message_id)
            .where(linkindex.among(s, Participant.email, part))
            .distinct()
        )
        for raw, role, list_id in rows:
            key = raw_to_key[raw]
            if list_id is not None and list_id == raw.lower().replace("@", ".", 1):
                out[key] = "mailing list"
            if role == "from":
                sent.setdefault(key, []).append(list_id is not None)
    # A shared mailbox that only ever sent list mail (newsletter@, info@) is the list's
    # sender; a person who posts to a list is still a person.
    out.update(
        {
            key: "mailing list"
            for key, lists in sent.items()
            if all(lists) and normalize.is_role_address(key)
        }
    )
    for (bounce,) in s.execute(BOUNCE_REPORTS):
        try:
            report = json.loads(bounce)
        except ValueError:
            continue
        if not isinstance(report, dict) or report.get("permanent") is not True:
            continue
        for recipient in report.get("recipients") or ():
            if not isinstance(recipient, str):
                continue
            for k in (normalize.match_key(recipient), normalize.match_key(recipient, False)):
                if k is not None and k in forms:
                    out[k] = "bounced"
    return out
