"""The plain values the matching cascade reads and returns (see `mailmanager.matcher`).

Facts about threads, messages and participants; the in-memory `Index` of the CRM that
`linkindex` builds; the `Policy` from `[matcher]`; and the decisions. All immutable (named
tuples, cheap to make by the hundred thousand), except the index and the memo tables that
make repeated look-ups cheap within a run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

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
        domain = key.rpartition("@")[2]
        return bool(self.domains) and any(d in self.domains for d in suffixes(domain))


def suffixes(domain: str) -> Iterable[str]:
    while domain:
        yield domain
        domain = domain.partition(".")[2]


@dataclass(frozen=True)
class Policy:
    """The matcher configuration, as plain values (see `[matcher]` in config.example.toml)."""

    own_domains: frozenset[str] = frozenset()
    own_addresses: frozenset[str] = frozenset()
    opportunity_pattern: re.Pattern[str] = re.compile(r"\b(OPP-\d+)\b", re.IGNORECASE)
    multiple: str = "only_if_one"
    retro_window: timedelta = timedelta(days=365)
    blocklist: Blocklist = Blocklist()
    user_blocklists: Mapping[str, Blocklist] = field(default_factory=dict)
    auto_create: str = "none"
    own_memo: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    # raw subject → the references the pattern finds in it (a thread repeats its subject)
    subject_memo: dict[str, tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )


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


class ThreadFacts(NamedTuple):
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
        """ "active" when open at `t`, "retro" when created within `window` after it."""
        if t is None:
            return "active" if self.open else None
        end = None if self.open else (self.closed_at or self.last_activity_at or self.created_at)
        if end is not None and t > end:
            return None
        if self.created_at <= t:
            return "active"
        return "retro" if self.created_at - window <= t else None


@dataclass
class Index:
    """What the cascade looks up; built by `linking` for a whole run or for one batch."""

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
    for candidate in suffixes(domain):
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
