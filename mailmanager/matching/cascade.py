"""The matching cascade: plain facts about a thread in, link decisions out. No database.

A thread is matched as a whole, so that every message of a conversation carries the same
links (thread continuity) and matching a thread again gives the same answer whatever the
order its messages arrived in. For each message, in this order:

1. **Gates.** A manual "unlink all" (tombstone of kind `any`) on the message or its thread,
   noise (bounce, auto-reply, list/bulk mail: RFC 3464, RFC 3834, RFC 2369/2919), internal
   mail (every participant is ours), no external participant left, or a blocklisted
   correspondent (global or per-user list of a user whose mailbox holds the message): the
   message links to no one and records that reason code instead.
2. **Evidence** from the message itself: an opportunity reference found by the configured
   pattern in the RAW subject (`[OPP-12]` survives, although the normalised subject strips
   bracketed tags); each external address that is a contact's (`normalize.match_key` form),
   with that contact's company; an address that is no contact gives its company by domain
   (the domain itself, then its parents down to the registrable domain; never a free-mail
   domain; never for no-reply and other system senders).
3. **Thread union.** Manual links on the thread or on any of its messages, and every
   message's evidence, are pooled; each eligible message gets every pooled target, with its
   own evidence as the method when it has some, else `thread`. Tombstones remove a target
   from the thread (thread-level) or from one message.
4. **Opportunity policy**, only when neither a manual link nor a subject tag names one: the
   candidates are the opportunities of the thread's contacts (else of its companies) that
   were open at the thread's first message ("active"), else those created within the retro
   window after it ("retro"). `only_if_one` links a single candidate and sends several to
   review; `thread_sticky` takes the newest; `most_recent` decides per message at its own
   date; `all` links every one; `review` never chooses. Alternatives are named in the
   explanation. A closed (won, lost) opportunity is a candidate only within its known open
   interval (creation to close date, `Opp.status_at`); one whose dates are unknown never
   takes mail by inference, only by subject tag or by hand, and the detail says so.

Unknown correspondents (persons, not role or system addresses) are returned for the
suggestions queue; `contacts_to_create` applies the auto-creation policy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from mailmanager.mail import normalize
from mailmanager.matching.facts import (
    Blocklist,
    Index,
    LinkDecision,
    Mark,
    Memo,
    MessageFacts,
    MessageVerdict,
    NewContact,
    Opp,
    Party,
    Policy,
    ReviewRequest,
    ThreadMatchFacts,
    ThreadVerdict,
    domain_facts,
)

# The values live in `matching.facts`; they are re-exported so callers need one module.
__all__ = (
    "Blocklist", "Index", "LinkDecision", "Mark", "Memo", "MessageFacts", "MessageVerdict",
    "NewContact", "Opp", "Party", "Policy", "ReviewRequest", "ThreadMatchFacts", "ThreadVerdict",
    "contacts_to_create", "domain_facts", "is_own", "match_thread", "split_name",
)  # fmt: skip

MANUAL, SUBJECT_TAG, ADDRESS, CONTACT, THREAD, DOMAIN = 1.0, 0.95, 0.9, 0.85, 0.75, 0.6
ONE, PICK, ALL = 0.7, 0.5, 0.4  # opportunity chosen by the policy: single, newest, all

KINDS = ("contact", "company", "opportunity")
NOISE_FLAGS: tuple[tuple[str, str], ...] = (
    ("bounce", "noise_bounce"),
    ("auto_reply", "noise_auto_reply"),
    ("bulk", "noise_bulk"),
)
REASONS = (
    "linked",
    "unlinked_manually",
    "noise_bounce",
    "noise_auto_reply",
    "noise_bulk",
    "internal",
    "no_external",
    "blocklisted",
    "system_sender",
    "unknown",
)
MEMO_MAX = 200_000  # entries of the per-address memos; a daemon's run lasts for months
_ROLES = frozenset({"from", "reply_to", "to", "cc", "bcc"})  # not "sender", the submitter


class _Address(NamedTuple):
    """What one external address (in one role) says, the same for every message: memoised
    on the index, which is the same for a whole run (and, cached, for many)."""

    decisions: tuple[LinkDecision, ...]  # its contact and company, or a company by domain
    note: str  # for the message's detail, "" when none
    unknown: bool  # a person who is no contact: for the suggestions queue
    company: int | None  # that person's company by domain


# Memoised: a run asks about the same few thousand addresses again and again.
_is_robot = functools.lru_cache(maxsize=65536)(normalize.is_system_sender)
_is_role = functools.lru_cache(maxsize=65536)(normalize.is_role_address)
_is_free = functools.lru_cache(maxsize=65536)(normalize.is_free_mail)


def is_own(key: str, policy: Policy, memo: Memo) -> bool:
    """An address of the organization (`Identity.is_ours`: a user, an alias, an organization
    domain), remembered in `memo`."""
    own = memo.own.get(key)
    if own is None:
        own = policy.identity.is_ours(key)
        if len(memo.own) >= MEMO_MAX:
            memo.own.clear()
        memo.own[key] = own
    return own


def _externals(m: MessageFacts, policy: Policy, memo: Memo) -> list[Party]:
    seen: set[str] = set()
    out = []
    known = memo.own
    for p in m.parties:
        key = p.key
        if p.role in _ROLES and key not in seen:
            own = known.get(key)
            if own is None:
                own = is_own(key, policy, memo)
            if not own:
                seen.add(key)
                out.append(p)
    return out


def _gate(
    m: MessageFacts, policy: Policy, memo: Memo, unlink_all: bool
) -> tuple[str, str, list[Party]]:
    """(reason, detail, external parties): reason "" when the message may be linked."""
    if unlink_all:
        return "unlinked_manually", "unlinked by hand (not CRM-relevant)", []
    if m.flags:
        for flag, reason in NOISE_FLAGS:
            if flag in m.flags:
                return reason, f"classified {flag.replace('_', '-')}: noise links to no one", []
    if m.direction == "internal":
        return "internal", "every participant is internal", []
    externals = _externals(m, policy, memo)
    if not externals:
        return "no_external", "no participant outside the organization", []
    lists: list[Blocklist] = []
    if policy.blocklist.addresses or policy.blocklist.domains or policy.user_blocklists:
        lists = [policy.blocklist, *(policy.user_blocklists.get(u, Blocklist()) for u in m.owners)]
        lists = [b for b in lists if b]
    if lists:
        blocked = [p for p in externals if any(b.blocks(p.key) for b in lists)]
        sender_blocked = any(p.role == "from" for p in blocked)
        if blocked and (sender_blocked or len(blocked) == len(externals)):
            return "blocklisted", f"{blocked[0].key} is blocklisted", []
        externals = [p for p in externals if p not in blocked]
    return "", "", externals


def _address(key: str, role: str, ix: Index) -> _Address:
    memo = ix.address_memo.get((key, role))
    if memo is not None:
        return memo  # type: ignore[no-any-return]
    contact = ix.contacts.get(key)
    if contact is not None:
        why = f"{key} ({role}) is this contact's"
        found = [LinkDecision("contact", contact, "address", ADDRESS, why)]
        company = ix.contact_company.get(contact)
        if company is not None:
            why = f"company of contact #{contact}"
            found.append(LinkDecision("company", company, "contact", CONTACT, why))
        memo = _Address(tuple(found), "", False, None)
    elif _is_robot(key):
        memo = _Address((), f"{key}: system sender", False, None)
    else:
        company, why = ix.company_for_domain(key.rpartition("@")[2])
        by_domain: tuple[LinkDecision, ...] = ()
        if company is not None:
            why_link = f"domain {why} of {key} ({role})"
            by_domain = (LinkDecision("company", company, "domain", DOMAIN, why_link),)
        if _is_role(key):
            memo = _Address(by_domain, "", False, company)
        else:
            note = f"{key}: not a contact" + ("" if company else f" ({why})")
            memo = _Address(by_domain, note, True, company)
    if len(ix.address_memo) >= MEMO_MAX:
        ix.address_memo.clear()
    ix.address_memo[(key, role)] = memo
    return memo


def _references(subject: str, policy: Policy, memo: Memo) -> tuple[str, ...]:
    """The opportunity references the configured pattern finds in a raw subject."""
    refs = tuple(
        found.group(1) if found.groups() else found.group(0)
        for found in policy.opportunity_pattern.finditer(subject)
    )
    if len(memo.references) >= MEMO_MAX:
        memo.references.clear()
    memo.references[subject] = refs
    return refs


def _message_evidence(
    m: MessageFacts, externals: list[Party], ix: Index, policy: Policy, memo: Memo
) -> tuple[dict[tuple[str, int], LinkDecision], list[tuple[Party, int | None]], list[str]]:
    """Targets found in the message itself, unknown persons, and notes for the detail."""
    found: dict[tuple[str, int], LinkDecision] = {}
    unknown: list[tuple[Party, int | None]] = []
    notes: list[str] = []
    refs = memo.references.get(m.subject)
    if refs is None:
        refs = _references(m.subject, policy, memo)
    for ref in refs:
        opp_id = ix.opp_by_ref.get(ref.upper())
        if opp_id is None:
            notes.append(f"subject tag {ref} is no opportunity")
        elif ("opportunity", opp_id) not in found:
            why = f"subject tag {ref}"
            found[("opportunity", opp_id)] = LinkDecision(
                "opportunity", opp_id, "subject_tag", SUBJECT_TAG, why
            )
    for p in externals:
        address = _address(p.key, p.role, ix)
        for d in address.decisions:
            key = (d.kind, d.target_id)
            old = found.get(key)
            if old is None or old.confidence < d.confidence:
                found[key] = d
        if address.note:
            notes.append(address.note)
        if address.unknown:
            unknown.append((p, address.company))
    return found, unknown, notes


def _candidates(
    contacts: Iterable[int],
    companies: Iterable[int],
    t: datetime | None,
    ix: Index,
    policy: Policy,
    banned: set[int],
) -> tuple[list[Opp], str, str]:
    """The opportunities the policy may choose from at time `t`, where they came from, and
    a note naming the closed ones left out because their dates are unknown."""
    undated: list[Opp] = []
    for source, owners, table in (
        ("contact", sorted(contacts), ix.contact_opps),
        ("company", sorted(companies), ix.company_opps),
    ):
        ids = {o for owner in owners for o in table.get(owner, ()) if o not in banned}
        opps = [ix.opps[o] for o in sorted(ids) if o in ix.opps]
        status = {o.id: o.status_at(t, policy.retro_window) for o in opps}
        active = [o for o in opps if status[o.id] == "active"]
        retro = [o for o in opps if status[o.id] == "retro"]
        if active or retro:
            return (active or retro), source + ("" if active else "_retro"), ""
        undated.extend(o for o in opps if not o.dates_known and o not in undated)
    if not undated:
        return [], "", ""
    labels = ", ".join(o.label for o in undated)
    note = f"closed opportunity {labels} has no known open dates: linked only by a subject tag"
    return [], "", note + " or by hand"


def _newest(opps: Sequence[Opp]) -> Opp:
    return max(opps, key=lambda o: (o.created_at, o.id))


def _choose(
    opps: list[Opp], source: str, policy: Policy, t: datetime | None
) -> tuple[list[LinkDecision], str]:
    """The policy's links among `opps`, and the review note ("" when it decided)."""
    if not opps:
        return [], ""
    owner = "contact" if source.startswith("contact") else "company"
    when = f" at {t:%Y-%m-%d}" if t else ""
    retro = " (created after it, within the retro window)" if source.endswith("_retro") else ""
    labels = ", ".join(o.label for o in opps)
    if policy.multiple == "review" or (policy.multiple == "only_if_one" and len(opps) > 1):
        return [], f"{len(opps)} candidate opportunities of the {owner}{when}: {labels}"
    if len(opps) == 1:
        why = f"only opportunity of the {owner} open{when}{retro}"
        return [LinkDecision("opportunity", opps[0].id, owner, ONE, why)], ""
    if policy.multiple == "all":
        why = f"one of {len(opps)} opportunities of the {owner}{when} ({labels}); policy all"
        return [LinkDecision("opportunity", o.id, owner, ALL, why) for o in opps], ""
    pick = _newest(opps)
    others = ", ".join(o.label for o in opps if o is not pick)
    why = f"newest of the {owner}'s opportunities{when}{retro}; alternatives: {others}"
    return [LinkDecision("opportunity", pick.id, owner, PICK, why)], ""


def match_thread(
    thread: ThreadMatchFacts, ix: Index, policy: Policy, memo: Memo | None = None
) -> ThreadVerdict:
    """Decide the automatic links of every message of `thread` (see the module docstring).

    Manual message-level links are sticky rows the caller keeps: they are not returned, but
    they count for the thread (continuity, "the thread already has an opportunity"). `memo`
    is what earlier threads matched under `policy` learned (a fresh one when None).
    """
    memo = Memo() if memo is None else memo
    # In the order of the module docstring: gates and evidence per message, pooled for the
    # thread; the opportunity policy; then each message's share of the pool.
    work = _read_marks(thread.marks)
    ordered = _in_date_order(thread.messages)
    _gather_evidence(work, ordered, ix, policy, memo)
    eligible = [m for m in ordered if not work.gates[m.id][0]]
    review, policy_links = _apply_opportunity_policy(work, thread.thread_id, eligible, ix, policy)
    inherited = _inherited(work)
    verdicts = tuple(
        _verdict(work, m, inherited, policy_links, review, policy, memo) for m in ordered
    )
    return ThreadVerdict(thread.thread_id, verdicts, review)


_Target = tuple[str, int]  # (kind, target id)


@dataclass(slots=True)
class _Work:
    """What the steps of `match_thread` know of one thread so far."""

    thread_tombs: set[_Target]  # removed from the whole thread; ("any", 0): unlink everything
    msg_tombs: dict[int, set[_Target]]  # message id → removed from that message
    manual_on: dict[int, set[_Target]]  # message id → linked by hand on that message
    # The thread's pool: each target with its strongest decision, and the Message-ID of the
    # message that gave it ("" for manual links), in the order they were first found.
    pooled: dict[_Target, LinkDecision] = field(default_factory=dict)
    source: dict[_Target, str] = field(default_factory=dict)
    # Per message id: its gate (reason "" when it may be linked); for those that pass it,
    # the targets of its own evidence, its unknown correspondents and its notes.
    gates: dict[int, tuple[str, str]] = field(default_factory=dict)
    own: dict[int, dict[_Target, LinkDecision]] = field(default_factory=dict)
    unknown: dict[int, list[tuple[Party, int | None]]] = field(default_factory=dict)
    notes: dict[int, list[str]] = field(default_factory=dict)


def _read_marks(marks: tuple[Mark, ...]) -> _Work:
    """Sort the manual marks into tombstones (thread, message) and manual links; the manual
    links are the first entries of the thread's pool."""
    thread_tombs = {(k.kind, k.target_id) for k in marks if k.tombstone and not k.message_id}
    work = _Work(thread_tombs, {}, {})
    for k in marks:
        key = (k.kind, k.target_id)
        if k.tombstone and k.message_id is not None:
            work.msg_tombs.setdefault(k.message_id, set()).add(key)
        elif not k.tombstone and key not in thread_tombs:
            if k.message_id is not None:
                work.manual_on.setdefault(k.message_id, set()).add(key)
            why = f"linked by hand{f' by {k.by}' if k.by else ''}"
            where = "on the thread" if k.message_id is None else "on a message of the thread"
            work.pooled[key] = LinkDecision(k.kind, k.target_id, "manual", MANUAL, f"{why} {where}")
            work.source[key] = ""
    return work


def _in_date_order(messages: tuple[MessageFacts, ...]) -> Sequence[MessageFacts]:
    """Oldest first, undated last, then by id: the order of the thread's conversation."""
    if len(messages) <= 1:
        return messages
    return sorted(messages, key=lambda m: (m.sent_at is None, m.sent_at or datetime.min, m.id))


def _gather_evidence(
    work: _Work, ordered: Sequence[MessageFacts], ix: Index, policy: Policy, memo: Memo
) -> None:
    """Gate each message, find the evidence of those that pass, and pool it (thread union):
    each target keeps its strongest decision. Tombstones take targets out first."""
    thread_tombs, msg_tombs, pooled, source = (
        work.thread_tombs, work.msg_tombs, work.pooled, work.source
    )  # fmt: skip
    unlink_all_thread = ("any", 0) in thread_tombs
    for m in ordered:
        tombs = msg_tombs.get(m.id)
        unlink_all = unlink_all_thread or (tombs is not None and ("any", 0) in tombs)
        reason, detail, externals = _gate(m, policy, memo, unlink_all)
        work.gates[m.id] = (reason, detail)
        if reason:
            continue
        found, work.unknown[m.id], work.notes[m.id] = _message_evidence(
            m, externals, ix, policy, memo
        )
        if tombs or thread_tombs:
            gone = thread_tombs | (tombs or set())
            found = {k: d for k, d in found.items() if k not in gone}
        work.own[m.id] = found
        for key, d in found.items():
            old = pooled.get(key)
            if old is None or old.confidence < d.confidence:
                pooled[key] = d
                source[key] = m.message_id


def _apply_opportunity_policy(
    work: _Work, tid: int, eligible: list[MessageFacts], ix: Index, policy: Policy
) -> tuple[ReviewRequest | None, dict[int, list[LinkDecision]]]:
    """The opportunity policy, when neither a manual link nor a subject tag names one.

    Decided at the thread's first eligible message, the choice joins the pool (the other
    messages inherit it); with `most_recent`, decided at each message's own date, it is
    returned per message id instead. Also returns the review request, if any.
    """
    review: ReviewRequest | None = None
    policy_links: dict[int, list[LinkDecision]] = {}
    pooled = work.pooled
    if not eligible or any(k[0] == "opportunity" for k in pooled):
        return review, policy_links
    contacts = {t for kind, t in pooled if kind == "contact"}
    companies = {t for kind, t in pooled if kind == "company"}
    banned = {t for kind, t in work.thread_tombs if kind == "opportunity"}
    moments = eligible if policy.multiple == "most_recent" else eligible[:1]
    for m in moments:
        opps, origin, undated = _candidates(contacts, companies, m.sent_at, ix, policy, banned)
        if undated:  # said on each message the decision covers, for `explain`
            for covered in [m] if policy.multiple == "most_recent" else eligible:
                work.notes[covered.id].append(undated)
        decided, note = _choose(opps, origin, policy, m.sent_at)
        if note:
            review = ReviewRequest(tid, tuple(o.id for o in opps), note)
        if policy.multiple == "most_recent":
            policy_links[m.id] = decided
        else:  # decided for the thread at its first message: the others inherit it
            for d in decided:
                key = (d.kind, d.target_id)
                pooled[key] = work.own[m.id][key] = d
                work.source[key] = m.message_id
    return review, policy_links


def _inherited(work: _Work) -> dict[_Target, LinkDecision]:
    """What a message without evidence of its own gets for each pooled target: the same for
    every message of the thread, so made once."""
    inherited: dict[_Target, LinkDecision] = {}
    for key, d in work.pooled.items():
        if d.method == "manual":
            inherited[key] = d
        else:
            why = f"thread continuity: {work.source[key]} links it ({d.method}: {d.explanation})"
            inherited[key] = LinkDecision(*key, "thread", min(THREAD, d.confidence), why)
    return inherited


def _verdict(
    work: _Work,
    m: MessageFacts,
    inherited: dict[_Target, LinkDecision],
    policy_links: dict[int, list[LinkDecision]],
    review: ReviewRequest | None,
    policy: Policy,
    memo: Memo,
) -> MessageVerdict:
    """One message's verdict: its gate's reason, or the pooled targets (its own decision for
    those it has evidence of) less its tombstones and manual links, and the policy's."""
    reason, detail = work.gates[m.id]
    manual = work.manual_on.get(m.id)
    if reason:
        if manual:
            detail = f"linked by hand; automatic rules skip it ({reason}: {detail})"
            reason = "linked"
        return MessageVerdict(m.id, (), reason, detail)
    mine = work.own[m.id]
    tombs = work.msg_tombs.get(m.id)
    if tombs or manual:
        gone = tombs or set()
        skip = gone | (manual or set())
        links = [mine.get(k) or d for k, d in inherited.items() if k not in skip]
        links.extend(d for d in policy_links.get(m.id, ()) if (d.kind, d.target_id) not in gone)
    else:
        links = [mine.get(k) or d for k, d in inherited.items()]
        links.extend(policy_links.get(m.id, ()))
    note = "; ".join(work.notes[m.id])
    if review is not None:
        note = f"{note}; opportunity to review: {review.explanation}".lstrip("; ")
    unknown = tuple(work.unknown[m.id])
    if links or manual:
        return MessageVerdict(m.id, tuple(links), "linked", note, unknown)
    system = all(_is_robot(p.key) for p in _externals(m, policy, memo))
    return MessageVerdict(m.id, (), "system_sender" if system else "unknown", note, unknown)


def split_name(display: str) -> tuple[str, str]:
    """(first name, last name) from a display name: "Jane Doe", "DOE Jane" or "Doe, Jane"."""
    display = " ".join(display.replace('"', " ").split())
    if "@" in display or not display:
        return "", ""
    if "," in display:
        last, _, first = display.partition(",")
        return first.strip(), last.strip()
    words = display.split(" ")
    if len(words) > 1 and words[0].isupper() and not words[-1].isupper():
        return " ".join(words[1:]), words[0]  # the French "DUPONT Jean"
    return " ".join(words[:-1]), words[-1]


def contacts_to_create(
    threads: Iterable[ThreadMatchFacts], ix: Index, policy: Policy, memo: Memo | None = None
) -> list[NewContact]:
    """The contacts the auto-creation policy creates for these threads' correspondents.

    "sent": people we wrote to; "sent_and_received": also everyone on mail we received.
    Never free-mail, role, no-reply or our own addresses, blocklisted ones or noise.
    """
    if policy.auto_create == "none":
        return []
    memo = Memo() if memo is None else memo
    out: dict[str, NewContact] = {}
    for thread in threads:
        unlink_all = any(k.kind == "any" and k.tombstone for k in thread.marks)
        for m in thread.messages:
            if m.direction == "inbound" and policy.auto_create != "sent_and_received":
                continue
            reason, _, externals = _gate(m, policy, memo, unlink_all)
            if reason:
                continue
            for p in externals:
                if m.direction == "outbound" and p.role not in ("to", "cc", "bcc"):
                    continue
                if p.key in ix.contacts or p.key in out:
                    continue
                domain = p.key.rpartition("@")[2]
                if _is_role(p.key) or _is_free(domain):
                    continue
                company, _ = ix.company_for_domain(domain)
                out[p.key] = NewContact(p.key, p.name, company, m.id)
    return list(out.values())
