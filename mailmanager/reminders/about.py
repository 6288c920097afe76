"""What a reminder is about, read when it is shown: its title, contact, company and
opportunity as the thread's links and the CRM records say *now*.

A reminder row keeps the ids it was created with, but a thread's links change afterwards (a
review accepted, a manual link or unlink, a re-match) and records are renamed or gain a
contact. The digest, `reminders list` and the coming web pages therefore all show what
`describe` reads at that moment, never the stored ids:

- a thread's reminder: the thread's subject; the contact of the address the reminder is
  about (`Reminder.contact_email`; else the contact it was created with, if it still
  exists), and that contact's company (else the thread's only linked company, else the
  company of the address's domain); the opportunity the thread is linked to (an open one
  first, the newest), else the contact's only open opportunity;
- a dormant opportunity: the opportunity (reference and title) as the title, its contact
  (a person: the first contact of the opportunity, else none) and its company;
- a client at risk: the company (or, for a client without one, the contact) as the title,
  and its client contact.

Everything is read in a few set queries for all the reminders shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Reminder
from mailmanager.mail import normalize
from mailmanager.reminders import facts as reminder_facts
from mailmanager.reminders import targets as reminder_targets


@dataclass(frozen=True)
class About:
    """One reminder's subject matter as shown now. Strings are "" when unknown."""

    title: str  # the thread's subject, the opportunity, or the client
    contact_id: int | None = None
    contact_name: str = ""
    contact_email: str = ""
    company_id: int | None = None
    company_name: str = ""
    opportunity_id: int | None = None
    opportunity_ref: str = ""
    opportunity_title: str = ""

    @property
    def opportunity(self) -> str:
        """ "OPP-12 — Title", or whichever of the two is known."""
        ref, title = self.opportunity_ref, self.opportunity_title
        return f"{ref} — {title}" if ref and title else (ref or title)

    @property
    def contact(self) -> str:
        """ "Jean Dupont <jean@acme.fr>", or whichever of the two is known."""
        name, email = self.contact_name, self.contact_email
        return f"{name} <{email}>" if name and email else (name or email)


@dataclass(frozen=True)
class _Person:
    id: int
    name: str
    email: str
    company_id: int | None
    opportunities: tuple[int, ...]


@dataclass(frozen=True)
class _Opp:
    id: int
    ref: str
    title: str
    stage: str
    company_id: int | None
    contacts: tuple[int, ...]


def describe(session: Session, reminders: Sequence[Reminder]) -> dict[int, About]:
    """Reminder id → what it is about now (see the module docstring)."""
    threads = sorted({r.thread_id for r in reminders if r.thread_id is not None})
    parsed = {r.id: _target(r) for r in reminders}
    subjects = _subjects(session, threads)
    links = reminder_facts.thread_links(session, threads)
    by_email = _contacts_by_email(session, [r.contact_email for r in reminders if r.thread_id])
    opp_ids = {i for m in links.values() for i in m.get("opportunity", ())}
    opp_ids |= {t[1] for t in parsed.values() if t and t[0] == "opportunity"}
    opps = _opportunities(session, opp_ids)
    contact_ids = set(by_email.values()) | {c for o in opps.values() for c in o.contacts}
    contact_ids |= {r.contact_id for r in reminders if r.contact_id is not None}
    contact_ids |= {t[1] for t in parsed.values() if t and t[0] == "contact"}
    people = _people(session, contact_ids)
    opps |= _opportunities(
        session, {o for p in people.values() for o in p.opportunities} - set(opps)
    )
    by_domain = _companies_by_domain(
        session, [r.contact_email for r in reminders if r.thread_id and r.contact_email]
    )
    company_ids = {p.company_id for p in people.values() if p.company_id is not None}
    company_ids |= {o.company_id for o in opps.values() if o.company_id is not None}
    company_ids |= {c for m in links.values() for c in m.get("company", ())}
    company_ids |= set(by_domain.values())
    company_ids |= {t[1] for t in parsed.values() if t and t[0] == "company"}
    names = _company_names(session, company_ids)
    found: dict[int, About] = {}
    for r in reminders:
        target = parsed[r.id]
        if r.thread_id is not None:
            person = people.get(by_email.get(r.contact_email, -1)) or people.get(r.contact_id or -1)
            thread_links = links.get(r.thread_id, {})
            company = person.company_id if person else None
            linked_companies = thread_links.get("company", ())
            if company is None and len(linked_companies) == 1:
                company = linked_companies[0]
            if company is None:
                company = by_domain.get(r.contact_email)
            opp = _thread_opportunity(thread_links.get("opportunity", ()), person, opps)
            found[r.id] = _about(
                subjects.get(r.thread_id, ""), person, r.contact_email, company, names, opp
            )
        elif target is not None and target[0] == "opportunity":
            opp = opps.get(target[1])
            person = people.get(opp.contacts[0]) if opp and opp.contacts else None
            company = opp.company_id if opp and opp.company_id else None
            if company is None and person is not None:
                company = person.company_id
            title = _opp_label(opp) if opp else ""
            found[r.id] = _about(title, person, "", company, names, opp)
        else:
            cid = target[1] if target and target[0] == "contact" else r.contact_id
            person = people.get(cid or -1)
            company = target[1] if target and target[0] == "company" else None
            if company is None and person is not None:
                company = person.company_id
            title = names.get(company or -1, "") or (person.name if person else "")
            found[r.id] = _about(title, person, "", company, names, None)
    return found


def _target(r: Reminder) -> reminder_targets.Target | None:
    return reminder_targets.parse_key(r.target) if r.target else None


def _about(
    title: str,
    person: _Person | None,
    email: str,
    company: int | None,
    names: Mapping[int, str],
    opp: _Opp | None,
) -> About:
    return About(
        title=title,
        contact_id=person.id if person else None,
        contact_name=person.name if person else "",
        contact_email=email or (person.email if person else ""),
        company_id=company if company in names else None,
        company_name=names.get(company or -1, ""),
        opportunity_id=opp.id if opp else None,
        opportunity_ref=opp.ref if opp else "",
        opportunity_title=opp.title if opp else "",
    )


def _opp_label(opp: _Opp) -> str:
    return f"{opp.ref} — {opp.title}" if opp.ref and opp.title else (opp.ref or opp.title)


def _thread_opportunity(
    linked: Sequence[int], person: _Person | None, opps: Mapping[int, _Opp]
) -> _Opp | None:
    """The thread's linked opportunity (an open one first, the newest), else the contact's
    only open opportunity (with several, the thread does not say which)."""
    known = [opps[o] for o in linked if o in opps]
    if known:
        return max(known, key=lambda o: (o.stage == "open", o.id))
    if person is None:
        return None
    open_ = [opps[o] for o in person.opportunities if o in opps and opps[o].stage == "open"]
    return open_[0] if len(open_) == 1 else None


def _subjects(session: Session, threads: Sequence[int]) -> dict[int, str]:
    T = models.Thread
    found: dict[int, str] = {}
    for chunk in store.chunks(threads):
        found.update(session.execute(sa.select(T.id, T.subject).where(T.id.in_(chunk))).all())
    return found


def _contacts_by_email(session: Session, emails: Iterable[str]) -> dict[str, int]:
    """Address → the contact it belongs to now (as written, or by its match key)."""
    keys: dict[str, set[str]] = {}
    for a in {e for e in emails if e}:
        for k in {a.lower(), normalize.match_key(a), normalize.match_key(a, False)}:
            if k:
                keys.setdefault(k, set()).add(a)
    E = models.ContactEmail
    found: dict[str, int] = {}
    for chunk in store.chunks(sorted(keys)):
        for email, cid in session.execute(
            sa.select(E.email, E.contact_id).where(E.email.in_(chunk)).order_by(E.id)
        ):
            for a in keys[email]:
                found.setdefault(a, cid)
    return found


def _companies_by_domain(session: Session, emails: Iterable[str]) -> dict[str, int]:
    """Address → the company of its domain (or of its registrable domain)."""
    domains: dict[str, set[str]] = {}
    for a in set(emails):
        d = a.rpartition("@")[2].lower()
        if not d or normalize.is_free_mail(d):
            continue
        for x in (d, normalize.registrable_domain(d)):
            domains.setdefault(x, set()).add(a)
    D = models.CompanyDomain
    found: dict[str, int] = {}
    for chunk in store.chunks(sorted(domains)):
        for domain, company in session.execute(
            sa.select(D.domain, D.company_id).where(D.domain.in_(chunk))
        ):
            for a in domains[domain]:
                found.setdefault(a, company)
    return found


def _people(session: Session, ids: Iterable[int]) -> dict[int, _Person]:
    C, E, OC = models.Contact, models.ContactEmail, models.OpportunityContact
    wanted = sorted(ids)
    emails: dict[int, str] = {}
    opps: dict[int, list[int]] = {}
    found: dict[int, _Person] = {}
    for chunk in store.chunks(wanted):
        for cid, email in session.execute(
            sa.select(E.contact_id, E.email).where(E.contact_id.in_(chunk)).order_by(E.id)
        ):
            emails.setdefault(cid, email)
        for cid, oid in session.execute(
            sa.select(OC.contact_id, OC.opportunity_id).where(OC.contact_id.in_(chunk))
        ):
            opps.setdefault(cid, []).append(oid)
        for cid, first, last, company in session.execute(
            sa.select(C.id, C.first_name, C.last_name, C.company_id).where(C.id.in_(chunk))
        ):
            found[cid] = _Person(
                cid,
                f"{first or ''} {last or ''}".strip(),
                emails.get(cid, ""),
                company,
                tuple(sorted(opps.get(cid, ()))),
            )
    return found


def _opportunities(session: Session, ids: Iterable[int]) -> dict[int, _Opp]:
    Opp, OC = models.Opportunity, models.OpportunityContact
    wanted = sorted(ids)
    contacts: dict[int, list[int]] = {}
    found: dict[int, _Opp] = {}
    for chunk in store.chunks(wanted):
        for oid, cid in session.execute(
            sa.select(OC.opportunity_id, OC.contact_id)
            .where(OC.opportunity_id.in_(chunk))
            .order_by(OC.contact_id)
        ):
            contacts.setdefault(oid, []).append(cid)
        for oid, ref, title, stage, company in session.execute(
            sa.select(Opp.id, Opp.reference, Opp.title, Opp.stage, Opp.company_id).where(
                Opp.id.in_(chunk)
            )
        ):
            found[oid] = _Opp(
                oid, ref or "", title or "", stage, company, tuple(contacts.get(oid, ()))
            )
    return found


def _company_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    C = models.Company
    found: dict[int, str] = {}
    for chunk in store.chunks(sorted(ids)):
        found.update(session.execute(sa.select(C.id, C.name).where(C.id.in_(chunk))).all())
    return found
