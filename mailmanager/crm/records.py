"""CRM records: companies and contacts, and the rules every CRM write obeys.

Plain functions over a Session (the caller owns the transaction). The rules that keep
matching trustworthy are enforced here, whatever the entry point (CLI, CSV import, web):
- a company domain is unique, and never a free-mail domain, a public suffix or one of the
  organization's own domains (mail from those says nothing about the company);
- a contact address is stored as its `normalize.match_key` (unique), with the form it was
  entered in kept in `display`; the organization's addresses (`identity.Identity.is_ours`:
  its users' and aliases, any at its domains) and robot senders (no-reply, mailer-daemon)
  are refused: they are never a customer;
- an opportunity reference (e.g. OPP-2041, used as a subject tag) is upper-case and unique.
Every change that affects matching calls `matching.run.relink_for` (the matcher's retro-link
hook) unless the caller passes `relink_now=False` and calls `relink` once for a batch.
Opportunities are in `opportunities`, merging duplicate contacts in `dedupe`, read-only
views for listing and export in `views`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.config import identity
from mailmanager.db import models
from mailmanager.db.models import Company, CompanyDomain, Contact, ContactEmail
from mailmanager.errors import MailmanagerError
from mailmanager.mail import normalize
from mailmanager.matching import run as linking

log = logging.getLogger(__name__)

CONTACT_STATUSES = ("prospect", "client")
CONTACT_FIELDS = frozenset(
    {"first_name", "last_name", "company_id", "owner_id", "status", "phone", "title"}
    | {"source", "external_id"}
)


class CrmError(MailmanagerError):
    """Raised when a record cannot be created or changed as asked.

    `field` names the input at fault ("domains", "email", "reference", ...).
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(CrmError):
    """Raised when a company, contact, opportunity or user named by the caller does not exist."""


def relink(
    session: Session,
    cfg: config_mod.Config,
    contacts: Iterable[int] = (),
    companies: Iterable[int] = (),
    opportunities: Iterable[int] = (),
) -> None:
    """Ask the matcher to re-link the mail that concerns these records (retro-linking)."""
    ids = {"contacts": sorted(set(contacts)), "companies": sorted(set(companies))}
    ids["opportunities"] = sorted(set(opportunities))
    if any(ids.values()):
        linking.relink_for(session, cfg, **ids)


# --- users, domains, addresses ---------------------------------------------------------------


def find_user(session: Session, cfg: config_mod.Config, email: str) -> models.User:
    """The user whose e-mail (or alias in the config file) is `email`.

    Raises NotFoundError when no `[[users]]` entry has it, or when the config's users were not
    yet written to the database (`configrows.ensure_config_rows`).
    """
    user_cfg = cfg.user(email)
    if user_cfg is None:
        raise NotFoundError(f"{email!r} is not a user: add it to [[users]] in the config", "owner")
    user = session.scalar(sa.select(models.User).where(models.User.email == user_cfg.email))
    if user is None:
        raise NotFoundError(f"user {user_cfg.email} is not in the database yet", "owner")
    return user


def clean_domain(cfg: config_mod.Config, text: str) -> str:
    """`text` (a domain, an address or a web site URL) as a company domain, normalized.

    Raises CrmError when it is not a domain name, is a public suffix, a free-mail domain or
    one of the organization's domains.
    """
    raw = text.strip()
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", raw, flags=re.I).split("/")[0].rpartition("@")[2]
    domain = normalize.ascii_domain(host.removeprefix("www.").removeprefix("WWW."))
    if domain is None or domain.startswith("["):
        raise CrmError(f"{raw!r} is not a domain name (write e.g. acme.fr)", "domains")
    if normalize.is_public_suffix(domain):
        raise CrmError(f"{domain} is a public suffix, not a company's domain", "domains")
    if normalize.is_free_mail(domain):
        raise CrmError(f"{domain} is a free-mail domain: it never identifies a company", "domains")
    if identity.of(cfg).is_org_domain(domain):
        raise CrmError(f"{domain} is one of the organization's own domains", "domains")
    return domain


def strip_plus(cfg: config_mod.Config) -> bool:
    """`[matcher] strip_plus_addressing`: contacts are stored under the key the matcher uses."""
    # getattr: the [matcher] section lands with the matcher (issue #4, part 2).
    return bool(getattr(getattr(cfg, "matcher", None), "strip_plus_addressing", True))


def address_key(cfg: config_mod.Config, address: str) -> str | None:
    """`normalize.match_key` of `address` under this configuration."""
    return normalize.match_key(address, strip_plus(cfg))


def contact_key(cfg: config_mod.Config, address: str) -> str:
    """The match key under which `address` is stored for a contact.

    Raises CrmError when it is not an address, is one of the organization's (a user's
    address or alias, or at the organization's domains), or is a robot sender (no-reply,
    mailer-daemon, bounces).
    """
    key = address_key(cfg, address)
    if key is None:
        raise CrmError(f"{address.strip()!r} is not an e-mail address", "email")
    if identity.of(cfg).is_ours(key):
        raise CrmError(f"{key} is an address of the organization, not of a contact", "email")
    if normalize.is_system_sender(key):
        raise CrmError(f"{key} is an automated sender, never a person", "email")
    return key


def company_domains(session: Session, company_id: int) -> list[str]:
    rows = session.scalars(
        sa.select(CompanyDomain.domain)
        .where(CompanyDomain.company_id == company_id)
        .order_by(CompanyDomain.id)
    )
    return list(rows)


def contact_emails(session: Session, contact_id: int) -> list[ContactEmail]:
    stmt = sa.select(ContactEmail).where(ContactEmail.contact_id == contact_id)
    return list(session.scalars(stmt.order_by(ContactEmail.id)))


# --- companies ---------------------------------------------------------------------------------


def companies_named(session: Session, name: str) -> list[Company]:
    """Companies whose name equals `name`, ignoring case and spacing (`models.name_key`)."""
    wanted = models.name_key(name)
    stmt = sa.select(Company).where(Company.name_key == wanted).order_by(Company.id)
    return list(session.scalars(stmt))


def find_company(session: Session, ref: str) -> Company:
    """A company by id, domain or name (case-insensitive).

    Raises NotFoundError if none matches, CrmError if the name is ambiguous.
    """
    ref = ref.strip()
    if ref.lstrip("#").isdigit():
        found = session.get(Company, int(ref.lstrip("#")))
        if found is not None:
            return found
    domain = normalize.ascii_domain(ref)
    if domain is not None:
        row = session.scalar(sa.select(CompanyDomain).where(CompanyDomain.domain == domain))
        if row is not None:
            return session.get_one(Company, row.company_id)
    named = companies_named(session, ref)
    if len(named) > 1:
        ids = ", ".join(f"#{c.id}" for c in named)
        raise CrmError(f"several companies are named {ref!r} ({ids}): use the id", "company")
    if not named:
        raise NotFoundError(f"no company {ref!r} (id, domain or name)", "company")
    return named[0]


def add_domain(session: Session, cfg: config_mod.Config, company: Company, text: str) -> bool:
    """Give `company` one more domain; False if it already had it.

    Raises CrmError if the domain is refused (see `clean_domain`) or belongs to another company.
    """
    domain = clean_domain(cfg, text)
    row = session.scalar(sa.select(CompanyDomain).where(CompanyDomain.domain == domain))
    if row is not None:
        if row.company_id == company.id:
            return False
        owner = session.get_one(Company, row.company_id)
        raise CrmError(f"{domain} already belongs to {owner.name} (#{owner.id})", "domains")
    session.add(CompanyDomain(company_id=company.id, domain=domain))
    session.flush()
    return True


def create_company(
    session: Session,
    cfg: config_mod.Config,
    name: str,
    domains: Sequence[str] = (),
    external_id: str | None = None,
    relink_now: bool = True,
) -> Company:
    """Create a company. Raises CrmError for an empty name, a refused or taken domain, or
    an external id already used."""
    if not name.strip():
        raise CrmError("a company needs a name", "name")
    for same in companies_named(session, name):
        raise CrmError(f"a company named {same.name!r} already exists (#{same.id})", "name")
    _check_external_id(session, Company, external_id, None)
    company = Company(name=name.strip(), external_id=external_id or None)
    session.add(company)
    session.flush()
    for d in domains:
        add_domain(session, cfg, company, d)
    if relink_now and domains:
        relink(session, cfg, companies=[company.id])
    return company


def update_company(
    session: Session,
    cfg: config_mod.Config,
    company: Company,
    name: str | None = None,
    add_domains: Sequence[str] = (),
    remove_domains: Sequence[str] = (),
    external_id: str | None = None,
    relink_now: bool = True,
) -> bool:
    """Change a company; returns whether anything changed. Raises CrmError like
    `create_company`, and for a removed domain the company does not have."""
    changed = False
    if name is not None and name.strip() and name.strip() != company.name:
        for same in companies_named(session, name):
            if same.id != company.id:
                raise CrmError(f"a company named {same.name!r} already exists (#{same.id})")
        company.name, changed = name.strip(), True
    if external_id and external_id != company.external_id:
        _check_external_id(session, Company, external_id, company.id)
        company.external_id, changed = external_id, True
    domains_changed = False
    for d in add_domains:
        domains_changed |= add_domain(session, cfg, company, d)
    for d in remove_domains:
        domain = normalize.ascii_domain(d) or d
        row = session.scalar(
            sa.select(CompanyDomain).where(
                CompanyDomain.domain == domain, CompanyDomain.company_id == company.id
            )
        )
        if row is None:
            raise CrmError(f"{company.name} has no domain {d!r}", "domains")
        session.delete(row)
        domains_changed = True
    session.flush()
    if relink_now and domains_changed:
        relink(session, cfg, companies=[company.id])
    return changed or domains_changed


def _check_external_id(
    session: Session, model: type[Company] | type[Contact], value: str | None, own: int | None
) -> None:
    if not value:
        return
    other = session.scalar(sa.select(model.id).where(model.external_id == value))
    if other is not None and other != own:
        raise CrmError(f"external id {value!r} is already used by #{other}", "external_id")


# --- contacts ----------------------------------------------------------------------------------


def contact_by_address(session: Session, cfg: config_mod.Config, address: str) -> Contact | None:
    key = address_key(cfg, address)
    if key is None:
        return None
    row = session.scalar(sa.select(ContactEmail).where(ContactEmail.email == key))
    return None if row is None else session.get_one(Contact, row.contact_id)


def find_contact(session: Session, cfg: config_mod.Config, ref: str) -> Contact:
    """A contact by id, e-mail address or external id. Raises NotFoundError if none."""
    ref = ref.strip()
    if ref.lstrip("#").isdigit():
        found = session.get(Contact, int(ref.lstrip("#")))
        if found is not None:
            return found
    by_address = contact_by_address(session, cfg, ref) if "@" in ref else None
    if by_address is not None:
        return by_address
    by_external = session.scalar(sa.select(Contact).where(Contact.external_id == ref))
    if by_external is None:
        raise NotFoundError(f"no contact {ref!r} (id, e-mail or external id)", "contact")
    return by_external


def add_email(session: Session, cfg: config_mod.Config, contact: Contact, address: str) -> bool:
    """Give `contact` one more address; False if it already had it.

    Raises CrmError if the address is refused (see `contact_key`) or belongs to another contact.
    """
    key = contact_key(cfg, address)
    row = session.scalar(sa.select(ContactEmail).where(ContactEmail.email == key))
    if row is not None:
        if row.contact_id != contact.id:
            raise CrmError(f"{key} already belongs to contact #{row.contact_id}", "email")
        return False
    session.add(ContactEmail(contact_id=contact.id, email=key, display=address.strip()))
    session.flush()
    return True


def _check_status(status: str) -> str:
    status = status.strip().lower()
    if status not in CONTACT_STATUSES:
        raise CrmError(f"status {status!r}: use one of {', '.join(CONTACT_STATUSES)}", "status")
    return status


def create_contact(
    session: Session,
    cfg: config_mod.Config,
    emails: Sequence[str],
    first_name: str = "",
    last_name: str = "",
    company: Company | None = None,
    owner: models.User | None = None,
    status: str = "prospect",
    phone: str = "",
    title: str = "",
    source: str = "manual",
    external_id: str | None = None,
    relink_now: bool = True,
) -> Contact:
    """Create a contact with its addresses. Raises CrmError for no address, a refused or
    taken address, a bad status, or an external id already used."""
    if not emails:
        raise CrmError("a contact needs at least one e-mail address", "email")
    _check_external_id(session, Contact, external_id, None)
    contact = Contact(
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        company_id=company.id if company else None,
        owner_id=owner.id if owner else None,
        status=_check_status(status),
        phone=phone.strip(),
        title=title.strip(),
        source=source,
        external_id=external_id or None,
    )
    session.add(contact)
    session.flush()
    for address in emails:
        add_email(session, cfg, contact, address)
    if relink_now:
        relink(session, cfg, contacts=[contact.id])
    return contact


def update_contact(
    session: Session,
    cfg: config_mod.Config,
    contact: Contact,
    fields: dict[str, str | int | None],
    add_emails: Sequence[str] = (),
    remove_emails: Sequence[str] = (),
    relink_now: bool = True,
) -> bool:
    """Set the given fields (first_name, last_name, company_id, owner_id, status, phone,
    title, source, external_id) and add/remove addresses; returns whether anything changed.

    Raises CrmError for an unknown field, a bad status, a refused or taken address, or an
    address the contact does not have.
    """
    changed = False
    matching_changed = False
    for name, value in fields.items():
        if name not in CONTACT_FIELDS:
            raise CrmError(f"contacts have no field {name!r}", name)
        if name == "status" and isinstance(value, str):
            value = _check_status(value)
        if name == "external_id":
            value = value or None
            _check_external_id(session, Contact, str(value) if value else None, contact.id)
        if getattr(contact, name) != value:
            setattr(contact, name, value)
            changed = True
            matching_changed |= name == "company_id"
    for address in add_emails:
        matching_changed |= add_email(session, cfg, contact, address)
    for address in remove_emails:
        key = address_key(cfg, address)
        row = session.scalar(
            sa.select(ContactEmail).where(
                ContactEmail.email == key, ContactEmail.contact_id == contact.id
            )
        )
        if row is None:
            raise CrmError(f"contact #{contact.id} has no address {address!r}", "email")
        session.delete(row)
        matching_changed = True
    session.flush()
    if relink_now and matching_changed:
        relink(session, cfg, contacts=[contact.id])
    return changed or matching_changed
