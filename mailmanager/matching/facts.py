"""The plain values the matching cascade reads and returns (see `mailmanager.matcher`).

Facts about threads, messages and participants; the in-memory `Index` of the CRM that
`matching.reads` builds; the `Policy` from `[matcher]`; and the decisions. All immutable (named
tuples, cheap to make by the hundred thousand), except the index and the `Memo` that make
repeated look-ups cheap within a run.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from mailmanager.config import identity as identity_mod
from mailmanager.mail import normalize


@dataclass(frozen=True)
class Blocklist:
    """Addresses and domains never linked; a domain covers its subdomains."""

    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Blocklist:
        """From config entries: "jane@acme.com" or "@acme.com"."""
        addresses, domains = set(), set()
        for entry in entries:
            if entry.startswith("@"):
                domains.add(entry[1:])
            else:
                addresses.add(normalize.match_key(entry) or entry)
        return cls(frozenset(addresses), frozenset(domains))

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def blocks(self, key: str) -> bool:
        if key in self.addresses:
            return True
        return bool(self.domains) and not self.domains.isdisjoint(normalize.address_suffixes(key))


@dataclass(frozen=True)
class Policy:
    """The matcher configuration, as plain values (see `[matcher]` in config.example.toml).

    Frozen through and through: what a run learns while it matches is kept in a `Memo`.
    """

    identity: identity_mod.Identity = field(default_factory=identity_mod.Identity)  # "us"
    opportunity_pattern: re.Pattern[str] = re.compile(r"\b(OPP-\d+)\b", re.IGNORECASE)
    multiple: str = "only_if_one"
    retro_window: timedelta = timedelta(days=365)
    blocklist: Blocklist = Blocklist()
    user_blocklists: Mapping[str, Blocklist] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    auto_create: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.user_blocklists, types.MappingProxyType):
            blocklists = types.MappingProxyType(dict(self.user_blocklists))
            object.__setattr__(self, "user_blocklists", blocklists)


@dataclass
class Memo:
    """What matching under one `Policy` has already worked out, for the next thread to reuse.

    The caller keeps one per run and policy (`matching.run` keeps it for a `match_threads` call):
    a run asks about the same few thousand addresses and subjects again and again. Each table
    is emptied when it reaches `matcher.MEMO_MAX` entries.
    """

    own: dict[str, bool] = field(default_factory=dict)  # match key → ours (`Identity.is_ours`)
    # raw subject → the references the pattern finds in it (a thread repeats its subject)
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Party(NamedTuple):
    """A participant of a message: role, match key, address as stored, display name."""

    role: str
    key: str
    email: str
    name: str = ""


class MessageFacts(NamedTuple):
    id: int
    thread_id: int
    message_id: str
    sent_at: datetime | None
    direction: str
    subject: str
    flags: frozenset[str]  # bounce, auto_reply, bulk
    parties: tuple[Party, ...]
    owners: frozenset[str] = frozenset()  # users whose mailboxes hold it


class Mark(NamedTuple):
    """A manual link or tombstone; `message_id` None means the whole thread."""

    kind: str  # contact, company, opportunity; "any" for an unlink-everything tombstone
    target_id: int
    tombstone: bool
    message_id: int | None = None
    by: str = ""


class ThreadMatchFacts(NamedTuple):
    """What the matcher reads of one thread: its messages and the manual marks on it.

    (The reminder rules read other things of a thread: `reminders.rules.ThreadReminderFacts`.)
    """

    thread_id: int
    messages: tuple[MessageFacts, ...]
    marks: tuple[Mark, ...] = ()


@dataclass(frozen=True)
class Opp:
    id: int
    reference: str | None
    company_id: int | None
    open: bool
    created_at: datetime
    closed_at: datetime | None = None
    last_activity_at: datetime | None = None

    @property
    def label(self) -> str:
        return self.reference or f"#{self.id}"

    def status_at(self, t: datetime | None, window: timedelta) -> str | None:
        """ "active" when open at `t`, "retro" when created within `window` after it; None
        when the opportunity cannot be inferred for mail of that date.

        A closed (won, lost) opportunity takes mail by inference only within its known open
        interval: it needs a close date after its creation. Without one (imported closed,
        or created already closed) its dates are unknown, and it takes mail only by a
        subject tag or by hand: its last activity is no bound, since linking moves it.
        """
        if t is None:
            return "active" if self.open else None
        if not self.open:
            if not self.dates_known:
                return None
            assert self.closed_at is not None
            if t > self.closed_at:
                return None
        if self.created_at <= t:
            return "active"
        return "retro" if self.created_at - window <= t else None

    @property
    def dates_known(self) -> bool:
        """Open, or closed with a close date after its creation: an open interval is known."""
        return self.open or (self.closed_at is not None and self.closed_at > self.created_at)


@dataclass
class Index:
    """What the cascade looks up; built by `matching.run` for a whole run or for one batch."""

    contacts: dict[str, int] = field(default_factory=dict)  # match key → contact id
    contact_company: dict[int, int | None] = field(default_factory=dict)
    companies: dict[str, int] = field(default_factory=dict)  # domain → company id
    opps: dict[int, Opp] = field(default_factory=dict)
    opp_by_ref: dict[str, int] = field(default_factory=dict)  # upper-case reference → id
    contact_opps: dict[int, tuple[int, ...]] = field(default_factory=dict)
    company_opps: dict[int, tuple[int, ...]] = field(default_factory=dict)
    _domain_memo: dict[str, tuple[int | None, str]] = field(default_factory=dict, repr=False)
    # (address, role) → what it says (`matcher._address`); cleared when `contacts` changes.
    address_memo: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def company_for_domain(self, domain: str) -> tuple[int | None, str]:
        """(company id or None, the domain that matched or why none did)."""
        memo = self._domain_memo.get(domain)
        if memo is None:
            memo = self._domain_memo[domain] = _company_for_domain(domain, self.companies)
        return memo


@functools.lru_cache(maxsize=65536)
def domain_facts(domain: str) -> tuple[bool, str, tuple[str, ...]]:
    """(free-mail?, registrable domain, the domain and its parents down to that one)."""
    registrable = normalize.registrable_domain(domain)
    chain = []
    for candidate in normalize.domain_suffixes(domain):
        chain.append(candidate)
        if candidate == registrable:
            break
    return normalize.is_free_mail(domain), registrable, tuple(chain)


def _company_for_domain(domain: str, companies: Mapping[str, int]) -> tuple[int | None, str]:
    free, registrable, chain = domain_facts(domain)
    if free:
        return None, f"{domain} is a free-mail domain"
    for candidate in chain:
        if candidate in companies:
            return companies[candidate], candidate
    return None, f"no company has the domain {registrable}"


class LinkDecision(NamedTuple):
    kind: str
    target_id: int
    method: str
    confidence: float
    explanation: str


class MessageVerdict(NamedTuple):
    message_id: int
    links: tuple[LinkDecision, ...]
    reason: str
    detail: str
    unknown: tuple[tuple[Party, int | None], ...] = ()  # (person, company by domain)


class ReviewRequest(NamedTuple):
    thread_id: int
    candidates: tuple[int, ...]
    explanation: str
    kind: str = "opportunity"


class ThreadVerdict(NamedTuple):
    thread_id: int
    messages: tuple[MessageVerdict, ...]
    review: ReviewRequest | None = None


class NewContact(NamedTuple):
    key: str
    name: str
    company_id: int | None
    message_id: int
