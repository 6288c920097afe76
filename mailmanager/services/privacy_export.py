"""The right of access (GDPR art. 15): every stored item about one person, in one zip.

`export` writes, for the address given (and the CRM contact that has it, if any):

- `person.json`: the address, the contact with its addresses, company and opportunities,
  and the suggestion row when the person is no contact yet;
- `messages/<id>.json`: each message they take part in (metadata, participants, where it
  lies, its links), and `messages/<id>.eml`, its raw bytes when they were kept;
- `links.json`, `reminders.json`, `audit.json`: the links to the contact, the reminders
  about them or their threads, and the audit entries about them.

The archive is created with mode 0600 (it holds personal data) and the export is audited.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models
from mailmanager.db.models import Message
from mailmanager.mail import normalize
from mailmanager.services import privacy, queries
from mailmanager.sync import privacy as kept


@dataclass(frozen=True)
class ExportSummary:
    path: str
    messages: int
    raw_files: int
    links: int
    reminders: int
    audit_entries: int
    contact_id: int | None


def _row(obj: Any, *names: str) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def _person(session: Session, address: str) -> tuple[dict[str, Any], models.Contact | None]:
    key = normalize.match_key(address) or kept.address_key(address)
    CE = models.ContactEmail
    contact = session.scalars(
        sa.select(models.Contact)
        .join(CE, CE.contact_id == models.Contact.id)
        .where(CE.email == key)
    ).first()
    data: dict[str, Any] = {"address": address, "contact": None, "suggestion": None}
    if contact is not None:
        c = _row(contact, "id", "first_name", "last_name", "status", "phone", "title", "source")
        c["created_at"] = contact.created_at
        c["addresses"] = list(
            session.scalars(sa.select(CE.email).where(CE.contact_id == contact.id))
        )
        company = session.get(models.Company, contact.company_id) if contact.company_id else None
        c["company"] = _row(company, "id", "name") if company else None
        OC, Opp = models.OpportunityContact, models.Opportunity
        c["opportunities"] = [
            _row(o, "id", "reference", "title", "stage")
            for o in session.scalars(
                sa.select(Opp)
                .join(OC, OC.opportunity_id == Opp.id)
                .where(OC.contact_id == contact.id)
            )
        ]
        data["contact"] = c
    s = session.scalars(sa.select(models.Suggestion).where(models.Suggestion.email == key)).first()
    if s is not None:
        data["suggestion"] = _row(
            s, "email", "name", "messages", "first_seen", "last_seen", "status"
        )
    return data, contact


def _message_ids(session: Session, address: str) -> list[int]:
    P = models.Participant
    key = kept.address_key(address)
    ids = set(session.scalars(sa.select(P.message_id).where(sa.func.lower(P.email) == key)))
    ids |= set(
        session.scalars(sa.select(Message.id).where(sa.func.lower(Message.from_email) == key))
    )
    return sorted(ids)


def _links(
    session: Session, message_ids: list[int], contact: models.Contact | None
) -> list[dict[str, Any]]:
    L = models.Link
    found = sa.or_(L.message_id.in_(message_ids or [-1]))
    if contact is not None:
        found = sa.or_(found, sa.and_(L.target_kind == "contact", L.target_id == contact.id))
    cols = ("id", "message_id", "thread_id", "target_kind", "target_id", "method", "explanation")
    return [
        _row(link, *cols, "created_by", "created_at")
        for link in session.scalars(sa.select(L).where(found))
    ]


def _reminders(
    session: Session, address: str, threads: set[int], contact: models.Contact | None
) -> list[dict[str, Any]]:
    R = models.Reminder
    about = [
        sa.func.lower(R.contact_email) == kept.address_key(address),
        R.thread_id.in_(threads or {-1}),
    ]
    if contact is not None:
        about.append(R.contact_id == contact.id)
    cols = ("id", "thread_id", "kind", "status", "due_at", "reason", "contact_email", "created_at")
    return [_row(r, *cols) for r in session.scalars(sa.select(R).where(sa.or_(*about)))]


def _write(zf: zipfile.ZipFile, name: str, data: object) -> None:
    zf.writestr(name, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def export(session: Session, address: str, output: Path, actor: str) -> ExportSummary:
    """Write the zip (see the module docstring) to `output`, mode 0600, and audit it.
    Raises `PrivacyError` for an address that is none or a file that cannot be written."""
    if "@" not in address:
        raise privacy.PrivacyError(f"{address!r} is not an e-mail address; give e.g. jane@acme.fr")
    person, contact = _person(session, address)
    ids = _message_ids(session, address)
    digest = kept.address_hash(session, address)
    targets = [privacy.person_target(digest)] + ([f"contact:{contact.id}"] if contact else [])
    entries = privacy.audit_entries(session, targets=targets, limit=100000)
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise privacy.PrivacyError(
            f"cannot write {output}: {exc.strerror}; choose another --output"
        ) from exc
    os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
    raw_files, threads = 0, set()
    with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        _write(zf, "person.json", person)
        for mid in ids:
            message = session.get(Message, mid)
            assert message is not None
            if message.thread_id is not None:
                threads.add(message.thread_id)
            detail = queries.message_detail(session, message)
            detail["stored_as"] = message.stored_as
            _write(zf, f"messages/{mid}.json", detail)
            raw = queries.raw_bytes(session, message)
            if raw is not None:
                zf.writestr(f"messages/{mid}.eml", raw)
                raw_files += 1
        links = _links(session, ids, contact)
        reminders = _reminders(session, address, threads, contact)
        _write(zf, "links.json", links)
        _write(zf, "reminders.json", reminders)
        _write(zf, "audit.json", [asdict(e) for e in entries])
    summary = ExportSummary(
        str(output), len(ids), raw_files, len(links), len(reminders), len(entries),
        contact.id if contact else None,
    )  # fmt: skip
    counts = {k: v for k, v in asdict(summary).items() if k != "path"}
    privacy.record_read(session, actor, "privacy.export", privacy.person_target(digest), counts)
    return summary
