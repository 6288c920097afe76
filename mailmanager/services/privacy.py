"""Privacy by design (issue #16): erasure, private threads, retention and the read audit.

- `erase`: a person (an address, or a CRM contact and all their addresses) leaves the
  database: the messages where they are the only external participant are deleted (with
  their locations, participants, raw bytes, links, matcher verdicts; a thread left empty
  goes with its nodes, links and reminders), the other messages where they appear are
  scrubbed (their participant rows go; the raw bytes, which hold their address in headers
  and maybe quoted text, are dropped, as are the snippet and attachment names; the
  message is marked `scrubbed`), the contact goes with its addresses and links, and a
  tombstone (the keyed hash of each address, `sync.privacy`) makes every later sync drop or
  scrub their mail again. The provider's mailboxes are never touched (we are read-only).
  The audit log records what was done as counts, the person only as a hash.
- `set_private`: the owner of a mailbox holding a thread hides it from everybody else
  (`access.thread_is_private_for`).
- `apply_retention`: `[retention]` (`config.retention`), applied daily by the daemon.
- `record_read`: one audit entry per read of mail content or personal data.

A dry run does the whole work inside a savepoint and rolls it back, so what it reports is
exactly what the real run would do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.config import identity
from mailmanager.db import audit, models, searchindex, store
from mailmanager.db.models import Message
from mailmanager.errors import MailmanagerError
from mailmanager.mail import normalize
from mailmanager.services import purge
from mailmanager.sync import privacy as kept

log = logging.getLogger(__name__)

PRIVATE = "(private)"


class PrivacyError(MailmanagerError):
    """Raised when a privacy command cannot run as asked; the text says what to fix."""


def person_target(digest: str) -> str:
    """The audit target naming a person without their address: `person:<keyed hash>`."""
    return f"person:{digest}"


def record_read(
    session: Session, actor: str, action: str, target: str, detail: object = None
) -> None:
    """Audit one read of mail content or personal data (`messages show`, `threads show`,
    `timeline`, `privacy export`, `quarantine show --raw`): who, what, on what, when."""
    audit.record(session, actor, action, target, detail if detail is not None else {})


def record_read_apart(
    reading: Session, actor: str, action: str, target: str, detail: object = None
) -> None:
    """`record_read` in a transaction of its own, committed at once, beside the `reading`
    session's (a page's or an API request's read-only transaction). On SQLite a read
    transaction that then writes fails at once with SQLITE_BUSY_SNAPSHOT when another
    connection wrote meanwhile (`store.write_first`); a transaction that starts by writing
    waits its turn instead, and WAL lets it write while the read goes on."""
    with Session(reading.get_bind()) as s, s.begin():
        record_read(s, actor, action, target, detail)


@contextmanager
def _maybe_rolled_back(session: Session, dry_run: bool) -> Iterator[None]:
    savepoint = session.begin_nested()
    try:
        yield
    except BaseException:
        savepoint.rollback()
        raise
    session.flush()
    if dry_run:
        savepoint.rollback()
    else:
        savepoint.commit()


# --- erasure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EraseReport:
    """What an erasure did (or, dry, would do): counts only, the person as hashes."""

    address_hashes: tuple[str, ...]
    messages_deleted: int
    messages_scrubbed: int
    threads_deleted: int
    raw_deleted: int
    contacts_deleted: int
    reminders_deleted: int
    suggestions_deleted: int
    dry_run: bool

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and k != "dry_run"}


def _addresses_of(
    session: Session, address: str | None, contact_id: int | None
) -> tuple[list[str], list[int]]:
    """The addresses to erase and the contacts that go with them."""
    CE = models.ContactEmail
    contacts: set[int] = set()
    addresses: set[str] = set()
    if contact_id is not None:
        if session.get(models.Contact, contact_id) is None:
            raise PrivacyError(f"no contact {contact_id}; see `mailmanager contacts list`")
        contacts.add(contact_id)
    if address is not None:
        if "@" not in address:
            raise PrivacyError(f"{address!r} is not an e-mail address; give e.g. jane@acme.fr")
        addresses.add(kept.address_key(address))
        key = normalize.match_key(address) or kept.address_key(address)
        contacts.update(session.scalars(sa.select(CE.contact_id).where(CE.email == key)))
    for cid in contacts:
        addresses.update(
            kept.address_key(e)
            for e in session.scalars(sa.select(CE.email).where(CE.contact_id == cid))
        )
    return sorted(addresses), sorted(contacts)


def _messages_with(session: Session, keys: Sequence[str]) -> dict[int, list[str]]:
    """The messages where one of these addresses appears → all their participants."""
    P = models.Participant
    ids = set(session.scalars(sa.select(P.message_id).where(sa.func.lower(P.email).in_(keys))))
    ids |= set(
        session.scalars(sa.select(Message.id).where(sa.func.lower(Message.from_email).in_(keys)))
    )
    out: dict[int, list[str]] = {mid: [] for mid in ids}
    for chunk in store.chunks(sorted(ids)):
        for mid, email in session.execute(
            sa.select(P.message_id, P.email).where(P.message_id.in_(chunk))
        ):
            out[mid].append(email)
    return out


def _scrub(session: Session, ids: Sequence[int], keys: Sequence[str]) -> int:
    """Remove the person from these messages (see the module docstring)."""
    P, M = models.Participant, store.table(Message)
    shas: set[str] = set()
    for chunk in store.chunks(list(ids)):
        session.execute(
            sa.delete(P).where(P.message_id.in_(chunk), sa.func.lower(P.email).in_(keys))
        )
        session.execute(
            sa.update(M)
            .where(M.c.id.in_(chunk), sa.func.lower(M.c.from_email).in_(keys))
            .values(from_email="", from_name="")
        )
        for key in keys:  # a bounce names the failed recipients
            session.execute(
                sa.update(M).where(M.c.id.in_(chunk), M.c.bounce.contains(key)).values(bounce="")
            )
        shas.update(session.scalars(sa.select(M.c.sha256).where(M.c.id.in_(chunk))))
        session.execute(
            sa.update(M)
            .where(M.c.id.in_(chunk))
            .values(snippet="", attachments="", stored_as="scrubbed")
        )
    for chunk in store.chunks(sorted(shas)):
        session.execute(sa.delete(models.MessageRaw).where(models.MessageRaw.sha256.in_(chunk)))
    return len(ids)


def erase(
    session: Session,
    cfg: config_mod.Config,
    actor: str,
    address: str | None = None,
    contact_id: int | None = None,
    dry_run: bool = False,
) -> EraseReport:
    """Erase a person (see the module docstring). Raises `PrivacyError` when neither or
    an unknown contact is given."""
    if address is None and contact_id is None:
        raise PrivacyError("say whom to erase: --address ADDRESS or --contact ID")
    purge.overwrite_deleted(session)
    with _maybe_rolled_back(session, dry_run):
        keys, contacts = _addresses_of(session, address, contact_id)
        digest = kept.hasher(session)
        hashes = tuple(digest(k) for k in keys)
        ours = identity.of(cfg).is_ours
        erased_keys = set(keys)
        found = _messages_with(session, keys) if keys else {}
        theirs = [
            mid
            for mid, people in found.items()
            if kept.only_erased(people, lambda a: kept.address_key(a) in erased_keys, ours)
        ]
        shared = sorted(set(found) - set(theirs))
        deleted = purge.delete_messages(session, theirs, reminders="delete")
        scrubbed = _scrub(session, shared, keys)
        R = store.table(models.Reminder)
        session.execute(
            sa.update(R)
            .where(sa.func.lower(R.c.contact_email).in_(keys or [""]))
            .values(contact_email="")
        )
        contacts_deleted = purge.delete_contacts(session, contacts)
        purge.redact(session, keys)
        S = models.Suggestion
        match_keys = {normalize.match_key(k) or k for k in keys} | set(keys)
        res = session.execute(sa.delete(S).where(S.email.in_(sorted(match_keys) or [""])))
        store.insert_ignore(
            session,
            store.table(models.PrivacyTombstone),
            [{"address_hash": h, "created_at": models.utcnow()} for h in hashes],
        )
        report = EraseReport(
            address_hashes=hashes,
            messages_deleted=deleted.messages,
            messages_scrubbed=scrubbed,
            threads_deleted=deleted.threads,
            raw_deleted=deleted.raw,
            contacts_deleted=contacts_deleted,
            reminders_deleted=deleted.reminders,
            suggestions_deleted=res.rowcount,  # type: ignore[attr-defined]
            dry_run=dry_run,
        )
        for h in hashes:
            audit.record(session, actor, "privacy.erase", person_target(h), report.counts())
    if not dry_run:
        searchindex.forget_deleted(session.connection())  # the erased words leave the file
    log.info("erasure", extra={"action": "privacy_erase", "dry_run": dry_run, **report.counts()})
    return report


# --- private threads ---------------------------------------------------------------------------


def thread_mailbox_owners(session: Session, cfg: config_mod.Config, thread_id: int) -> set[str]:
    """The owners (configured users) of the mailboxes holding the thread's messages."""
    F, L, MB = models.Folder, models.MessageLocation, models.Mailbox
    names = set(
        session.scalars(
            sa.select(MB.name)
            .join(F, F.mailbox_id == MB.id)
            .join(L, L.folder_id == F.id)
            .join(Message, Message.id == L.message_id)
            .where(Message.thread_id == thread_id)
        )
    )
    return {mb.owner for mb in cfg.mailboxes if mb.name in names}


def set_private(
    session: Session, cfg: config_mod.Config, thread_id: int, user: str, private: bool, actor: str
) -> None:
    """Mark the thread private to `user` (or public again). Only the owner of a mailbox
    holding the thread may; a thread private to someone else stays theirs.
    Raises `PrivacyError` saying what to fix."""
    who = cfg.user(user)
    if who is None:
        raise PrivacyError(f"{user!r} is not a user; give the e-mail of one of the [[users]]")
    thread = session.get(models.Thread, thread_id)
    if thread is None:
        raise PrivacyError(f"no thread {thread_id}; see `mailmanager threads list`")
    owners = thread_mailbox_owners(session, cfg, thread_id)
    if who.email not in owners:
        raise PrivacyError(
            f"{who.email} owns no mailbox holding thread {thread_id}: only its mailboxes' "
            f"owners ({', '.join(sorted(owners)) or 'none'}) may change its privacy"
        )
    if thread.private_owner not in (None, who.email):
        raise PrivacyError(
            f"thread {thread_id} is private to another user; only they may change it"
        )
    thread.private_owner = who.email if private else None
    action = "thread.private" if private else "thread.public"
    audit.record(session, actor, action, f"thread:{thread_id}", {"user": who.email})


def private_owners(session: Session, thread_ids: Collection[int]) -> dict[int, str]:
    """Thread id → the user it is private to, for the private ones among `thread_ids`."""
    T = models.Thread
    out: dict[int, str] = {}
    for chunk in store.chunks(sorted(set(thread_ids))):
        rows = session.execute(
            sa.select(T.id, T.private_owner).where(T.id.in_(chunk), T.private_owner.is_not(None))
        )
        out.update({tid: str(owner) for tid, owner in rows})
    return out


def hidden_from(session: Session, viewer: str | None, thread_ids: Collection[int]) -> set[int]:
    """The threads among `thread_ids` private to someone other than `viewer`."""
    me = (viewer or "").strip().lower()
    return {tid for tid, owner in private_owners(session, thread_ids).items() if owner != me}


# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionReport:
    """What retention deleted (or, dry, would delete), per kind."""

    messages: int
    threads: int
    reminders_cancelled: int
    quarantine: int
    audit: int
    dry_run: bool


def apply_retention(
    session: Session, cfg: config_mod.Config, now: datetime, dry_run: bool = False
) -> RetentionReport:
    """Delete what `[retention]` says is too old at `now`: messages by their date (their
    arrival when undated), quarantined items, audit entries. The caller commits."""
    r = cfg.retention
    counts = {"messages": 0, "threads": 0, "reminders_cancelled": 0, "quarantine": 0, "audit": 0}
    purge.overwrite_deleted(session)
    with _maybe_rolled_back(session, dry_run):
        if r.messages_days is not None:
            cutoff = now - timedelta(days=r.messages_days)
            when = sa.func.coalesce(Message.sent_at, Message.created_at)
            old = list(session.scalars(sa.select(Message.id).where(when < cutoff)))
            gone = purge.delete_messages(session, old, reminders="cancel")
            counts.update(messages=gone.messages, threads=gone.threads)
            counts["reminders_cancelled"] = gone.reminders
        if r.quarantine_days is not None:
            q = models.Quarantine
            cutoff = now - timedelta(days=r.quarantine_days)
            res = session.execute(sa.delete(q).where(q.created_at < cutoff))
            counts["quarantine"] = res.rowcount  # type: ignore[attr-defined]
        if r.audit_days is not None:
            a = models.AuditLog
            res = session.execute(sa.delete(a).where(a.at < now - timedelta(days=r.audit_days)))
            counts["audit"] = res.rowcount  # type: ignore[attr-defined]
        if any(counts.values()):
            audit.record(session, "retention", "privacy.retention", "", counts)
    if counts["messages"] and not dry_run:
        searchindex.forget_deleted(session.connection())
    log.info("retention", extra={"action": "privacy_retention", "dry_run": dry_run, **counts})
    return RetentionReport(**counts, dry_run=dry_run)


# --- the audit log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: object


def audit_entries(
    session: Session,
    since: datetime | None = None,
    targets: Collection[str] | None = None,
    limit: int = 1000,
) -> list[AuditEntry]:
    """The audit log, newest first, from `since`, optionally only about `targets`."""
    a = models.AuditLog
    stmt = sa.select(a).order_by(a.at.desc(), a.id.desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(a.at >= since)
    if targets is not None:
        stmt = stmt.where(a.target.in_(targets))
    out = []
    for row in session.scalars(stmt):
        try:
            detail = json.loads(row.detail) if row.detail else None
        except ValueError:
            detail = row.detail
        out.append(AuditEntry(row.id, row.at, row.actor, row.action, row.target, detail))
    return out
