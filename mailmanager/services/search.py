"""Search the mail (issue #14): free words over what a message keeps (subject, and the
snippet of its body when stored), a person (address or display name), a company (its name
or a domain: its contacts' addresses and its domains), a date range; newest first, a page at
a time. The indexes are `db.searchindex` (SQLite FTS5, PostgreSQL GIN tsvector + pg_trgm).
The next and previous pages start from the last (first) hit shown (`Position`), so that
page 10 costs what page 1 does; an offset alone (a hand-made URL) still works.

Who finds what is `services.access`' rule, applied in the query (so pages are full and
offsets exact) and checked again on each page with `access.levels`, the one authority:
- messages the viewer may not see ("none": a colleague's mail on no client record, a thread
  made private by someone else, anything when `[web] visibility = "none"`) are never found;
- a message seen at "metadata" level (a colleague's thread on a client record) is found by
  its subject, date and participants only: words match its subject, never its body, and
  the hit carries no snippet, so a search cannot reveal what the page would not show.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models, searchindex
from mailmanager.db.models import Folder, Link, Mailbox, Message, MessageLocation, Participant
from mailmanager.services import access

log = logging.getLogger(__name__)

PAGE_SIZE = 25
MAX_OFFSET = 1000  # deeper than 40 pages: narrow the search instead
MAX_WORDS = 8
MAX_COMPANIES = 20
MAX_ADDRESSES = 2000
FEW_MATCHES = 5000  # full-text matches beyond which walking the dates is faster
_WORD = re.compile(r"\w+")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


@dataclass(frozen=True)
class Position:
    """A hit's place in the newest-first order: a page starts after it (keyset paging, so
    a deep page costs what the first one does instead of walking every hit before it).
    `token` is its form in a page's URL."""

    sent_at: datetime
    message_id: int

    @property
    def token(self) -> str:
        return f"{self.sent_at.isoformat()}~{self.message_id}"

    @classmethod
    def parse(cls, token: str) -> Position | None:
        """The position a URL names; None when malformed (the page then goes by offset)."""
        when, _, mid = token.partition("~")
        try:
            sent_at = datetime.fromisoformat(when)
            return cls(sent_at, int(mid)) if sent_at.tzinfo else None
        except ValueError:
            return None

    def older(self) -> sa.ColumnElement[bool]:
        at, mid = self.sent_at, self.message_id
        # `sent_at <= at` spelled out: a bound both planners can walk the date index from
        return sa.and_(
            Message.sent_at <= at,
            sa.or_(Message.sent_at < at, sa.and_(Message.sent_at == at, Message.id < mid)),
        )

    def newer(self) -> sa.ColumnElement[bool]:
        at, mid = self.sent_at, self.message_id
        return sa.and_(
            Message.sent_at >= at,
            sa.or_(Message.sent_at > at, sa.and_(Message.sent_at == at, Message.id > mid)),
        )


@dataclass(frozen=True)
class SearchQuery:
    words: str = ""
    person: str = ""
    company: str = ""
    since: date | None = None  # inclusive, in UTC days
    until: date | None = None  # inclusive
    offset: int = 0  # of the page's first hit, also when it starts at `before` or `after`
    limit: int = PAGE_SIZE
    before: Position | None = None  # the page is the hits older than this one (next page)
    after: Position | None = None  # the page is the hits newer than this one (previous)

    @property
    def empty(self) -> bool:
        return not (_tokens(self.words) or self.person.strip() or self.company.strip()) and (
            self.since is None and self.until is None
        )


@dataclass(frozen=True)
class Hit:
    message_id: int
    thread_id: int | None
    sent_at: datetime | None
    direction: str
    subject: str
    participants: tuple[str, ...]
    snippet: str | None  # None when the viewer sees only metadata
    level: access.Level


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[Hit, ...]
    offset: int
    more: bool  # another page follows (within MAX_OFFSET)


def _tokens(words: str) -> list[str]:
    return [searchindex.fold(w) for w in _WORD.findall(words)][:MAX_WORDS]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _word_query(dialect: str, tokens: list[str], subject_only: bool) -> sa.TextClause:
    """The ids of the messages whose kept text has every token as a word prefix (in the
    subject only if asked): FTS5 on SQLite, the GIN tsvector index on PostgreSQL."""
    if dialect == "sqlite":
        col = "subject : " if subject_only else ""
        q = " AND ".join(f'{col}"{t}"*' for t in tokens)
        sql = "SELECT rowid AS id FROM messages_fts WHERE messages_fts MATCH :q"
    else:
        weight = "A" if subject_only else ""
        q = " & ".join(f"{t}:*{weight}" for t in tokens)
        sql = f"SELECT id FROM messages WHERE {searchindex.PG_DOCUMENT} @@ to_tsquery('simple', :q)"
    return sa.text(sql).bindparams(sa.bindparam("q", q, unique=True))


def _word_filters(
    session: Session, dialect: str, tokens: list[str]
) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """(matches the words, matches them in the subject). Up to `FEW_MATCHES` matches, as
    lists of ids: the planners then start from them (neither can estimate how many rows a
    full-text query matches). Beyond, as subqueries the planner checks while it walks the
    dates newest first, stopping at the page's end (on SQLite `id + 0` keeps it from
    starting with the matches)."""
    full, subject = (_word_query(dialect, tokens, only) for only in (False, True))
    found = session.scalars(
        sa.select(sa.text("id"))
        .select_from(full.columns(sa.column("id", sa.Integer)).subquery())
        .limit(FEW_MATCHES + 1)
    ).all()
    if len(found) <= FEW_MATCHES:
        titled = session.scalars(
            sa.select(sa.text("id"))
            .select_from(subject.columns(sa.column("id", sa.Integer)).subquery())
            .limit(FEW_MATCHES + 1)
        ).all()
        return Message.id.in_(found), Message.id.in_(titled)
    ids = Message.id + sa.literal_column("0") if dialect == "sqlite" else Message.id
    return (
        ids.in_(full.columns(sa.column("id", sa.Integer))),
        ids.in_(subject.columns(sa.column("id", sa.Integer))),
    )


def _people(dialect: str, term: str, domain: bool = False) -> sa.ColumnElement[bool]:
    """Participants given by `term`: a whole address (exact), a domain (`domain`), or part
    of a name or address."""
    term = term.strip().lower()
    if not domain and _ADDRESS.fullmatch(term):
        return Participant.email == term
    if dialect == "sqlite":
        # no ESCAPE (FTS5 would not use its index): "%" is dropped, "_" matches any character
        bare = term.replace("%", "")
        pattern = f"%{bare}" if domain else f"%{bare}%"
        cols = ("email",) if domain else ("name", "email")
        sql = " UNION ".join(f"SELECT rowid FROM participants_fts WHERE {c} LIKE :p" for c in cols)
        fts = sa.text(sql).bindparams(sa.bindparam("p", pattern, unique=True))
        return Participant.id.in_(fts.columns(sa.column("rowid", sa.Integer)))
    who: sa.ColumnElement[str] = sa.literal_column(searchindex.PG_PERSON)
    pattern = _like(f"{term}>" if domain else searchindex.fold(term))
    return who.like(pattern, escape="\\")


def _company_people(session: Session, dialect: str, term: str) -> sa.ColumnElement[bool] | None:
    """Participants of a company named (part of its name) or given by a domain; None when
    no company matches."""
    C, D, CE, K = models.Company, models.CompanyDomain, models.ContactEmail, models.Contact
    key = models.name_key(term)
    ids = list(
        session.scalars(
            sa.select(C.id)
            .where(
                sa.or_(
                    C.name_key.like(_like(key), escape="\\"),
                    C.id.in_(sa.select(D.company_id).where(D.domain == key.lstrip("@"))),
                )
            )
            .order_by(C.name_key)
            .limit(MAX_COMPANIES)
        )
    )
    if not ids:
        return None
    domains = list(session.scalars(sa.select(D.domain).where(D.company_id.in_(ids))))
    emails = list(
        session.scalars(
            sa.select(CE.email)
            .join(K, K.id == CE.contact_id)
            .where(K.company_id.in_(ids))
            .limit(MAX_ADDRESSES)
        )
    )
    parts: list[sa.ColumnElement[bool]] = [Participant.email.in_(emails)] if emails else []
    parts += [_people(dialect, f"@{d}", domain=True) for d in domains]
    return sa.or_(*parts) if parts else None


def _visible(
    session: Session, cfg: config_mod.Config, viewer: access.Viewer
) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """(may see at all, may read content): `access.level` as SQL on `messages`."""
    folders = list(
        session.scalars(
            sa.select(Folder.id)
            .join(Mailbox, Mailbox.id == Folder.mailbox_id)
            .join(models.User, models.User.id == Mailbox.owner_id)
            .where(models.User.email.in_(sorted(viewer.sees_content_of)))
        )
    )
    owned: sa.ColumnElement[bool] = sa.false()
    if folders:
        held = sa.select(MessageLocation.id).where(
            MessageLocation.message_id == Message.id, MessageLocation.folder_id.in_(folders)
        )
        if session.get_bind().dialect.name == "postgresql":
            # OFFSET 0 keeps PostgreSQL from hashing every message the viewer holds (all
            # 200,000 of a mailbox, ~50 ms a search even for a page of 25): a page walks a
            # few hundred dates, each checked by an index probe.
            held = held.offset(0)
        owned = sa.exists(held)
    linked = sa.or_(
        sa.exists(
            sa.select(Link.id).where(
                Link.message_id == Message.id, ~Link.tombstone, Link.target_kind != "any"
            )
        ),
        Message.thread_id.in_(
            sa.select(Link.thread_id).where(
                models.manual_links(),
                Link.message_id.is_(None),
                ~Link.tombstone,
                Link.target_kind != "any",
            )
        ),
    )
    T = models.Thread
    private = list(
        session.scalars(
            sa.select(T.id).where(T.private_owner.is_not(None), T.private_owner != viewer.email)
        )
    )
    not_private = (
        sa.or_(Message.thread_id.is_(None), Message.thread_id.not_in(private))
        if private
        else sa.true()
    )
    mine_ids = list(session.scalars(sa.select(T.id).where(T.private_owner == viewer.email)))
    mine = Message.thread_id.in_(mine_ids) if mine_ids else sa.false()
    shown = access.visibility(cfg)
    others = linked if shown in ("full", "metadata") else sa.false()
    content = sa.or_(mine, owned, linked if shown == "full" else sa.false())
    return sa.and_(not_private, sa.or_(mine, owned, others)), sa.and_(not_private, content)


def search(
    session: Session, cfg: config_mod.Config, viewer: access.Viewer, query: SearchQuery
) -> SearchResult:
    """One page of the messages matching `query` that `viewer` may see, newest first."""
    offset = max(0, min(query.offset, MAX_OFFSET))
    limit = max(1, min(query.limit, 100))
    if query.empty:
        return SearchResult((), offset, False)
    dialect = session.get_bind().dialect.name
    visible, content = _visible(session, cfg, viewer)
    where: list[sa.ColumnElement[bool]] = [visible]
    tokens = _tokens(query.words)
    person = query.person.strip().lower()
    if tokens:
        full, subject = _word_filters(session, dialect, tokens)
        # (content and full) or subject, as the planners like it: a subject match is a match
        where += [full, sa.or_(content, subject)]
    if person:
        where.append(
            Message.id.in_(sa.select(Participant.message_id).where(_people(dialect, person)))
        )
    if query.company.strip():
        company = _company_people(session, dialect, query.company.strip())
        if company is None:
            return SearchResult((), offset, False)
        where.append(Message.id.in_(sa.select(Participant.message_id).where(company)))
    if query.since is not None:
        where.append(Message.sent_at >= datetime.combine(query.since, time(), UTC))
    if query.until is not None:
        end = datetime.combine(query.until + timedelta(days=1), time(), UTC)
        where.append(Message.sent_at < end)
    stmt = sa.select(
        Message.id,
        Message.thread_id,
        Message.sent_at,
        Message.direction,
        Message.subject,
        Message.snippet,
    ).where(*where)
    newest_first = (Message.sent_at.desc(), Message.id.desc())
    if query.after is not None:  # the previous page: walk up from it, then turn it over
        stmt = stmt.where(query.after.newer()).order_by(Message.sent_at, Message.id)
        rows = list(reversed(session.execute(stmt.limit(limit)).all()))
        more = offset + limit <= MAX_OFFSET  # the page it came from follows
    else:
        before = query.before
        stmt = stmt.where(before.older()) if before is not None else stmt.offset(offset)
        rows = list(session.execute(stmt.order_by(*newest_first).limit(limit + 1)))
        more = len(rows) > limit and offset + limit <= MAX_OFFSET
        rows = rows[:limit]
    ids = [r.id for r in rows]
    levels = access.levels(session, cfg, viewer, ids)
    people: dict[int, list[str]] = {}
    for mid, email, name in session.execute(
        sa.select(Participant.message_id, Participant.email, Participant.name)
        .where(Participant.message_id.in_(ids))
        .order_by(Participant.id)
    ):
        shown = f"{name} <{email}>" if name else email
        if shown not in people.setdefault(mid, []):
            people[mid].append(shown)
    hits = []
    for r in rows:
        found = levels.get(r.id, "none")
        if found == "none":  # the SQL and the rule disagree: the rule wins
            log.warning("search hit refused", extra={"action": "search_refused", "message": r.id})
            continue
        hits.append(
            Hit(
                message_id=r.id,
                thread_id=r.thread_id,
                sent_at=r.sent_at,
                direction=r.direction,
                subject=r.subject,
                participants=tuple(people.get(r.id, ())),
                snippet=r.snippet if found == "content" else None,
                level=found,
            )
        )
    log.info(
        "search",
        extra={"action": "search", "viewer": viewer.email, "hits": len(hits), "offset": offset},
    )
    return SearchResult(tuple(hits), offset, more)
