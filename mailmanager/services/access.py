"""Who is looking, and what they may see: the one place the web workspace and the API ask.

A `Viewer` is a configured user (`[[users]]`) with their role. Message **content** is
visible to the owners of the mailboxes that hold it and to those owners' managers (a user's
`manager` key names them); on a client record, other users see a colleague's thread as
`[web] visibility` says (`full`, `metadata`: date, direction, participants, subject; `none`).
Admins manage settings and connectors; they read content only by the same rule.

`level` is that rule, for one message: "content", "metadata" or "none". Every page and
download asks it through `levels` / `require` (`services.threadview`, `services.records`):
a message is held in mailboxes (`MessageLocation` → `Folder` → `Mailbox.owner_id`), and
"on a client record" means linked to a contact, company or opportunity. Mail on no record
(a friend, an internal note) is never shown to a colleague, whatever `visibility` says.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models, store
from mailmanager.db.models import Folder, Link, Mailbox, Message, MessageLocation, Thread
from mailmanager.errors import MailmanagerError

log = logging.getLogger(__name__)

ROLES = ("salesperson", "manager", "admin")


@dataclass(frozen=True)
class Viewer:
    """A signed-in user. `sees_content_of` holds the mailbox owners whose mail content this
    viewer may read: themself, and the users they manage."""

    email: str
    name: str
    role: str
    locale: str
    timezone: str
    sees_content_of: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_manager(self) -> bool:
        return self.role == "manager" or bool(self.sees_content_of - {self.email})


def viewer_for(cfg: config_mod.Config, email: str) -> Viewer | None:
    """The viewer for `email` (or one of a user's aliases), None when no user has it."""
    user = cfg.user(email)
    if user is None:
        return None
    reports = {u.email for u in cfg.users if u.manager == user.email}
    return Viewer(
        email=user.email,
        name=user.name,
        role=user.role,
        locale=user.locale,
        timezone=user.timezone,
        sees_content_of=frozenset({user.email, *reports}),
    )


# --- what a viewer may do with a message: the one rule every page and download asks -----------

Level = Literal["none", "metadata", "content"]
_RANK: dict[str, int] = {"none": 0, "metadata": 1, "content": 2}


class AccessError(MailmanagerError):
    """Raised when a viewer asks for a message or thread they may not see. `exists` is
    False when they may not even know it exists (or it does not): pages answer 404; True
    when they may see that it exists but not this (e.g. its content): pages answer 403."""

    def __init__(self, message: str, exists: bool) -> None:
        super().__init__(message)
        self.exists = exists


def visibility(cfg: config_mod.Config) -> str:
    """`[web] visibility`: what others see of a colleague's thread on a client record."""
    return cfg.web.visibility


def level(
    viewer: Viewer,
    owners: Collection[str],
    on_record: bool,
    shown: str,
    private_owner: str | None = None,
) -> Level:
    """What `viewer` may see of a message held in the mailboxes of `owners` (user emails):
    its content when they own one of those mailboxes or manage an owner; otherwise, only
    when the message is linked to a client record (`on_record`), what the org's
    `visibility` (`shown`) says: everything (`full`), date, direction, participants and
    subject (`metadata`), or nothing (`none`). A thread marked private by a user (issue
    #16) is seen by that user alone. Admins get nothing more."""
    if private_owner is not None:
        return "content" if private_owner == viewer.email else "none"
    if viewer.sees_content_of.intersection(owners):
        return "content"
    if not on_record or shown not in ("full", "metadata"):
        return "none"
    return "content" if shown == "full" else "metadata"


MAX_ID = 2**31 - 1  # ids are 32-bit integers: a larger one in a URL names nothing


def row_id(value: int) -> int | None:
    """`value` when it can be a row's id, else None (PostgreSQL refuses, and SQLite
    cannot bind, a larger integer: such a URL gets "not found", not an error)."""
    return value if 0 < value <= MAX_ID else None


def at_least(found: Level, needed: Level) -> bool:
    return _RANK[found] >= _RANK[needed]


def mailbox_owners(session: Session, message_ids: Collection[int]) -> dict[int, set[str]]:
    """Message id → the emails of the users owning a mailbox that holds it."""
    out: dict[int, set[str]] = {}
    for part in store.chunks(sorted(set(message_ids))):
        for mid, email in session.execute(
            sa.select(MessageLocation.message_id, models.User.email)
            .join(Folder, Folder.id == MessageLocation.folder_id)
            .join(Mailbox, Mailbox.id == Folder.mailbox_id)
            .join(models.User, models.User.id == Mailbox.owner_id)
            .where(MessageLocation.message_id.in_(part))
        ):
            out.setdefault(mid, set()).add(email)
    return out


def on_records(session: Session, message_ids: Collection[int]) -> set[int]:
    """The messages linked to a contact, company or opportunity: by a link of their own,
    or by a link made by hand on their whole thread."""
    found: set[int | None] = set()
    for part in store.chunks(sorted(set(message_ids))):
        found.update(
            session.scalars(
                sa.select(Link.message_id).where(
                    Link.message_id.in_(part), ~Link.tombstone, Link.target_kind != "any"
                )
            ).all()
        )
        by_thread = sa.select(Link.thread_id).where(
            models.manual_links(),
            Link.message_id.is_(None),
            ~Link.tombstone,
            Link.target_kind != "any",
        )
        found.update(
            session.scalars(
                sa.select(Message.id).where(Message.id.in_(part), Message.thread_id.in_(by_thread))
            ).all()
        )
    return {mid for mid in found if mid is not None}


def levels(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    message_ids: Collection[int],
    all_on_records: bool = False,
) -> dict[int, Level]:
    """`level` of each message (unknown ids are left out). `all_on_records`: the caller
    found them through a record's links (`on_records` is then not asked again)."""
    ids = sorted(set(message_ids))
    owners = mailbox_owners(session, ids)
    linked = set(ids) if all_on_records else on_records(session, ids)
    # The owner by a subquery per message (a primary-key lookup), not an outer join: for
    # the join PostgreSQL picks a hash join that reads the whole threads table per chunk.
    owner = sa.select(Thread.private_owner).where(Thread.id == Message.thread_id)
    private: dict[int, str | None] = {}
    for part in store.chunks(ids):
        private.update(
            session.execute(
                sa.select(Message.id, owner.scalar_subquery()).where(Message.id.in_(part))
            ).all()
        )
    shown = visibility(cfg)
    return {
        mid: level(viewer, owners.get(mid, ()), mid in linked, shown, owner)
        for mid, owner in private.items()
    }


def content_folders(session: Session, viewer: Viewer) -> list[int]:
    """The folders of the mailboxes of the users whose content `viewer` reads."""
    owners = sorted(viewer.sees_content_of)
    return list(session.scalars(_FOLDERS_OF, {"owners": owners}))


_FOLDERS_OF = (  # built once: `content_folders` runs on every page of threads
    sa.select(Folder.id)
    .join(Mailbox, Mailbox.id == Folder.mailbox_id)
    .join(models.User, models.User.id == Mailbox.owner_id)
    .where(models.User.email.in_(sa.bindparam("owners", expanding=True)))
)


@dataclass(frozen=True)
class Seen:
    """A message of `thread_levels_of`, with what a list shows of it."""

    id: int
    thread_id: int
    sent_at: datetime | None
    subject: str
    level: Level


def thread_levels_of(
    session: Session,
    cfg: config_mod.Config,
    viewer: Viewer,
    thread_ids: Sequence[int],
    folders: list[int] | None = None,
) -> list[Seen]:
    """`level` of every message of these threads, in one query (`levels` asks four per
    500 messages, which made most of the API's thread list): per message, whether a
    folder of `content_folders` holds it (`folders`: those, when the caller has them
    already), whether it is on a record (`on_records`), and its thread's private owner;
    `level` judges."""
    if folders is None:
        folders = content_folders(session, viewer)
    postgres = store.is_postgres(session)
    query = _levels_query(postgres, bool(folders))
    shown = visibility(cfg)
    out: list[Seen] = []
    for part in store.parts(session, sorted(set(thread_ids))):
        values = {"threads": store.ids_param(postgres, part), "folders": folders}
        for mid, tid, sent, subject, private, held_here, on_record in session.execute(
            query, values
        ):
            owners = viewer.sees_content_of if held_here else ()
            found = level(viewer, owners, bool(on_record), shown, private)
            out.append(Seen(mid, tid, sent, subject or "", found))
    return out


@functools.cache
def _levels_query(
    postgres: bool, any_folder: bool
) -> sa.Select[int, int, datetime | None, str, str | None, bool, bool]:
    """`thread_levels_of`'s query, built once per backend (the viewer's folders and the
    threads are its parameters `folders` and `threads`)."""
    m = Message
    # `+ 0`: reach the locations by message, never by folder (SQLite would read the
    # viewer's whole folder for each message).
    held = sa.select(MessageLocation.id).where(
        MessageLocation.message_id == m.id,
        (MessageLocation.folder_id + 0).in_(sa.bindparam("folders", expanding=True)),
    )
    wanted = (~Link.tombstone, Link.target_kind != "any")
    # `OFFSET 0`: a probe of the links' index per message. PostgreSQL otherwise may hash
    # every link of the database once per request (15,000 in the benchmark's world: 2.8 ms
    # a page, against 0.8 so).
    linked = sa.or_(
        sa.exists(sa.select(Link.id).where(Link.message_id == m.id, *wanted).offset(0)),
        sa.exists(
            sa.select(Link.id)
            .where(
                models.manual_links(),
                Link.thread_id == m.thread_id,
                Link.message_id.is_(None),
                *wanted,
            )
            .offset(0)
        ),
    )
    mine = sa.exists(held) if any_folder else sa.false()
    return (
        sa.select(m.id, Thread.id, m.sent_at, m.subject, Thread.private_owner, mine, linked)
        .join(Thread, Thread.id == m.thread_id)
        .where(store.among_param(postgres, m.thread_id, "threads"))
    )


def require(
    session: Session, cfg: config_mod.Config, viewer: Viewer, message_id: int, needed: Level
) -> Message:
    """The message, when `viewer` may see it at `needed` level. Raises AccessError: not
    found (or not to be known of) when they see nothing of it, refused otherwise."""
    message = session.get(Message, message_id) if row_id(message_id) else None
    found = (
        levels(session, cfg, viewer, [message_id]).get(message_id, "none") if message else "none"
    )
    if message is None or found == "none":
        log.info("message refused", extra={"action": "access_refused", "message": message_id})
        raise AccessError(f"no message #{message_id}", exists=False)
    if not at_least(found, needed):
        log.info("content refused", extra={"action": "access_refused", "message": message_id})
        raise AccessError(
            f"message #{message_id} belongs to a colleague's mailbox: its content is for them "
            "and their manager",
            exists=True,
        )
    return message


def thread_levels(
    session: Session, cfg: config_mod.Config, viewer: Viewer, thread_id: int
) -> dict[int, Level]:
    """`level` of each message of a thread."""
    if row_id(thread_id) is None:
        return {}
    ids = session.scalars(sa.select(Message.id).where(Message.thread_id == thread_id)).all()
    return levels(session, cfg, viewer, ids)


def may_curate(session: Session, cfg: config_mod.Config, viewer: Viewer, thread_id: int) -> bool:
    """Whether `viewer` may link, unlink or review a thread: they read the content of at
    least one of its messages (their own mail, or mail of someone they manage)."""
    return any(v == "content" for v in thread_levels(session, cfg, viewer, thread_id).values())


def thread_is_private_for(session: Session, viewer_email: str | None, thread_id: int) -> bool:
    """The thread is private (issue #16: `mailmanager threads private`) to a user other than
    `viewer_email` (None: nobody in particular, e.g. the admin CLI): it must not be shown."""
    owner = session.scalar(sa.select(Thread.private_owner).where(Thread.id == thread_id))
    return owner is not None and owner != (viewer_email or "").strip().lower()


def require_curator(
    session: Session, cfg: config_mod.Config, viewer: Viewer, thread_id: int
) -> None:
    """Raise AccessError unless `viewer` may curate the thread (`may_curate`): refused (403)
    when they see something of it, not found (404) when they see nothing."""
    found = thread_levels(session, cfg, viewer, thread_id)
    if any(v == "content" for v in found.values()):
        return
    seen = any(v != "none" for v in found.values())
    raise AccessError(
        f"thread #{thread_id} is in a colleague's mailbox: they (or their manager) link it"
        if seen
        else f"no thread #{thread_id}",
        exists=seen,
    )
