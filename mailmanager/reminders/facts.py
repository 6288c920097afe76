"""What the reminder rules need, read from the database in a few set queries per chunk of
threads (never one query per thread), and the configuration seen as rule settings.

A thread's facts are its messages (dates, directions, noise flags, recipients), what the CRM
knows of its external addresses (contact, company), whether it concerns a contact or an open
opportunity (Link rows first; the contact's address when the matcher has not linked it),
its stored reminders, and what was read in the bodies of the few messages the rules read
(kept on each message at ingest; for messages stored before that, read again from their
raw bytes: `_texts`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.config import identity
from mailmanager.crm import records as crm
from mailmanager.db import models, store
from mailmanager.db.models import Link, Message, Participant, Reminder
from mailmanager.mail import normalize, parsing, replies
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import plan as reminder_plan
from mailmanager.reminders import rules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """The configuration as the rules see it, with database user ids."""

    org: rules.OrgRules
    by_address: Mapping[str, rules.UserRules]  # every address of every user
    by_id: Mapping[int, rules.UserRules]
    emails: Mapping[int, str]


def setting(session: Session, cfg: config_mod.Config) -> Setting:
    """Rule settings for every user in the database (config values win over stored ones)."""
    r = cfg.reminders
    rows = session.execute(
        sa.select(
            models.User.id,
            models.User.email,
            models.User.timezone,
            models.User.holiday_country,
            models.User.holiday_subdivision,
            models.User.manager_id,
        )
    ).all()
    ids = {email: uid for uid, email, *_ in rows}
    ours = identity.of(cfg)
    by_address: dict[str, rules.UserRules] = {}
    by_id: dict[int, rules.UserRules] = {}
    for uid, email, tz, country, subdivision, manager_id in rows:
        u = cfg.user(email)
        try:
            cal = bt.calendar(
                timezone=u.timezone if u else tz,
                work_days=(u.work_days if u and u.work_days else r.work_days),
                start=(u.work_start if u and u.work_start else r.work_start),
                end=(u.work_end if u and u.work_end else r.work_end),
                holiday_country=u.holiday_country if u else country,
                holiday_subdivision=u.holiday_subdivision if u else subdivision,
            )
        except bt.CalendarError:
            log.warning("bad calendar, using UTC", extra={"action": "reminder_bad_calendar"})
            cal = bt.Calendar()
        user = rules.UserRules(
            user_id=uid,
            email=email,
            calendar=cal,
            awaiting_reply_days=_pick(u, "awaiting_reply_days", r.awaiting_reply_days),
            needs_response_hours=_pick(u, "needs_response_hours", r.needs_response_hours),
            dormant_opportunity_days=_pick(
                u, "dormant_opportunity_days", r.dormant_opportunity_days
            ),
            max_repeats=_pick(u, "max_repeats", r.max_repeats),
            repeat_days=r.repeat_days,
            escalate_after=r.escalate_after,
            manager_id=ids.get(u.manager) if u and u.manager else manager_id,
        )
        by_id[uid] = user
        for address in (email, *ours.user_addresses(email)):
            by_address.setdefault(address, user)
    org = rules.OrgRules(
        rules=frozenset(r.rules) if r.enabled else frozenset(),
        identity=ours,
        require=r.require,
        reply_from_company=r.reply_from_company,
        expect_reply=r.expect_reply,
        out_of_office_days=r.out_of_office_days,
        max_age=timedelta(days=r.max_age_days),
        at_risk_factor=r.at_risk_factor,
        at_risk_min_exchanges=r.at_risk_min_exchanges,
        at_risk_min_days=r.at_risk_min_days,
    )
    return Setting(org, by_address, by_id, {uid: email for uid, email, *_ in rows})


def _pick(u: config_mod.UserConfig | None, name: str, default: int) -> int:
    value = getattr(u, name, None) if u is not None else None
    return default if value is None else int(value)


# A row of `_message_rows`: its values are read by column name (`row.sent_at`).
_Row = sa.Row[*tuple[Any, ...]]


@dataclass(frozen=True)
class ThreadInfo:
    """One thread's facts plus what a new reminder row records about it."""

    facts: rules.ThreadReminderFacts
    texts: Mapping[int, rules.TextFacts]
    rows: Sequence[reminder_plan.Row]
    contact_of: Mapping[str, int]  # address → contact id
    company_of: Mapping[str, int]  # address → company id
    opportunity_id: int | None
    targets: frozenset[tuple[str, int]] = field(default_factory=frozenset)


def real_message() -> sa.ColumnElement[bool]:
    """Messages that count as an exchange: dated, not noise, not between colleagues only."""
    return sa.and_(
        Message.sent_at.is_not(None),
        Message.is_auto_reply.is_(False),
        Message.is_bulk.is_(False),
        Message.is_bounce.is_(False),
        Message.direction != "internal",
    )


def load_threads(
    session: Session, cfg: config_mod.Config, st: Setting, thread_ids: Sequence[int]
) -> dict[int, ThreadInfo]:
    """Facts of the given threads (those that still exist), in about ten queries: the
    threads, their messages and recipients, what the CRM knows (`_crm`), the text facts of
    the few messages the rules read (`_texts`), and the stored reminders."""
    overrides = _expect_overrides(session, thread_ids)
    if not overrides:
        return {}
    ids = list(overrides)
    msgs = _message_rows(session, ids)
    recipients = _recipients(session, [m.id for m in msgs])
    external = _external(msgs, recipients, st)
    crm = _crm(session, cfg, ids, msgs, external)
    lists = _known_lists(session, msgs, recipients, external)
    messages_of = _message_facts(ids, msgs, recipients, external, lists)
    facts = {
        tid: _thread_facts(tid, messages_of[tid], overrides[tid], external, crm) for tid in ids
    }
    needed = {tid: rules.texts_needed(f, st.by_address, st.org) for tid, f in facts.items()}
    texts = _texts(session, [m for m in msgs if m.id in needed[m.thread_id]])
    rows = _thread_rows(session, ids)
    return {
        tid: _thread_info(
            f, {mid: texts[mid] for mid in needed[tid] if mid in texts}, rows.get(tid, []), crm
        )
        for tid, f in facts.items()
    }


def _expect_overrides(session: Session, thread_ids: Sequence[int]) -> dict[int, str | None]:
    """Thread id → its "expects a reply" override, for the threads that exist."""
    return dict(
        session.execute(
            sa.select(models.Thread.id, models.Thread.expect_reply).where(
                models.Thread.id.in_(thread_ids)
            )
        ).all()
    )


def _message_rows(session: Session, ids: Sequence[int]) -> list[_Row]:
    """The threads' messages: what the rules read of each, and their stored text facts."""
    return list(
        session.execute(
            sa.select(
                Message.id,
                Message.thread_id,
                Message.sent_at,
                Message.direction,
                Message.from_email,
                Message.from_name,
                (Message.is_auto_reply | Message.is_bulk | Message.is_bounce).label("noise"),
                Message.is_out_of_office,
                Message.is_bounce,
                Message.bounce,
                Message.sha256,
                Message.expects_reply,
                Message.expects_reply_reason,
                Message.return_date,
                Message.list_id,
                Message.message_id.label("header_id"),
            ).where(Message.thread_id.in_(ids))
        ).all()
    )


def _recipients(session: Session, mids: Sequence[int]) -> dict[int, dict[str, list[str]]]:
    """Message id → role ("to", "cc") → addresses."""
    found: dict[int, dict[str, list[str]]] = {}
    for chunk in store.chunks(mids):
        for mid, role, email in session.execute(
            sa.select(Participant.message_id, Participant.role, Participant.email).where(
                Participant.message_id.in_(chunk), Participant.role.in_(("to", "cc"))
            )
        ):
            found.setdefault(mid, {}).setdefault(role, []).append(email)
    return found


def _external(
    msgs: Sequence[_Row], recipients: Mapping[int, Mapping[str, Sequence[str]]], st: Setting
) -> set[str]:
    """The senders and recipients who are outside the organization."""
    addresses = {m.from_email for m in msgs} | {
        a for r in recipients.values() for v in r.values() for a in v
    }
    return {a for a in addresses if rules.is_external(a, st.by_address, st.org)}


def _known_lists(
    session: Session,
    msgs: Sequence[_Row],
    recipients: Mapping[int, Mapping[str, Sequence[str]]],
    external: set[str],
) -> set[str]:
    """The people outside we wrote to that are in fact mailing lists, known from earlier
    traffic: some stored message came through the list the address posts to (its List-Id
    names the address, `rules.is_list_address`). One look-up in `ix_messages_list_id`."""
    ours = [m.id for m in msgs if m.direction == "outbound"]
    by_list: dict[str, set[str]] = {}
    for mid in ours:
        for found in recipients.get(mid, {}).values():
            for a in found:
                local, _, domain = a.lower().rpartition("@")
                if a in external and local:
                    by_list.setdefault(f"{local}.{domain}", set()).add(a)
    lists: set[str] = set()
    for chunk in store.chunks(sorted(by_list)):
        for list_id in session.scalars(
            sa.select(Message.list_id)
            .distinct()
            .where(Message.list_id.is_not(None), Message.list_id.in_(chunk))
        ):
            lists |= by_list.get(list_id or "", set())
    return lists


def _message_facts(
    ids: Sequence[int],
    msgs: Sequence[_Row],
    recipients: Mapping[int, Mapping[str, Sequence[str]]],
    external: set[str],
    lists: set[str],
) -> dict[int, list[rules.MessageFact]]:
    """Thread id → its messages as the rules see them, in no particular order. A system
    sender outside (noreply@, mailer-daemon@...) counts as noise. A message's recipients
    that are lists: those known as lists (`lists`), and the list a copy of it came back
    through (its own List-Id, or that of another copy stored apart, same Message-ID)."""
    found: dict[int, list[rules.MessageFact]] = {tid: [] for tid in ids}
    via = {(m.thread_id, m.header_id): m.list_id for m in msgs if m.list_id}
    for m in msgs:
        info = json.loads(m.bounce) if m.bounce else {}
        rcpt = recipients.get(m.id, {})
        robot = m.from_email in external and normalize.is_system_sender(m.from_email)
        list_id = m.list_id or via.get((m.thread_id, m.header_id))
        found[m.thread_id].append(
            rules.MessageFact(
                id=m.id,
                sent_at=m.sent_at,
                direction=m.direction,
                from_email=m.from_email,
                from_name=m.from_name,
                to=tuple(rcpt.get("to", ())),
                cc=tuple(rcpt.get("cc", ())),
                noise=bool(m.noise) or m.is_out_of_office or robot,
                is_oof=m.is_out_of_office,
                is_bounce=m.is_bounce,
                bounce_recipients=tuple(info.get("recipients", ())),
                bounce_permanent=bool(info.get("permanent", False)),
                lists=rules.list_recipients(
                    (*rcpt.get("to", ()), *rcpt.get("cc", ())), list_id, lists
                ),
            )
        )
    return found


def _thread_facts(
    tid: int,
    messages: Sequence[rules.MessageFact],
    override: str | None,
    external: set[str],
    crm: _Crm,
) -> rules.ThreadReminderFacts:
    """One thread as the rules see it: its messages in order, and what the CRM knows of
    the people outside in it."""
    ordered = sorted(messages, key=lambda m: (m.sent_at is not None, m.sent_at, m.id))
    people = {a for m in ordered for a in (m.from_email, *m.to, *m.cc) if a in external}
    tl = crm.links.get(tid, {})
    return rules.ThreadReminderFacts(
        thread_id=tid,
        messages=tuple(ordered),
        expect_override=override,
        identities={
            a: rules.Identity(
                crm.contact_of.get(a), _company_key(a, crm.contact_of, crm.company_of)
            )
            for a in people
        },
        has_contact_link=bool(tl.get("contact")),
        has_open_opportunity=bool(
            set(tl.get("opportunity", ())) & set(crm.opportunities)
            or any(
                o in crm.opportunities
                for a in people
                for o in crm.contacts.get(crm.contact_of.get(a, -1), _NO_CONTACT).opportunities
            )
        ),
    )


def _thread_info(
    facts: rules.ThreadReminderFacts,
    texts: Mapping[int, rules.TextFacts],
    rows: Sequence[reminder_plan.Row],
    crm: _Crm,
) -> ThreadInfo:
    """The thread's facts with what a new reminder row records: the opportunity it is about
    (a linked open one, else one of a contact's), and the records it concerns (linked
    opportunities; the companies, or contacts, of client contacts)."""
    tl = crm.links.get(facts.thread_id, {})
    linked = [o for o in tl.get("opportunity", ()) if o in crm.opportunities]
    targets = {("opportunity", o) for o in tl.get("opportunity", ())}
    for ident in facts.identities.values():
        c = crm.contacts.get(ident.contact_id or -1)
        if c is not None and c.status == "client":
            targets.add(("company", c.company_id) if c.company_id else ("contact", c.id))
        if not linked and c is not None:
            linked = [o for o in c.opportunities if o in crm.opportunities]
    return ThreadInfo(
        facts,
        texts,
        rows,
        crm.contact_of,
        crm.company_of,
        max(linked) if linked else None,
        frozenset(targets),
    )


@dataclass(frozen=True)
class _Contact:
    id: int
    company_id: int | None
    status: str
    opportunities: tuple[int, ...] = ()


_NO_CONTACT = _Contact(-1, None, "")


@dataclass(frozen=True)
class _Crm:
    """What the CRM knows of a chunk of threads."""

    links: Mapping[int, Mapping[str, Sequence[int]]]  # thread id → target kind → target ids
    contact_of: Mapping[str, int]  # address → contact id
    company_of: Mapping[str, int]  # address → company id
    contacts: Mapping[int, _Contact]  # the contacts of those addresses, and linked ones
    opportunities: set[int]  # the open ones among theirs and the linked ones


def _crm(
    session: Session,
    cfg: config_mod.Config,
    ids: Sequence[int],
    msgs: Sequence[_Row],
    external: set[str],
) -> _Crm:
    """Links, contacts, companies and open opportunities of these threads and addresses."""
    thread_of = {m.id: m.thread_id for m in msgs if m.thread_id is not None}
    links = _links(session, ids, [m.id for m in msgs], thread_of)
    contact_of, company_of, contacts = _identities(session, cfg, external, links)
    return _Crm(
        links, contact_of, company_of, contacts, _open_opportunities(session, links, contacts)
    )


def thread_links(session: Session, ids: Sequence[int]) -> dict[int, dict[str, list[int]]]:
    """Thread id → target kind → the target ids it is linked to now (manual unlinks win)."""
    if not ids:
        return {}
    thread_of: dict[int, int] = {}
    for chunk in store.chunks(ids):
        for mid, tid in session.execute(
            sa.select(Message.id, Message.thread_id).where(Message.thread_id.in_(chunk))
        ):
            if tid is not None:
                thread_of[mid] = tid
    return _links(session, ids, sorted(thread_of), thread_of)


def _links(
    session: Session, ids: Sequence[int], mids: Sequence[int], thread_of: Mapping[int, int]
) -> dict[int, dict[str, list[int]]]:
    """Thread id → target kind → linked target ids (manual unlinks win)."""
    found: dict[int, dict[str, set[int]]] = {}
    dead: set[tuple[int, str, int]] = set()
    # Thread-level rows (manual ones only: `ix_links_manual`), then every message's rows.
    queries = [sa.and_(models.manual_links(), Link.thread_id.in_(ids))]
    queries += [Link.message_id.in_(c) for c in store.chunks(mids)]
    for where in queries:
        for tid, mid, kind, target, tomb in session.execute(
            sa.select(
                Link.thread_id, Link.message_id, Link.target_kind, Link.target_id, Link.tombstone
            ).where(where)
        ):
            thread = tid if tid is not None else thread_of.get(mid or -1)
            if thread is None:
                continue
            if tomb:
                dead.add((thread, kind, target))
            else:
                found.setdefault(thread, {}).setdefault(kind, set()).add(target)
    return {
        t: {k: sorted(v - {x for (tt, kk, x) in dead if tt == t and kk == k}) for k, v in m.items()}
        for t, m in found.items()
    }


def _identities(
    session: Session,
    cfg: config_mod.Config,
    external: Iterable[str],
    links: Mapping[int, Mapping[str, Sequence[int]]],
) -> tuple[dict[str, int], dict[str, int], dict[int, _Contact]]:
    """(address → contact id, address → company id, contact id → contact) for these
    addresses and the linked contacts."""
    keys = {a: crm.address_key(cfg, a) for a in external}
    contact_of: dict[str, int] = {}
    by_key: dict[str, int] = {}
    wanted = sorted({k for k in keys.values() if k})
    for chunk in store.chunks(wanted):
        by_key.update(
            session.execute(
                sa.select(models.ContactEmail.email, models.ContactEmail.contact_id).where(
                    models.ContactEmail.email.in_(chunk)
                )
            ).all()
        )
    for a, k in keys.items():
        if k in by_key:
            contact_of[a] = by_key[k]
    contact_ids = set(contact_of.values()) | {
        c for m in links.values() for c in m.get("contact", ())
    }
    contacts: dict[int, _Contact] = {}
    opps: dict[int, list[int]] = {}
    for chunk in store.chunks(sorted(contact_ids)):
        for cid, oid in session.execute(
            sa.select(
                models.OpportunityContact.contact_id, models.OpportunityContact.opportunity_id
            ).where(models.OpportunityContact.contact_id.in_(chunk))
        ):
            opps.setdefault(cid, []).append(oid)
        for cid, company, status in session.execute(
            sa.select(models.Contact.id, models.Contact.company_id, models.Contact.status).where(
                models.Contact.id.in_(chunk)
            )
        ):
            contacts[cid] = _Contact(cid, company, status, tuple(opps.get(cid, ())))
    company_of: dict[str, int] = {}
    domains: dict[str, set[str]] = {}
    for a in external:
        c = contacts.get(contact_of.get(a, -1))
        if c is not None and c.company_id is not None:
            company_of[a] = c.company_id
            continue
        d = a.rpartition("@")[2]
        domains.setdefault(d, set()).add(a)
        domains.setdefault(normalize.registrable_domain(d), set()).add(a)
    for chunk in store.chunks(sorted(domains)):
        for domain, company in session.execute(
            sa.select(models.CompanyDomain.domain, models.CompanyDomain.company_id).where(
                models.CompanyDomain.domain.in_(chunk)
            )
        ):
            for a in domains[domain]:
                company_of.setdefault(a, company)
    return contact_of, company_of, contacts


def _company_key(
    a: str, contact_of: Mapping[str, int], company_of: Mapping[str, int]
) -> str | None:
    if a in company_of:
        return f"company:{company_of[a]}"
    domain = a.rpartition("@")[2]
    if not domain or normalize.is_free_mail(domain):
        return None  # free mail says nothing about who someone works for
    return f"domain:{normalize.registrable_domain(domain)}"


def _open_opportunities(
    session: Session,
    links: Mapping[int, Mapping[str, Sequence[int]]],
    contacts: Mapping[int, _Contact],
) -> set[int]:
    ids = {o for m in links.values() for o in m.get("opportunity", ())}
    ids |= {o for c in contacts.values() for o in c.opportunities}
    found: set[int] = set()
    for chunk in store.chunks(sorted(ids)):
        found.update(
            session.scalars(
                sa.select(models.Opportunity.id).where(
                    models.Opportunity.id.in_(chunk), models.Opportunity.stage == "open"
                )
            )
        )
    return found


def _texts(session: Session, wanted: Sequence[_Row]) -> dict[int, rules.TextFacts]:
    """What the rules read in the bodies of the wanted messages: the facts ingest stored
    with each (`parsing.ParsedMessage.text_facts`). Messages stored before it did (schema
    0011) have none; for those, and only those, the bodies are read again from their raw
    bytes (`_texts_from_raw`)."""
    out: dict[int, rules.TextFacts] = {}
    unread: list[_Row] = []
    for m in wanted:
        if m.expects_reply_reason is None:
            unread.append(m)
            continue
        expectation = replies.Expectation(bool(m.expects_reply), m.expects_reply_reason)
        out[m.id] = rules.TextFacts(expectation, m.return_date)
    if unread:
        out.update(_texts_from_raw(session, unread))
    return out


def _texts_from_raw(session: Session, messages: Sequence[_Row]) -> dict[int, rules.TextFacts]:
    """The text facts of these messages read from their stored raw bytes (`_texts`'s
    fallback); none for a message whose bytes were not kept: the rules then assume a reply
    is expected."""
    shas = sorted({m.sha256 for m in messages})
    raw: dict[str, bytes] = {}
    for chunk in store.chunks(shas, 100):
        raw.update(
            session.execute(
                sa.select(models.MessageRaw.sha256, models.MessageRaw.data).where(
                    models.MessageRaw.sha256.in_(chunk)
                )
            ).all()
        )
    return {
        m.id: parsing.text_facts(raw[m.sha256], m.is_out_of_office, m.sent_at)
        for m in messages
        if m.sha256 in raw
    }


def _thread_rows(session: Session, ids: Sequence[int]) -> dict[int, list[reminder_plan.Row]]:
    out: dict[int, list[reminder_plan.Row]] = {}
    for tid, row in select_rows(session, Reminder.thread_id.in_(ids)):
        out.setdefault(tid, []).append(row)
    return out


def select_rows(
    session: Session, where: sa.ColumnElement[bool]
) -> list[tuple[Any, reminder_plan.Row]]:
    """(thread id or target, row) for the stored reminders matching `where`."""
    result = session.execute(
        sa.select(
            Reminder.thread_id,
            Reminder.target,
            Reminder.id,
            Reminder.kind,
            Reminder.cycle,
            Reminder.status,
            Reminder.user_id,
            Reminder.due_at,
            Reminder.sent_at,
            Reminder.sent_count,
            Reminder.snoozed_until,
        ).where(where)
    )
    return [
        (tid if tid is not None else target, reminder_plan.Row(*rest))
        for tid, target, *rest in result
    ]
