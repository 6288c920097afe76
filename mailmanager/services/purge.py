"""Deleting stored messages and what hangs on them (shared by erasure and retention),
contacts, and addresses quoted in explanations (`services.privacy`). The provider's
mailboxes are never touched."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store
from mailmanager.db.models import Message
from mailmanager.sync import threadstore


def overwrite_deleted(session: Session) -> None:
    """On SQLite, make this connection zero what it deletes (`PRAGMA secure_delete`):
    otherwise erased mail would linger in the file's free pages until overwritten."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sa.text("PRAGMA secure_delete = ON"))


@dataclass
class Deleted:
    messages: int = 0
    threads: int = 0
    raw: int = 0
    locations: int = 0
    reminders: int = 0


def delete_messages(session: Session, ids: Collection[int], reminders: str) -> Deleted:
    """Delete these messages and what hangs on them; threads left empty are deleted, and
    their reminders deleted (`reminders="delete"`, erasure) or cancelled and detached
    (`"cancel"`, retention). Threads that keep messages get their summaries refreshed."""
    out = Deleted()
    M, R = store.table(Message), store.table(models.Reminder)
    threads: set[int] = set()
    shas: set[str] = set()
    for chunk in store.chunks(sorted(ids)):
        for tid, sha in session.execute(
            sa.select(M.c.thread_id, M.c.sha256).where(M.c.id.in_(chunk))
        ):
            if tid is not None:
                threads.add(tid)
            shas.add(sha)
        for model in (models.MessageLocation, models.Participant):
            res = session.execute(sa.delete(model).where(model.message_id.in_(chunk)))
            if model is models.MessageLocation:
                out.locations += res.rowcount  # type: ignore[attr-defined]
        # The trigger `linktriggers` deletes their links and matcher verdicts.
        out.messages += session.execute(sa.delete(M).where(M.c.id.in_(chunk))).rowcount  # type: ignore[attr-defined]
    for chunk in store.chunks(sorted(shas)):
        used = set(session.scalars(sa.select(M.c.sha256).where(M.c.sha256.in_(chunk))))
        gone = [s for s in chunk if s not in used]
        if gone:
            res = session.execute(
                sa.delete(models.MessageRaw).where(models.MessageRaw.sha256.in_(gone))
            )
            out.raw += res.rowcount  # type: ignore[attr-defined]
    alive = set(session.scalars(sa.select(M.c.thread_id).where(M.c.thread_id.in_(threads))))
    empty = sorted(threads - alive)
    for chunk in store.chunks(empty):
        if reminders == "delete":
            res = session.execute(sa.delete(R).where(R.c.thread_id.in_(chunk)))
        else:
            res = session.execute(
                sa.update(R)
                .where(R.c.thread_id.in_(chunk))
                .values(
                    thread_id=None,
                    status=sa.case(
                        (R.c.status.in_(("pending", "sent", "snoozed")), "cancelled"),
                        else_=R.c.status,
                    ),
                )
            )
        out.reminders += res.rowcount  # type: ignore[attr-defined]
        checks = models.ReminderCheck
        session.execute(
            sa.delete(checks).where(checks.target_kind == "thread", checks.target_id.in_(chunk))
        )
        session.execute(sa.delete(models.Link).where(models.Link.thread_id.in_(chunk)))
        for table in (models.ThreadNode, models.ReviewItem, models.PendingThread):
            t = store.table(table)
            session.execute(sa.delete(t).where(t.c.thread_id.in_(chunk)))
        res = session.execute(sa.delete(models.Thread).where(models.Thread.id.in_(chunk)))
        out.threads += res.rowcount  # type: ignore[attr-defined]
    threadstore.refresh_summaries(session, sorted(alive))
    return out


# Free text that may quote an address: the matcher's and the reminders' explanations.
_EXPLANATIONS = (
    (models.Link, "explanation"),
    (models.MatchState, "detail"),
    (models.ReviewItem, "explanation"),
    (models.Reminder, "reason"),
)


def redact(session: Session, keys: Sequence[str]) -> None:
    """Replace the addresses in the stored explanations with "[erased]"."""
    for model, name in _EXPLANATIONS:
        t = store.table(model)
        col = t.c[name]
        for key in keys:
            session.execute(
                sa.update(t)
                .where(sa.func.lower(col).contains(key, autoescape=True))
                .values({name: sa.func.replace(sa.func.lower(col), key, "[erased]")})
            )


def delete_contacts(session: Session, ids: Sequence[int]) -> int:
    """Delete these contacts with their addresses, opportunity roles and links."""
    if not ids:
        return 0
    L, R = models.Link, store.table(models.Reminder)
    session.execute(sa.delete(L).where(L.target_kind == "contact", L.target_id.in_(ids)))
    session.execute(sa.update(R).where(R.c.contact_id.in_(ids)).values(contact_id=None))
    for model in (models.ContactEmail, models.OpportunityContact):
        session.execute(sa.delete(model).where(model.contact_id.in_(ids)))
    res = session.execute(sa.delete(models.Contact).where(models.Contact.id.in_(ids)))
    return int(res.rowcount)  # type: ignore[attr-defined]
