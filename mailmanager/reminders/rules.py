"""The reminder rules of a thread, as pure functions over plain values.

`thread_wants` says which reminders a thread should have now, each keyed by (kind, cycle);
the cycle is the id of the message the reminder is about, so a new follow-up is a new cycle:
- awaiting_reply: our last real message to someone outside got no reply (a real message
  from one of the people we wrote to, another address of the same contact, or with
  `reply_from_company` someone of the same company) within N business days, and it expects
  one (see `replies.expectation`, or the thread's `always`/`never` override). An
  out-of-office notice moves the due time; a permanent bounce of a recipient gives a
  `bounced` item instead.
- needs_response: the last real message from outside, addressed (To) to a user, has had no
  answer from us for N business hours; a contact's pure thank-you needs none.

"Real" messages exclude auto-replies, out-of-office notices, bounces and list mail; they
never count as a reply nor start a reminder (DESIGN.md, "Rules that matter"). A post of
ours to a mailing list expects no reply from anyone in particular: list addresses
(`list_recipients`) are not people we wait for, so a message only to lists (or only to
ourselves: our domains, our users' addresses) starts no awaiting_reply. Internal mail
(between colleagues only) is neither. `reminders.plan` turns the wants into writes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from mailmanager.config import identity as identity_mod
from mailmanager.mail import replies
from mailmanager.reminders import businesstime as bt

ESCALATION = "escalation:"


@dataclass(frozen=True)
class UserRules:
    """One user's calendar and rule settings (organization values with their overrides)."""

    user_id: int
    email: str
    calendar: bt.Calendar
    awaiting_reply_days: int = 3
    needs_response_hours: int = 4
    dormant_opportunity_days: int = 30
    max_repeats: int = 2
    repeat_days: int = 3
    escalate_after: int = 2
    manager_id: int | None = None


@dataclass(frozen=True)
class OrgRules:
    rules: frozenset[str]
    identity: identity_mod.Identity = field(default_factory=identity_mod.Identity)
    require: str = "none"  # none, contact, open_opportunity
    reply_from_company: bool = True
    expect_reply: bool = True
    out_of_office_days: int = 5
    max_age: timedelta = timedelta(days=30)
    at_risk_factor: float = 3.0
    at_risk_min_exchanges: int = 4
    at_risk_min_days: int = 30


@dataclass(frozen=True)
class MessageFact:
    id: int
    sent_at: datetime | None
    direction: str  # inbound, outbound, internal
    from_email: str
    from_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    noise: bool = False  # auto-reply, bounce or list mail
    is_oof: bool = False
    is_bounce: bool = False
    bounce_recipients: tuple[str, ...] = ()
    bounce_permanent: bool = False
    lists: tuple[str, ...] = ()  # recipients that are mailing lists (`list_recipients`)


@dataclass(frozen=True)
class Identity:
    """What the CRM knows of an external address: its contact and its company key
    ("company:3", or "domain:acme.fr" when no company record exists)."""

    contact_id: int | None = None
    company_key: str | None = None
    name: str = ""


TextFacts = replies.TextFacts  # what was read in a message's body


@dataclass(frozen=True)
class ThreadReminderFacts:
    """What the reminder rules read of one thread: its messages, the "expects a reply"
    override, what the CRM knows of its external addresses and links.

    (The matcher reads other things of a thread: `matching.facts.ThreadMatchFacts`.)
    """

    thread_id: int
    messages: tuple[MessageFact, ...]  # in (sent_at, id) order
    expect_override: str | None = None  # always, never
    identities: Mapping[str, Identity] = field(default_factory=dict)
    has_contact_link: bool = False
    has_open_opportunity: bool = False


@dataclass(frozen=True)
class Want:
    """A reminder that should exist now."""

    kind: str
    cycle: int
    user_id: int
    due_at: datetime
    waiting_since: datetime | None
    reason: str
    contact_email: str = ""
    not_before: datetime | None = None  # an out-of-office notice pushes every firing here
    repeats: bool = True
    fresh_only: bool = True  # not created when waiting_since is older than `max_age`


def is_external(address: str, users: Mapping[str, UserRules], org: OrgRules) -> bool:
    """Not ours (`Identity.is_ours`: a user's address, an alias, an organization domain or
    a subdomain), nor the address of a user of `users` (who may have left the config)."""
    if not address or address in users:
        return False
    return not org.identity.is_ours(address)


def is_list_address(address: str, list_id: str) -> bool:
    """Whether `address` is the posting address of the list `list_id` (RFC 2919: a List-Id
    is the list's label and a namespace, in practice "dev.lists.example.org" for
    dev@lists.example.org, "group.example.com" for a Google group group@example.com)."""
    local, _, domain = address.lower().rpartition("@")
    return bool(local) and list_id.lower() == f"{local}.{domain}"


def list_recipients(
    recipients: Iterable[str], list_id: str | None, known: Collection[str]
) -> tuple[str, ...]:
    """The recipients of one of our messages that are mailing lists: addresses known as
    lists from earlier traffic (`known`), and, when a copy of the message came back through
    a list (`list_id`), that list's address; when no recipient is that address, all of them
    (the message was a list post)."""
    everyone = tuple(dict.fromkeys(recipients))
    found = [a for a in everyone if a in known or (list_id and is_list_address(a, list_id))]
    if list_id and not any(is_list_address(a, list_id) for a in everyone):
        return everyone
    return tuple(found)


def _real(m: MessageFact) -> bool:
    return not m.noise and m.sent_at is not None and m.direction != "internal"


def _ours_to_outside(m: MessageFact, users: Mapping[str, UserRules], org: OrgRules) -> bool:
    return (
        bool(m.from_email)
        and not is_external(m.from_email, users, org)
        and any(is_external(a, users, org) for a in (*m.to, *m.cc) if a not in m.lists)
    )


def anchors(
    f: ThreadReminderFacts, users: Mapping[str, UserRules], org: OrgRules
) -> tuple[MessageFact | None, MessageFact | None]:
    """(our last real message to someone outside, the last real message from outside)."""
    ours = theirs = None
    for m in f.messages:
        if not _real(m):
            continue
        if _ours_to_outside(m, users, org):
            ours = m
        elif is_external(m.from_email, users, org):
            theirs = m
    return ours, theirs


def texts_needed(f: ThreadReminderFacts, users: Mapping[str, UserRules], org: OrgRules) -> set[int]:
    """The messages whose body `thread_wants` reads: both anchors and later absence notices."""
    ours, theirs = anchors(f, users, org)
    wanted = {m.id for m in (ours, theirs) if m is not None}
    if ours is not None:
        wanted |= {m.id for m in _after(f.messages, ours) if m.is_oof}
    return wanted


def _after(messages: Sequence[MessageFact], anchor: MessageFact) -> list[MessageFact]:
    return list(messages[messages.index(anchor) + 1 :])


@dataclass(frozen=True)
class _Parties:
    addresses: frozenset[str]
    contacts: frozenset[int]
    companies: frozenset[str]


def _parties(
    f: ThreadReminderFacts, anchor: MessageFact, users: Mapping[str, UserRules], org: OrgRules
) -> _Parties:
    """The people outside we were talking with, up to `anchor`: their addresses, contacts
    and companies."""
    found: set[str] = set()
    for m in f.messages[: f.messages.index(anchor) + 1]:
        if not m.noise:
            found.update(
                a
                for a in (m.from_email, *m.to, *m.cc)
                if is_external(a, users, org) and a not in m.lists
            )
    ids = [f.identities.get(a, Identity()) for a in found]
    return _Parties(
        frozenset(found),
        frozenset(i.contact_id for i in ids if i.contact_id is not None),
        frozenset(i.company_key for i in ids if i.company_key is not None),
    )


def _counts_as_reply(
    m: MessageFact,
    parties: _Parties,
    f: ThreadReminderFacts,
    users: Mapping[str, UserRules],
    org: OrgRules,
) -> bool:
    """A real message from one of the parties: the same address, another address of the
    same contact, or (with `reply_from_company`) someone of the same company."""
    if not _real(m) or not is_external(m.from_email, users, org):
        return False
    if m.from_email in parties.addresses:
        return True
    ident = f.identities.get(m.from_email, Identity())
    if ident.contact_id is not None and ident.contact_id in parties.contacts:
        return True
    return org.reply_from_company and ident.company_key in parties.companies


def _crm_ok(f: ThreadReminderFacts, org: OrgRules) -> bool:
    if org.require == "open_opportunity":
        return f.has_open_opportunity
    if org.require == "contact":
        return f.has_contact_link or any(i.contact_id for i in f.identities.values())
    return True


def thread_wants(
    f: ThreadReminderFacts,
    users: Mapping[str, UserRules],
    org: OrgRules,
    texts: Mapping[int, TextFacts],
) -> tuple[list[Want], list[tuple[str, datetime]]]:
    """The reminders this thread should have now, and the addresses that a permanent
    bounce proved invalid (with the bounce's time)."""
    invalid = [
        (a, m.sent_at)
        for m in f.messages
        if m.is_bounce and m.bounce_permanent and m.sent_at is not None
        for a in m.bounce_recipients
    ]
    ours, theirs = anchors(f, users, org)
    wants: list[Want] = []
    if ours is not None and ours.from_email in users:
        wants += _awaiting(f, ours, users, org, texts)
    answered = ours is not None and theirs is not None and ours.id in _ids_after(f, theirs)
    if theirs is not None and not answered and "needs_response" in org.rules and _crm_ok(f, org):
        wants += _needs_response(theirs, users, texts)
    return wants, invalid


ANSWERABLE = ("awaiting_reply", "needs_response")


def answered(
    f: ThreadReminderFacts,
    users: Mapping[str, UserRules],
    org: OrgRules,
    keys: Iterable[tuple[str, int]],
) -> set[tuple[str, int]]:
    """Which of these reminders, (kind, cycle), were answered later in the thread: for our
    message (`awaiting_reply`), a reply from one of the people we wrote to (as
    `thread_wants` counts one); for theirs (`needs_response`), a real message from us.
    Escalations ("escalation:<kind>") follow the reminder they escalate."""
    by_id = {m.id: m for m in f.messages}
    found: set[tuple[str, int]] = set()
    for kind, cycle in keys:
        anchor = by_id.get(cycle)
        if kind.removeprefix(ESCALATION) not in ANSWERABLE or anchor is None or not _real(anchor):
            continue
        later = _after(f.messages, anchor)
        if _ours_to_outside(anchor, users, org):
            parties = _parties(f, anchor, users, org)
            hit = any(_counts_as_reply(m, parties, f, users, org) for m in later)
        else:
            hit = is_external(anchor.from_email, users, org) and any(
                _real(m) and m.from_email and not is_external(m.from_email, users, org)
                for m in later
            )
        if hit:
            found.add((kind, cycle))
    return found


def _ids_after(f: ThreadReminderFacts, m: MessageFact) -> set[int]:
    return {x.id for x in _after(f.messages, m)}


def _awaiting(
    f: ThreadReminderFacts,
    anchor: MessageFact,
    users: Mapping[str, UserRules],
    org: OrgRules,
    texts: Mapping[int, TextFacts],
) -> list[Want]:
    assert anchor.sent_at is not None
    user = users[anchor.from_email]
    cal = user.calendar
    recipients = [
        a for a in (*anchor.to, *anchor.cc) if is_external(a, users, org) and a not in anchor.lists
    ]
    later = _after(f.messages, anchor)
    bounces = [m for m in later if m.is_bounce and m.bounce_permanent and m.sent_at]
    bounced = sorted({a for m in bounces for a in m.bounce_recipients if a in recipients})
    wants: list[Want] = []
    if bounced:
        at = max(m.sent_at for m in bounces if m.sent_at is not None)
        wants.append(
            Want(
                kind="bounced",
                cycle=anchor.id,
                user_id=user.user_id,
                due_at=bt.next_business_time(at, cal),
                waiting_since=anchor.sent_at,
                reason=f"Your message to {bounced[0]} bounced: the address is invalid.",
                contact_email=bounced[0],
                repeats=False,
            )
        )
    waiting_for = [a for a in recipients if a not in bounced]
    if not waiting_for or "awaiting_reply" not in org.rules or not _crm_ok(f, org):
        return wants
    if f.expect_override == "never":
        return wants
    if f.expect_override != "always" and org.expect_reply:
        found = texts.get(anchor.id, TextFacts()).expectation
        if found is not None and not found.expects:
            return wants
    parties = _parties(f, anchor, users, org)
    if any(_counts_as_reply(m, parties, f, users, org) for m in later):
        return wants
    due = bt.add_business_days(anchor.sent_at, user.awaiting_reply_days, cal)
    not_before = _out_of_office(later, users, org, texts, cal)
    wants.append(
        Want(
            kind="awaiting_reply",
            cycle=anchor.id,
            user_id=user.user_id,
            due_at=max(due, not_before) if not_before else due,
            waiting_since=anchor.sent_at,
            reason=(
                f"No reply from {waiting_for[0]} after {user.awaiting_reply_days} business days."
            ),
            contact_email=waiting_for[0],
            not_before=not_before,
        )
    )
    return wants


def _out_of_office(
    later: Iterable[MessageFact],
    users: Mapping[str, UserRules],
    org: OrgRules,
    texts: Mapping[int, TextFacts],
    cal: bt.Calendar,
) -> datetime | None:
    """When an absence notice received after our message lets the reminder fire: one
    business day after the return date read in it, else `out_of_office_days` business days
    after the notice."""
    notices = [m for m in later if m.is_oof and m.sent_at and is_external(m.from_email, users, org)]
    if not notices:
        return None
    last = notices[-1]
    assert last.sent_at is not None
    back = texts.get(last.id, TextFacts()).return_date
    if back is None:
        return bt.add_business_days(last.sent_at, org.out_of_office_days, cal)
    morning = datetime.combine(back, time(0), tzinfo=cal.tz)
    return bt.add_business_days(morning, 1, cal)


def _needs_response(
    anchor: MessageFact, users: Mapping[str, UserRules], texts: Mapping[int, TextFacts]
) -> list[Want]:
    assert anchor.sent_at is not None
    user = next((users[a] for a in anchor.to if a in users), None)
    if user is None:
        return []  # only copied (Cc), or written to an address no user reads
    found = texts.get(anchor.id, TextFacts()).expectation
    if found is not None and found.reason in ("closing words only", "calendar answer"):
        return []  # "Merci, bonne journée" from the contact needs no answer
    hours = user.needs_response_hours
    who = anchor.from_name or anchor.from_email
    return [
        Want(
            kind="needs_response",
            cycle=anchor.id,
            user_id=user.user_id,
            due_at=bt.add_business_hours(anchor.sent_at, hours, user.calendar),
            waiting_since=anchor.sent_at,
            reason=f"{who} wrote to you and has had no answer for {hours} business hours.",
            contact_email=anchor.from_email,
        )
    ]
