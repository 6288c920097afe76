"""The data model (SQLAlchemy 2 typed ORM). Schema changes go through Alembic migrations.

Identity rules that make every write idempotent:
- a Message is keyed by `key`: its normalised Message-ID, or, when another message already
  uses that Message-ID with different content (other raw bytes, and another sender, date,
  subject or body: `mail.copies`), the Message-ID plus a hash suffix;
- a MessageLocation is unique per (folder, provider id);
- a ThreadNode maps every Message-ID ever seen (as a message or only as a reference, or a
  provider thread hint) to its thread, so threads are the connected components of the
  Message-ID / In-Reply-To / References graph whatever the arrival order;
- a Reminder is unique per (thread, kind, cycle); an OutboxEmail per idempotency key.
Times are stored in UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Select,
    String,
    Text,
    TextClause,
    TypeDecorator,
    UniqueConstraint,
    and_,
    select,
    true,
    union_all,
)
from sqlalchemy import text as sa_text
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column, validates

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones, PostgreSQL does."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# --- people and CRM records -------------------------------------------------------------


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    locale: Mapped[str] = mapped_column(String(8), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    holiday_country: Mapped[str | None] = mapped_column(String(8))
    holiday_subdivision: Mapped[str | None] = mapped_column(String(16))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def name_key(name: str) -> str:
    """A company name as compared: case-folded, spaces collapsed ("ÉTS  Martin" = "éts martin")."""
    return " ".join(name.split()).casefold()


def _name_key_default(context: Any) -> str:
    return name_key(str(context.get_current_parameters().get("name") or ""))


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), index=True)
    # Kept in step with `name` (insert default + validator): SQLite's lower() folds ASCII only.
    name_key: Mapped[str] = mapped_column(String(300), index=True, default=_name_key_default)
    # The CRM a record comes from and its id there (migration 0023): unique per source.
    source: Mapped[str] = mapped_column(String(32), default="manual", server_default="manual")
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_companies_updated_at_id", "updated_at", "id"),  # the API's pages
    )

    @validates("name")
    def _set_name_key(self, _key: str, value: str) -> str:
        self.name_key = name_key(value)
        return value


class CompanyDomain(Base):
    __tablename__ = "company_domains"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    domain: Mapped[str] = mapped_column(String(253), unique=True)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default="prospect")
    phone: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(32), default="manual")
    external_id: Mapped[str | None] = mapped_column(String(200))  # unique per source
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_contacts_updated_at_id", "updated_at", "id"),
    )


class ContactEmail(Base):
    __tablename__ = "contact_emails"
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalize.match_key
    display: Mapped[str] = mapped_column(String(320), default="")  # as entered or imported
    invalid_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Opportunity(Base):
    __tablename__ = "opportunities"
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    stage: Mapped[str] = mapped_column(String(16), default="open")
    pipeline_step: Mapped[str] = mapped_column(String(64), default="")
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    expected_close: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(32), default="manual", server_default="manual")
    external_id: Mapped[str | None] = mapped_column(String(200))  # unique per source
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_opportunities_updated_at_id", "updated_at", "id"),
    )


class CrmGeneration(Base):
    """One row whose token changes, by database triggers, whenever the CRM data the matcher
    reads changes (see `mailmanager.crmcache`): a cached copy of the CRM is current while the
    token it was loaded with is still the stored one."""

    __tablename__ = "crm_generation"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    token: Mapped[int] = mapped_column(BigInteger, default=0)


class OpportunityContact(Base):
    __tablename__ = "opportunity_contacts"
    opportunity_id: Mapped[int] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )


# --- mailboxes and sync state ---------------------------------------------------------------


class Mailbox(Base):
    __tablename__ = "mailboxes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    connector: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every message the provider had before this instant has been synced: reminders wait
    # for it to pass their due time before they are sent.
    synced_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("mailbox_id", "remote_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    remote_id: Mapped[str] = mapped_column(String(1000))
    name: Mapped[str] = mapped_column(String(1000), default="")
    role: Mapped[str] = mapped_column(String(16), default="other")
    cursor: Mapped[str | None] = mapped_column(Text)
    # Set while a full scan runs; when it ends, locations not seen since are removed.
    rescan_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    present: Mapped[bool] = mapped_column(Boolean, default=True)


# --- messages and threads ---------------------------------------------------------------------


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (
        # Search (schema 0017) lists the private threads: few, so the index stays small.
        Index(
            "ix_threads_private_owner",
            "private_owner",
            sqlite_where=sa_text("private_owner IS NOT NULL"),
            postgresql_where=sa_text("private_owner IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_normalized: Mapped[str] = mapped_column(String(500), default="", index=True)
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # "real" = not an auto-reply, bounce or list message.
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_direction: Mapped[str | None] = mapped_column(String(16))
    last_message_id: Mapped[int | None] = mapped_column(Integer)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Reminders (issue #5): "always" / "never" overrides the expects-a-reply heuristic.
    expect_reply: Mapped[str | None] = mapped_column(String(8))
    # Privacy (issue #16): the user who marked the thread private (only they see it), or NULL.
    private_owner: Mapped[str | None] = mapped_column(String(320))


class ThreadNode(Base):
    """A Message-ID (or `hint:<mailbox>:<provider thread id>`) and the thread it belongs to."""

    __tablename__ = "thread_nodes"
    node: Mapped[str] = mapped_column(String(1000), primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"), index=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Which mailing lists we know (the reminder rules: a post to a list awaits no
        # reply): only list mail has a List-Id, so the index stays small.
        Index(
            "ix_messages_list_id",
            "list_id",
            sqlite_where=sa_text("list_id IS NOT NULL"),
            postgresql_where=sa_text("list_id IS NOT NULL"),
        ),
        # The suggestions' writer reads every bounce on each batch (schema 0021): bounces
        # are few, so a partial index finds them without reading the messages table. Each
        # dialect's predicate is written as its queries spell `Message.is_bounce`.
        Index(
            "ix_messages_bounces",
            "id",
            sqlite_where=sa_text("is_bounce = 1"),
            postgresql_where=sa_text("is_bounce"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(1000), unique=True)
    message_id: Mapped[str] = mapped_column(String(1000), index=True)
    message_id_synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_normalized: Mapped[str] = mapped_column(String(500), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    date_source: Mapped[str] = mapped_column(String(16), default="header")
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    from_email: Mapped[str] = mapped_column(String(320), default="", index=True)
    from_name: Mapped[str] = mapped_column(String(300), default="")
    is_auto_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    is_out_of_office: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bulk: Mapped[bool] = mapped_column(Boolean, default=False)
    is_bounce: Mapped[bool] = mapped_column(Boolean, default=False)
    is_calendar: Mapped[bool] = mapped_column(Boolean, default=False)
    list_id: Mapped[str | None] = mapped_column(String(300))
    snippet: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    # `copies.body_digest` of its raw bytes: a message with this one's Message-ID, sender,
    # date and subject is a copy of it only with the same body (schema 0015; NULL before).
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    in_reply_to: Mapped[str] = mapped_column(Text, default="")  # space-separated ids
    references: Mapped[str] = mapped_column(Text, default="")  # space-separated ids
    attachments: Mapped[str] = mapped_column(Text, default="")  # JSON list or ""
    bounce: Mapped[str] = mapped_column(Text, default="")  # JSON object or ""
    defects: Mapped[str] = mapped_column(Text, default="")  # space-separated names
    # What the reminder rules read in the body (`parsing.ParsedMessage.text_facts`), kept at
    # ingest: does it expect a reply (and why), and for an absence notice the day its
    # sender is back. The reason is NULL when the body was not read (list mail, bounces,
    # other auto-replies) and on messages stored before schema 0011.
    expects_reply: Mapped[bool | None] = mapped_column(Boolean)
    expects_reply_reason: Mapped[str | None] = mapped_column(String(40))
    return_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What was kept of it (issue #16, `sync.privacy`): full, headers (no body), metadata (no
    # subject, no body) or scrubbed (an erased person's address removed, raw bytes dropped).
    stored_as: Mapped[str] = mapped_column(String(16), default="full", server_default="full")


class MessageRaw(Base):
    """The raw bytes, content-addressed, so messages can be re-parsed after parser fixes."""

    __tablename__ = "message_raw"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MessageLocation(Base):
    __tablename__ = "message_locations"
    __table_args__ = (UniqueConstraint("folder_id", "provider_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    provider_id: Mapped[str] = mapped_column(Text)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    flags: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[str] = mapped_column(Text, default="")
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (Index("ix_participants_email", "email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(8))  # from, sender, to, cc, bcc, reply_to
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(300), default="")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))


class Quarantine(Base):
    """A fetched item that could not be stored as a message, with its reason and bytes."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("folder_id", "provider_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    provider_id: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- links, reminders, outbox -----------------------------------------------------------------


# The predicate of `ix_links_manual` (see `Link`).
MANUAL_LINKS = "tombstone OR created_by <> 'matcher'"


class Link(Base):
    """A message or thread linked to a contact, company or opportunity, and why.

    `tombstone=True` records a manual unlink: the matcher never re-creates that link.

    The matcher writes message-level rows only (`created_by = "matcher"`, no tombstone);
    thread-level rows (`message_id` NULL) are manual links and tombstones. Only manual
    rows are indexed by thread (`ix_links_manual`, whose predicate `MANUAL_LINKS` a query
    must repeat word for word for SQLite to use it: `manual_links`); the matcher's rows
    are found by message. `message_id` and `thread_id` carry no foreign key: these are
    derived rows written by the hundred thousand, and each key check cost PostgreSQL a
    row lock on the message or thread (about 40% of the matcher's insert time). Messages
    are never deleted by mailmanager, thread merges re-point links first
    (`threadstore.merge`), and a trigger (`linktriggers`) still deletes a deleted
    message's links and verdict.

    Finding the mail of a record goes through `anchor` rows: for each thread and target,
    at least one row linking them has `anchor` set (the matcher sets it on the row of
    the thread's first message with that target, and clears it on the others; every
    other row, manual ones included, is created anchored). Only anchors are indexed by
    target (`ix_links_target`), a third of the rows the matcher writes: the record's
    threads come from the index, their messages' rows from `messages` (see
    `matching.run`). Extra anchors (after a thread merge) are harmless; a missing one
    would hide mail, so a deleted message's thread gets anchors back (`linktriggers`).
    """

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("message_id", "thread_id", "target_kind", "target_id"),
        Index(
            "ix_links_target",
            "target_kind",
            "target_id",
            sqlite_where=sa_text("anchor"),
            postgresql_where=sa_text("anchor"),
        ),
        Index(
            "ix_links_manual",
            "thread_id",
            sqlite_where=sa_text(MANUAL_LINKS),
            postgresql_where=sa_text(MANUAL_LINKS),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # Looked up by the unique constraint, which starts with it.
    message_id: Mapped[int | None] = mapped_column(Integer)
    thread_id: Mapped[int | None] = mapped_column(Integer)
    target_kind: Mapped[str] = mapped_column(String(16))  # contact, company, opportunity
    target_id: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(32))  # address, domain, thread, subject_tag, manual
    confidence: Mapped[float] = mapped_column(Numeric(4, 3), default=1)
    explanation: Mapped[str] = mapped_column(Text, default="")
    tombstone: Mapped[bool] = mapped_column(Boolean, default=False)
    anchor: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_by: Mapped[str] = mapped_column(String(200), default="matcher")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reminder(Base):
    """A follow-up reminder; see `mailmanager.reminders` for its lifecycle.

    `cycle` names the episode: for a thread, the id of the message the reminder is about
    (our unanswered message, the contact's unanswered one), so a new follow-up starts a new
    cycle and a thread merge never makes two rows collide; for a dormant opportunity or a
    client at risk, the minute (Unix time // 60) of the last exchange.
    Reminders about a thread are unique per (thread, kind, cycle); the others (dormant
    opportunity, client at risk) per (target, kind, cycle), target being e.g. "company:3".
    """

    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint("thread_id", "kind", "cycle"),
        UniqueConstraint("target", "kind", "cycle"),
        Index("ix_reminders_status_due", "status", "due_at"),
        # My follow-ups: one user's open reminders, soonest due first (migration 0018)
        Index("ix_reminders_user_status_due", "user_id", "status", "due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"))
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("opportunities.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    rule: Mapped[str] = mapped_column(String(200), default="")
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Issue #5 additions. `message_id`: the message it is about (no foreign key: the
    # reminder outlives an erased message); `contact_email` even without a CRM contact.
    target: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(Integer)
    contact_email: Mapped[str] = mapped_column(String(320), default="")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    escalated_from_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEmail(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    message_id_header: Mapped[str] = mapped_column(String(300))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Notifications (issue #5): "host:pid:nonce" of the worker sending it now, when the
    # attempt began, and whether a crash may have left a copy at the server (see outbox.py).
    recipient_name: Mapped[str] = mapped_column(String(300), default="")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)


# --- runs and audit ------------------------------------------------------------------------------


class SyncRun(Base):
    __tablename__ = "sync_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(
        ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    new_messages: Mapped[int] = mapped_column(Integer, default=0)
    new_locations: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # The worker ("host:pid", `leases.WORKER_ID`) that ran it; NULL for runs before 0016.
    worker: Mapped[str | None] = mapped_column(String(200))


class WorkerHost(Base):
    """Where a procrastinate worker of `mailmanager run` runs (production mode): `id` is its
    `procrastinate_workers.id`, whose row has only the heartbeat; `status` joins the two.
    Written once the worker is registered, deleted at its clean stop; a killed worker's row
    stays (shown stale by its heartbeat) until procrastinate prunes that worker."""

    __tablename__ = "worker_hosts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))  # "host:pid", "host:pid:watch"
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(200))  # comma-separated
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the process's start


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class PrivacyTombstone(Base):
    """An erased person (`mailmanager privacy erase`), by the keyed hash of their address
    (`sync.privacy.address_hash`): a later sync drops or scrubs their messages again."""

    __tablename__ = "privacy_tombstones"
    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PrivacySalt(Base):
    """The per-installation key of the address hashes (one row, made on first use)."""

    __tablename__ = "privacy_salt"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    salt: Mapped[str] = mapped_column(String(64))


# --- notifications (issue #5: reminder digests and immediate reminder emails) ------------------


class Notification(Base):
    """One digest slot (or one immediate reminder mail) of a user, consumed exactly once.

    Written in the transaction that marks its reminders sent and enqueues its OutboxEmail;
    unique per (user, slot), so a slot never yields two emails, and an empty slot is
    recorded too (reminders that fall due after it wait for the next slot).
    """

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("user_id", "slot"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # "digest:2026-11-03T08:30" (user's local time), "manual:<UTC minute>", "immediate:<id>"
    slot: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # digest, immediate
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    reminder_ids: Mapped[str] = mapped_column(Text, default="")  # space-separated
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- reminders (issue #5: follow-up rules, business time, lifecycle) ---------------------------


class ReminderCheck(Base):
    """When a thread, open opportunity or client must next be re-evaluated for reminders.

    `target_kind` is thread, opportunity, contact or company. A NULL `check_at` means
    "evaluated; nothing due until it changes". Evaluation passes read only the rows whose
    time has come, so their cost follows what changes, not the size of the mailbox.
    """

    __tablename__ = "reminder_checks"
    target_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    target_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class ReminderState(Base):
    """Named instants kept between evaluation passes (e.g. up to when thread changes were
    looked at)."""

    __tablename__ = "reminder_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- OAuth tokens (issue #6: cloud connectors) --------------------------------------------------


class OAuthToken(Base):
    """A connector's OAuth token (e.g. a refresh token) for one mailbox, Fernet-encrypted.

    Keyed by mailbox *name*, not id: `mailmanager auth` stores a token before the mailbox's
    first sync creates its row. See `mailmanager.tokens`.
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (UniqueConstraint("mailbox", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(100))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- matcher (issue #4: explainable links, review queue, suggestions) ---------------------------


class MatchState(Base):
    """The matcher's last verdict on a message: `reason` is "linked" or why it is not.

    Reason codes: linked, unlinked_manually, noise_auto_reply, noise_bounce, noise_bulk,
    internal, blocklisted, no_external, system_sender, unknown (see `mailmanager.matcher`).
    """

    __tablename__ = "match_states"
    # No foreign key, as for `Link` (and deleted with its message by `linktriggers`).
    message_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Not indexed: every read is by message (one index write fewer per verdict).
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def anchored_threads(
    kind: str,
    ids: Collection[int],
    among: Callable[[Any, Collection[int]], ColumnElement[bool]] | None = None,
) -> Select[int | None]:
    """The threads linked to these targets (kind "contact", "company" or "opportunity"),
    from the anchors' index. `among(column, ids)` makes the test on the ids (default
    `IN`; `store.among` makes it one array parameter on PostgreSQL)."""
    a = aliased(Link, name="anchors")
    test = among(a.target_id, ids) if among is not None else a.target_id.in_(ids)
    return select(a.thread_id).where(sa_text("anchors.anchor"), a.target_kind == kind, test)


def linking(kind: str, ids: Collection[int]) -> ColumnElement[bool]:
    """`links.id IN (...)`: the rows that link these targets (tombstones included), found
    as the anchors (from the index), then the other rows on messages of the anchors'
    threads. Plain `target_id IN ...` would scan the table: only anchors are indexed by
    target."""
    a = aliased(Link, name="linking")
    same = and_(a.target_kind == kind, a.target_id.in_(ids))
    messages = select(Message.id).where(Message.thread_id.in_(anchored_threads(kind, ids)))
    rows = union_all(
        select(a.id).where(same, sa_text("linking.anchor")),
        select(a.id).where(same, ~a.anchor, a.message_id.in_(messages)),
    )
    return Link.id.in_(rows)


def manual_links() -> TextClause:
    """`MANUAL_LINKS` on `links` in a query, so that `ix_links_manual` serves it: the same
    words (SQLite compares the expressions; `Link.tombstone` alone renders as
    `tombstone = 1` there, and a bound parameter for 'matcher' would not match either)."""
    words = f"(links.{MANUAL_LINKS.replace(' OR ', ' OR links.')})"
    return sa_text(words)


class ReviewItem(Base):
    """A thread whose opportunity the matcher would not choose alone (several candidates)."""

    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("thread_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="opportunity")
    candidates: Mapped[str] = mapped_column(Text, default="")  # space-separated target ids
    explanation: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    chosen_id: Mapped[int | None] = mapped_column(Integer)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Suggestion(Base):
    """An external correspondent who is no contact yet (the "suggested contacts" queue)."""

    __tablename__ = "suggestions"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalize.match_key
    name: Mapped[str] = mapped_column(String(300), default="")
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    messages: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)  # of which we wrote to them
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingThread(Base):
    """A thread a full scan stored mail into, waiting for the per-batch stages (matching,
    reminders), which a full scan runs once at its end rather than after every batch.

    Written in the batch's transaction and deleted in the stages' own, so a crash between
    the two loses nothing: the next sync of the mailbox runs the stages first.
    See `sync.Syncer`.
    """

    __tablename__ = "pending_threads"
    mailbox_id: Mapped[int] = mapped_column(
        ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    thread_id: Mapped[int] = mapped_column(Integer, primary_key=True)


# --- web workspace (issue #14: sign-in links, sessions, digest action links) ------------------


class WebSignInRequest(Base):
    """One request for a sign-in link, kept for the rate limits (per address, per IP) whether
    or not the address is a user's. For a user's address, `token_hash` (SHA-256 of the
    emailed one-time token), its expiry and when it was used; never the token itself."""

    __tablename__ = "web_sign_in_requests"
    __table_args__ = (
        Index("ix_web_sign_in_requests_email_at", "email", "created_at"),
        Index("ix_web_sign_in_requests_ip_at", "ip", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, this row its SHA-256. Ends
    after `[web] session_idle_minutes` without a request, `session_max_hours` after it
    began, at sign-out (`revoked_at`), or when its user leaves the configuration."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_email: Mapped[str] = mapped_column(String(320), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebActionUse(Base):
    """A digest action link (snooze, done, dismiss) that was used: each link works once.
    `token_hash` is the SHA-256 of the signed token (`notify.actionlinks`)."""

    __tablename__ = "web_action_uses"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_email: Mapped[str] = mapped_column(String(320))
    reminder_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OidcState(Base):
    """A sign-in with an OpenID Connect provider under way (`services.oidc`): the SHA-256 of
    its `state`, and of the browser key that the starting browser's cookie holds; the
    provider, where to go once signed in, its expiry, and when its callback came back (each
    state works once, in whichever process). The nonce and the PKCE verifier are derived
    from the server's key, the browser key and the state: never stored."""

    __tablename__ = "oidc_states"
    id: Mapped[int] = mapped_column(primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(Text)
    next: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token of the REST API (`services.apitokens`): it acts as its user, within
    its `scopes` (space-separated: `read`, `write`, `admin`). Only the token's SHA-256 is
    stored: the token itself is shown once, when it is created. Refused after `expires_at`
    (when set) or once revoked; `last_used_at` is recorded at most once a minute."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- webhooks (issue #18) ------------------------------------------------------------------------


class WebhookSubscription(Base):
    """A receiver an admin configured (`services.webhooks`): the URL posted to, the event
    types it wants (space-separated), and its signing secret ("whsec_..."), Fernet-encrypted
    under MAILMANAGER_SECRET_KEY as the connectors' tokens are (`db.tokens`): it must be
    recoverable to sign, so it cannot be hashed."""

    __tablename__ = "webhook_subscriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[str] = mapped_column(Text)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """One event (`db.webhookevents`): `event_id` is its `webhook-id` (the same at every
    attempt and for every receiver), `payload` the exact JSON body signed and sent.
    `dedup_key` (when set) makes recording the same fact twice a no-op."""

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    dedup_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookDelivery(Base):
    """One event to one subscription (`notify.webhooks`): `pending` → `sending` (leased)
    → `delivered`, or back to `pending` with backoff, or `dead` after `[webhooks]
    max_attempts`. `latency_ms`: from the event's creation to the receiver's 2xx."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        # The claim's scan (oldest pending first) skips the delivered rows (migration 0024).
        Index(
            "ix_webhook_deliveries_pending",
            "id",
            sqlite_where=sa_text("status = 'pending'"),
            postgresql_where=sa_text("status = 'pending'"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
