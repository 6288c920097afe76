"""Reminders that are not about one thread: dormant opportunities and clients at risk.

A target is `("opportunity", id)`, or a client: `("company", id)` when the client contact
belongs to a company (the rhythm is the company's, over all its contacts), else
`("contact", id)`. Exchanges are the real messages (see `reminders.facts.real_message`) of
the threads and messages linked to the target, plus, for clients, the messages any of
their addresses sent or received (so a client is followed even before the matcher links
its threads). Everything is read in a few set queries per chunk of targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Link, Message, Reminder
from mailmanager.reminders import facts as reminder_facts
from mailmanager.reminders import plan as reminder_plan
from mailmanager.reminders import rules

Target = tuple[str, int]


def key(target: Target) -> str:
    """The `Reminder.target` value of a target: "company:3"."""
    return f"{target[0]}:{target[1]}"


def parse_key(value: str) -> Target | None:
    kind, _, ident = value.partition(":")
    return (kind, int(ident)) if ident.isdigit() else None


@dataclass(frozen=True)
class TargetInfo:
    """A target's reminder wants, its stored rows and what a new row records."""

    target: Target
    alive: bool  # an open opportunity / a client: otherwise its check row goes
    wants: Sequence[rules.Want]
    next_check: datetime | None
    rows: Sequence[reminder_plan.Row]
    opportunity_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    message_id: int | None = None
    answered: frozenset[tuple[str, int]] = frozenset()  # rows an exchange since answered


def _answered(
    rows: Sequence[reminder_plan.Row], last: datetime | None
) -> frozenset[tuple[str, int]]:
    """The rows (kind, cycle) about an exchange older than the last one: answered by it."""
    if last is None:
        return frozenset()
    return frozenset((r.kind, r.cycle) for r in rows if r.cycle < cycle_of(last))


def cycle_of(t: datetime) -> int:
    """The cycle of a target reminder: the minute of the last exchange."""
    return int(t.timestamp()) // 60


def _exchanges(
    session: Session,
    linked: Mapping[Target, Iterable[tuple[int | None, int | None]]],
    addresses: Mapping[Target, Iterable[str]],
) -> dict[Target, list[tuple[datetime, int]]]:
    """Target → (sent_at, message id) of its real messages, via links and addresses."""
    owner_of_thread: dict[int, set[Target]] = {}
    owner_of_message: dict[int, set[Target]] = {}
    for target, pairs in linked.items():
        for tid, mid in pairs:
            if tid is not None:
                owner_of_thread.setdefault(tid, set()).add(target)
            if mid is not None:
                owner_of_message.setdefault(mid, set()).add(target)
    out: dict[Target, set[tuple[datetime, int]]] = {}
    cols = (Message.id, Message.thread_id, Message.sent_at)
    real = reminder_facts.real_message()
    for chunk in store.chunks(sorted(owner_of_thread)):
        for mid, tid, sent in session.execute(
            sa.select(*cols).where(Message.thread_id.in_(chunk), real)
        ):
            if tid is None or sent is None:
                continue
            for target in owner_of_thread[tid]:
                out.setdefault(target, set()).add((sent, mid))
    for chunk in store.chunks(sorted(owner_of_message)):
        for mid, _tid, sent in session.execute(sa.select(*cols).where(Message.id.in_(chunk), real)):
            if sent is None:
                continue
            for target in owner_of_message[mid]:
                out.setdefault(target, set()).add((sent, mid))
    owner_of_address: dict[str, set[Target]] = {}
    for target, found in addresses.items():
        for a in found:
            owner_of_address.setdefault(a, set()).add(target)
    for chunk in store.chunks(sorted(owner_of_address)):
        for mid, sent, email in session.execute(
            sa.select(Message.id, Message.sent_at, models.Participant.email)
            .join(models.Participant, models.Participant.message_id == Message.id)
            .where(models.Participant.email.in_(chunk), real)
        ):
            if sent is None:
                continue
            for target in owner_of_address[email]:
                out.setdefault(target, set()).add((sent, mid))
    return {t: sorted(v) for t, v in out.items()}


def _links(session: Session, kind: str, ids: Sequence[int]) -> dict[int, list[tuple[Any, Any]]]:
    out: dict[int, list[tuple[Any, Any]]] = {}
    for chunk in store.chunks(sorted(ids)):
        for target, tid, mid in session.execute(
            sa.select(Link.target_id, Link.thread_id, Link.message_id).where(
                models.linking(kind, chunk), Link.tombstone.is_(False)
            )
        ):
            out.setdefault(target, []).append((tid, mid))
    return out


def _rows(session: Session, targets: Iterable[Target]) -> dict[Target, list[reminder_plan.Row]]:
    keys = sorted(key(t) for t in targets)
    out: dict[Target, list[reminder_plan.Row]] = {}
    for chunk in store.chunks(keys):
        for target, row in reminder_facts.select_rows(session, Reminder.target.in_(chunk)):
            parsed = parse_key(str(target))
            if parsed is not None:
                out.setdefault(parsed, []).append(row)
    return out


def load_opportunities(
    session: Session, st: reminder_facts.Setting, ids: Sequence[int], now: datetime
) -> dict[Target, TargetInfo]:
    """Dormant-opportunity wants of these opportunities at `now`."""
    opps = session.execute(
        sa.select(
            models.Opportunity.id,
            models.Opportunity.stage,
            models.Opportunity.title,
            models.Opportunity.owner_id,
            models.Opportunity.company_id,
            models.Opportunity.created_at,
            models.Opportunity.last_activity_at,
        ).where(models.Opportunity.id.in_(ids))
    ).all()
    linked = _links(session, "opportunity", [o[0] for o in opps])
    targets = {("opportunity", o[0]) for o in opps}
    exchanges = _exchanges(session, {("opportunity", i): v for i, v in linked.items()}, {})
    rows = _rows(session, targets)
    out: dict[Target, TargetInfo] = {}
    for oid, stage, title, owner_id, company_id, created, activity in opps:
        t: Target = ("opportunity", oid)
        found = exchanges.get(t, [])
        last, mid = found[-1] if found else (created, None)
        if activity is not None and activity > last:
            last, mid = activity, None
        owner = st.by_id.get(owner_id or -1)
        want, check = None, None
        if stage == "open" and owner is not None and "dormant_opportunity" in st.org.rules:
            want, check = reminder_plan.opportunity_want(last, cycle_of(last), owner, title, now)
        out[t] = TargetInfo(
            t,
            stage == "open",
            [want] if want else [],
            check,
            rows.get(t, []),
            opportunity_id=oid,
            company_id=company_id,
            message_id=mid,
            answered=_answered(rows.get(t, []), last),
        )
    return out


def load_clients(
    session: Session, st: reminder_facts.Setting, targets: Sequence[Target], now: datetime
) -> dict[Target, TargetInfo]:
    """At-risk-client wants of these company or contact targets at `now`."""
    company_ids = [i for k, i in targets if k == "company"]
    contact_ids = [i for k, i in targets if k == "contact"]
    C = models.Contact
    cols = (C.id, C.company_id, C.status, C.owner_id, C.first_name, C.last_name)
    members: dict[Target, list[Any]] = {}
    for chunk in store.chunks(company_ids):
        for row in session.execute(sa.select(*cols).where(C.company_id.in_(chunk))):
            members.setdefault(("company", row[1] or 0), []).append(row)
    for chunk in store.chunks(contact_ids):
        for row in session.execute(sa.select(*cols).where(C.id.in_(chunk))):
            members.setdefault(("contact", row[0]), []).append(row)
    everyone = sorted({m[0] for ms in members.values() for m in ms})
    emails: dict[int, list[str]] = {}
    for chunk in store.chunks(everyone):
        for cid, email in session.execute(
            sa.select(models.ContactEmail.contact_id, models.ContactEmail.email).where(
                models.ContactEmail.contact_id.in_(chunk)
            )
        ):
            emails.setdefault(cid, []).append(email)
    names = dict(
        session.execute(
            sa.select(models.Company.id, models.Company.name).where(
                models.Company.id.in_(company_ids)
            )
        ).all()
    )
    contact_links = _links(session, "contact", everyone)
    company_links = _links(session, "company", company_ids)
    linked: dict[Target, list[tuple[Any, Any]]] = {}
    addresses: dict[Target, list[str]] = {}
    for t, ms in members.items():
        linked[t] = [p for m in ms for p in contact_links.get(m[0], [])]
        if t[0] == "company":
            linked[t] += company_links.get(t[1], [])
        addresses[t] = [e for m in ms for e in emails.get(m[0], [])]
    exchanges = _exchanges(session, linked, addresses)
    rows = _rows(session, targets)
    out: dict[Target, TargetInfo] = {}
    for t in targets:
        ms = members.get(t, [])
        clients = [m for m in ms if m[2] == "client"]
        owner = next((st.by_id[m[3]] for m in clients if m[3] in st.by_id), None)
        found = exchanges.get(t, [])
        want, check = None, None
        if clients and owner is not None and found and "at_risk_client" in st.org.rules:
            name = names.get(t[1], "") if t[0] == "company" else ""
            name = name or f"{clients[0][4]} {clients[0][5]}".strip() or "This client"
            last = found[-1][0]
            want, check = reminder_plan.client_want(
                [s for s, _ in found], cycle_of(last), owner, name, st.org, now
            )
        out[t] = TargetInfo(
            t,
            bool(clients),
            [want] if want else [],
            check,
            rows.get(t, []),
            contact_id=clients[0][0] if clients else None,
            company_id=t[1] if t[0] == "company" else (clients[0][1] if clients else None),
            message_id=found[-1][1] if found else None,
            answered=_answered(rows.get(t, []), found[-1][0] if found else None),
        )
    return out
