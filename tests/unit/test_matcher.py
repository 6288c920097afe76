"""The matching cascade, rule by rule, on plain values (no database)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from mailmanager.config import identity
from mailmanager.matching import cascade as matcher
from mailmanager.matching.cascade import (
    Blocklist,
    Index,
    Mark,
    MessageFacts,
    Opp,
    Party,
    ThreadMatchFacts,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALICE = "alice@example.com"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def policy(**kw: object) -> matcher.Policy:
    base: dict[str, object] = {
        "identity": identity.Identity.build(domains=["example.com"], addresses=[ALICE]),
    }
    base.update(kw)
    return matcher.Policy(**base)  # type: ignore[arg-type]


def index() -> Index:
    ix = Index(
        contacts={"jane@acme.fr": 1, "tom@acme.fr": 2, "zoe@gmail.com": 3, "max@beta.de": 4},
        contact_company={1: 10, 2: 10, 3: None, 4: 20},
        companies={"acme.fr": 10, "acme.co.uk": 10, "beta.de": 20},
    )
    return ix


def add_opps(ix: Index, *opps: Opp, contacts: dict[int, tuple[int, ...]] | None = None) -> Index:
    for o in opps:
        ix.opps[o.id] = o
        if o.reference:
            ix.opp_by_ref[o.reference.upper()] = o.id
        if o.company_id is not None:
            ix.company_opps[o.company_id] = (*ix.company_opps.get(o.company_id, ()), o.id)
    ix.contact_opps.update(contacts or {})
    return ix


def opp(oid: int, created: float = -30, company: int | None = 10, **kw: object) -> Opp:
    return Opp(oid, f"OPP-{oid}", company, kw.pop("open", True), day(created), **kw)  # type: ignore[arg-type]


def msg(
    mid: int,
    frm: str,
    to: str | list[str] = ALICE,
    subject: str = "Devis",
    at: float = 0,
    direction: str | None = None,
    cc: list[str] | None = None,
    flags: frozenset[str] = frozenset(),
    thread: int = 1,
    owners: frozenset[str] = frozenset({ALICE}),
) -> MessageFacts:
    tos = [to] if isinstance(to, str) else to
    parties = [Party("from", frm, frm)] + [Party("to", a, a) for a in tos]
    parties += [Party("cc", a, a) for a in cc or []]
    if direction is None:
        direction = "outbound" if frm.endswith("@example.com") else "inbound"
    return MessageFacts(
        mid, thread, f"m{mid}@x", day(at), direction, subject, flags, tuple(parties), owners
    )


def run(
    *messages: MessageFacts, marks: tuple[Mark, ...] = (), ix: Index | None = None, **kw: object
) -> matcher.ThreadVerdict:
    return matcher.match_thread(ThreadMatchFacts(1, messages, marks), ix or index(), policy(**kw))


def links(verdict: matcher.ThreadVerdict, mid: int) -> dict[tuple[str, int], str]:
    mv = next(v for v in verdict.messages if v.message_id == mid)
    return {(d.kind, d.target_id): d.method for d in mv.links}


def reason(verdict: matcher.ThreadVerdict, mid: int) -> str:
    return next(v for v in verdict.messages if v.message_id == mid).reason


# --- exact address and domain ----------------------------------------------------------------


def test_exact_address_links_contact_and_its_company() -> None:
    v = run(msg(1, "jane@acme.fr"))
    assert links(v, 1) == {("contact", 1): "address", ("company", 10): "contact"}
    assert reason(v, 1) == "linked"
    mv = v.messages[0]
    assert all(0 < d.confidence <= 1 and d.explanation for d in mv.links)


def test_unknown_address_at_company_subdomain_links_company_by_registrable_domain() -> None:
    v = run(msg(1, "bob@mail.acme.co.uk"))
    assert links(v, 1) == {("company", 10): "domain"}
    (party, company), *_ = v.messages[0].unknown
    assert party.key == "bob@mail.acme.co.uk" and company == 10


def test_free_mail_never_maps_to_a_company_and_is_suggested() -> None:
    ix = index()
    ix.companies["gmail.com"] = 99  # even a wrong CRM row must not make gmail a company
    v = run(msg(1, "someone@gmail.com"), ix=ix)
    assert links(v, 1) == {}
    assert reason(v, 1) == "unknown"
    assert "free-mail" in v.messages[0].detail
    assert [p.key for p, _ in v.messages[0].unknown] == ["someone@gmail.com"]


def test_role_address_links_the_company_not_a_person() -> None:
    v = run(msg(1, "info@acme.fr"))
    assert links(v, 1) == {("company", 10): "domain"}
    assert v.messages[0].unknown == ()


def test_system_sender_links_nothing() -> None:
    v = run(msg(1, "no-reply@acme.fr"))
    assert links(v, 1) == {} and reason(v, 1) == "system_sender"


def test_outbound_links_recipients_and_cc() -> None:
    v = run(msg(1, ALICE, to="jane@acme.fr", cc=["max@beta.de"]))
    assert set(links(v, 1)) == {("contact", 1), ("company", 10), ("contact", 4), ("company", 20)}


# --- gates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "code"),
    [("bounce", "noise_bounce"), ("auto_reply", "noise_auto_reply"), ("bulk", "noise_bulk")],
)
def test_noise_links_to_no_one(flag: str, code: str) -> None:
    ix = add_opps(index(), opp(5))
    v = run(msg(1, "jane@acme.fr", subject="[OPP-5] out of office", flags=frozenset({flag})), ix=ix)
    assert links(v, 1) == {} and reason(v, 1) == code


def test_internal_mail_links_to_no_one() -> None:
    v = run(msg(1, ALICE, to="bob@example.com", direction="internal"))
    assert reason(v, 1) == "internal" and links(v, 1) == {}


def test_org_subdomain_and_own_addresses_are_never_correspondents() -> None:
    v = run(msg(1, "jane@acme.fr", to=["bob@eu.example.com"]))
    assert ("contact", 1) in links(v, 1)
    assert not any(p.key.endswith("example.com") for p, _ in v.messages[0].unknown)


def test_global_blocklist_domain_covers_subdomains_and_blocks_sender() -> None:
    v = run(msg(1, "jane@mail.acme.fr"), blocklist=Blocklist.parse(["@acme.fr"]))
    assert reason(v, 1) == "blocklisted" and links(v, 1) == {}


def test_blocked_recipient_is_ignored_but_others_still_link() -> None:
    m = msg(1, ALICE, to=["jane@acme.fr", "doctor@clinic.fr"])
    v = run(m, blocklist=Blocklist.parse(["doctor@clinic.fr"]))
    assert reason(v, 1) == "linked" and ("contact", 1) in links(v, 1)
    assert not any(p.key == "doctor@clinic.fr" for p, _ in v.messages[0].unknown)


def test_per_user_blocklist_applies_to_that_users_mailboxes_only() -> None:
    lists = {"bob@example.com": Blocklist.parse(["@acme.fr"])}
    mine = run(msg(1, "jane@acme.fr", owners=frozenset({ALICE})), user_blocklists=lists)
    bobs = run(msg(1, "jane@acme.fr", owners=frozenset({"bob@example.com"})), user_blocklists=lists)
    assert reason(mine, 1) == "linked"
    assert reason(bobs, 1) == "blocklisted"


# --- subject tags -----------------------------------------------------------------------------


def test_subject_tag_from_raw_subject_any_case() -> None:
    ix = add_opps(index(), opp(7, company=None))
    v = run(msg(1, "someone@gmail.com", subject="RE: [opp-7] Devis portes"), ix=ix)
    assert links(v, 1) == {("opportunity", 7): "subject_tag"}


def test_unknown_tag_is_noted_and_custom_pattern_works() -> None:
    ix = add_opps(index(), Opp(8, "DEAL-2041", None, True, day(-5)))
    v = run(msg(1, "jane@acme.fr", subject="[OPP-99] x"), ix=ix)
    assert "OPP-99 is no opportunity" in v.messages[0].detail
    pattern = re.compile(r"#(DEAL-\d+)", re.IGNORECASE)
    v = run(msg(1, "x@gmail.com", subject="Re: #DEAL-2041"), ix=ix, opportunity_pattern=pattern)
    assert links(v, 1) == {("opportunity", 8): "subject_tag"}


def test_tag_beats_policy_even_when_contact_has_several_opportunities() -> None:
    ix = add_opps(index(), opp(5), opp(6), contacts={1: (5, 6)})
    v = run(msg(1, "jane@acme.fr", subject="OPP-6 relance"), ix=ix)
    assert links(v, 1)[("opportunity", 6)] == "subject_tag"
    assert ("opportunity", 5) not in links(v, 1) and v.review is None


# --- thread continuity ------------------------------------------------------------------------


def test_thread_keeps_its_links_for_unknown_repliers_and_earlier_messages() -> None:
    ix = add_opps(index(), opp(5, company=None))
    first = msg(1, ALICE, to="someone@gmail.com", at=0)
    tagged = msg(2, "someone@gmail.com", subject="RE: [OPP-5]", at=1)
    colleague = msg(3, "newguy@gmail.com", subject="RE: RE:", at=2)
    v = run(colleague, tagged, first, ix=ix)
    assert links(v, 2) == {("opportunity", 5): "subject_tag"}
    assert links(v, 1) == {("opportunity", 5): "thread"}
    assert links(v, 3) == {("opportunity", 5): "thread"}
    assert "m2@x" in next(d for d in v.messages if d.message_id == 3).links[0].explanation


def test_result_does_not_depend_on_arrival_order() -> None:
    ix = add_opps(index(), opp(5), opp(6, created=-2), contacts={1: (5, 6)})
    messages = [
        msg(1, ALICE, to="jane@acme.fr", at=0),
        msg(2, "tom@acme.fr", at=1, cc=["x@gmail.com"]),
        msg(3, "bob@acme.co.uk", at=2),
        msg(4, ALICE, to="zoe@gmail.com", at=3, subject="tag OPP-6"),
    ]
    expected = run(*messages, ix=ix, multiple="thread_sticky")
    for seed in range(5):
        shuffled = messages[:]
        random.Random(seed).shuffle(shuffled)
        got = run(*shuffled, ix=ix, multiple="thread_sticky")
        assert sorted(got.messages, key=lambda m: m.message_id) == sorted(
            expected.messages, key=lambda m: m.message_id
        )


# --- several opportunities ----------------------------------------------------------------------


def test_only_if_one_links_a_single_open_opportunity() -> None:
    ix = add_opps(index(), opp(5), contacts={1: (5,)})
    v = run(msg(1, "jane@acme.fr"), ix=ix)
    assert links(v, 1)[("opportunity", 5)] == "contact"


def test_only_if_one_sends_several_to_review_with_alternatives() -> None:
    ix = add_opps(index(), opp(5), opp(6), contacts={1: (5, 6)})
    v = run(msg(1, "jane@acme.fr"), msg(2, ALICE, to="jane@acme.fr", at=1), ix=ix)
    assert not any(k[0] == "opportunity" for k in links(v, 1))
    assert v.review is not None and v.review.candidates == (5, 6)
    assert "OPP-5" in v.review.explanation and "OPP-6" in v.review.explanation
    assert reason(v, 1) == "linked"  # the contact still is


def test_company_opportunities_used_when_contact_has_none() -> None:
    ix = add_opps(index(), opp(5))
    v = run(msg(1, "bob@acme.fr"), ix=ix)
    assert links(v, 1) == {("company", 10): "domain", ("opportunity", 5): "company"}


def test_thread_sticky_takes_newest_and_names_alternatives() -> None:
    ix = add_opps(index(), opp(5, created=-30), opp(6, created=-3), contacts={1: (5, 6)})
    v = run(msg(1, "jane@acme.fr"), msg(2, "tom@acme.fr", at=1), ix=ix, multiple="thread_sticky")
    assert links(v, 1)[("opportunity", 6)] == "contact"
    assert links(v, 2)[("opportunity", 6)] == "thread"
    why = next(d for d in v.messages[0].links if d.kind == "opportunity").explanation
    assert "alternatives: OPP-5" in why


def test_most_recent_decides_per_message_date() -> None:
    ix = add_opps(index(), opp(5, created=-30), opp(6, created=10), contacts={1: (5, 6)})
    early, late = msg(1, "jane@acme.fr", at=0), msg(2, "jane@acme.fr", at=20)
    v = run(early, late, ix=ix, multiple="most_recent", retro_window=timedelta(0))
    assert ("opportunity", 5) in links(v, 1) and ("opportunity", 6) not in links(v, 1)
    assert ("opportunity", 6) in links(v, 2) and ("opportunity", 5) not in links(v, 2)


def test_all_links_every_candidate_and_review_never_chooses() -> None:
    ix = add_opps(index(), opp(5), opp(6), contacts={1: (5, 6)})
    both = run(msg(1, "jane@acme.fr"), ix=ix, multiple="all")
    assert {("opportunity", 5), ("opportunity", 6)} <= set(links(both, 1))
    ix1 = add_opps(index(), opp(5), contacts={1: (5,)})
    asked = run(msg(1, "jane@acme.fr"), ix=ix1, multiple="review")
    assert not any(k[0] == "opportunity" for k in links(asked, 1))
    assert asked.review is not None and asked.review.candidates == (5,)


def test_retro_window_links_history_before_the_opportunity_existed() -> None:
    ix = add_opps(index(), opp(5, created=100), contacts={1: (5,)})
    inside = run(msg(1, "jane@acme.fr"), ix=ix, retro_window=timedelta(days=365))
    outside = run(msg(1, "jane@acme.fr"), ix=ix, retro_window=timedelta(days=30))
    assert ("opportunity", 5) in links(inside, 1)
    assert (
        "retro" in next(d for d in inside.messages[0].links if d.kind == "opportunity").explanation
    )
    assert ("opportunity", 5) not in links(outside, 1)


def test_active_opportunity_beats_a_retro_one() -> None:
    ix = add_opps(index(), opp(5, created=-10), opp(6, created=5), contacts={1: (5, 6)})
    v = run(msg(1, "jane@acme.fr"), ix=ix)
    assert ("opportunity", 5) in links(v, 1) and v.review is None


def test_closed_opportunity_is_candidate_only_until_it_closed() -> None:
    won = opp(5, created=-60, open=False, closed_at=day(-1))
    ix = add_opps(index(), won, contacts={1: (5,)})
    assert ("opportunity", 5) in links(run(msg(1, "jane@acme.fr", at=-5), ix=ix), 1)
    assert ("opportunity", 5) not in links(run(msg(1, "jane@acme.fr", at=3), ix=ix), 1)


@pytest.mark.parametrize(
    ("closed_at", "last_activity_at"),
    [
        (None, None),  # imported lost, no dates: created_at is the import, no close date
        (day(-200), None),  # closed before the row was made: created already closed
        (None, day(5)),  # linking moves the last activity: no bound
    ],
    ids=["no-close-date", "closed-before-created", "last-activity-only"],
)
def test_closed_opportunity_without_known_dates_takes_no_mail_by_inference(
    closed_at: datetime | None, last_activity_at: datetime | None
) -> None:
    # created_at: the import, a month after the mail
    lost = Opp(5, "OPP-5", 10, False, day(30), closed_at, last_activity_at)
    ix = add_opps(index(), lost, contacts={1: (5,)})
    for at in (-400, -100, 0, 10, 40):
        v = run(msg(1, "jane@acme.fr", at=at), ix=ix)
        assert ("opportunity", 5) not in links(v, 1), at
        assert v.review is None
    detail = run(msg(1, "jane@acme.fr"), ix=ix).messages[0].detail
    assert "OPP-5 has no known open dates" in detail and "subject tag" in detail
    tagged = run(msg(1, "jane@acme.fr", subject="[OPP-5] Relance"), ix=ix)
    assert links(tagged, 1)[("opportunity", 5)] == "subject_tag"
    manual = run(msg(1, "jane@acme.fr"), ix=ix, marks=(Mark("opportunity", 5, False),))
    assert links(manual, 1)[("opportunity", 5)] == "manual"


def test_closed_opportunity_with_known_dates_uses_its_real_open_interval() -> None:
    won = opp(5, created=-60, open=False, closed_at=day(-10))
    ix = add_opps(index(), won, contacts={1: (5,)})
    window = timedelta(days=30)
    assert ("opportunity", 5) in links(
        run(msg(1, "jane@acme.fr", at=-30), ix=ix, retro_window=window), 1
    )
    retro = run(msg(1, "jane@acme.fr", at=-80), ix=ix, retro_window=window)
    assert "retro window" in next(d for d in retro.messages[0].links if d.kind == "opportunity")[4]
    assert ("opportunity", 5) not in links(
        run(msg(1, "jane@acme.fr", at=-100), ix=ix, retro_window=window), 1
    )
    after = run(msg(1, "jane@acme.fr", at=-9), ix=ix, retro_window=window)
    assert ("opportunity", 5) not in links(after, 1) and "no known open dates" not in str(after)
    # an open opportunity of the same company takes the later mail, the closed one no longer
    ix = add_opps(ix, opp(6, created=-5), contacts={1: (5, 6)})
    assert ("opportunity", 6) in links(
        run(msg(1, "jane@acme.fr", at=0), ix=ix, retro_window=window), 1
    )
    assert won.dates_known and not opp(7, open=False).dates_known and opp(8).dates_known


# --- manual links and tombstones ------------------------------------------------------------------


def test_manual_thread_link_reaches_every_message_and_skips_the_policy() -> None:
    ix = add_opps(index(), opp(5), opp(6), contacts={1: (5, 6)})
    marks = (Mark("opportunity", 6, False, None, "cli:alice"),)
    v = run(msg(1, "jane@acme.fr"), msg(2, "x@gmail.com", at=1), marks=marks, ix=ix)
    assert links(v, 1)[("opportunity", 6)] == "manual"
    assert links(v, 2)[("opportunity", 6)] == "manual"
    assert v.review is None and ("opportunity", 5) not in links(v, 1)


def test_thread_tombstone_removes_target_everywhere_and_from_candidates() -> None:
    ix = add_opps(index(), opp(5), opp(6), contacts={1: (5, 6)})
    marks = (Mark("opportunity", 5, True), Mark("company", 10, True))
    v = run(msg(1, "jane@acme.fr"), msg(2, "tom@acme.fr", at=1), marks=marks, ix=ix)
    assert links(v, 1) == {
        ("contact", 1): "address",
        ("contact", 2): "thread",
        ("opportunity", 6): "contact",
    }
    assert ("company", 10) not in links(v, 2)


def test_message_tombstone_only_affects_that_message_and_does_not_feed_the_thread() -> None:
    marks = (Mark("contact", 1, True, message_id=1),)
    v = run(msg(1, "jane@acme.fr"), msg(2, "x@gmail.com", at=1), marks=marks)
    assert ("contact", 1) not in links(v, 1) and ("contact", 1) not in links(v, 2)
    v2 = run(msg(1, "jane@acme.fr"), msg(2, "jane@acme.fr", at=1), marks=marks)
    assert ("contact", 1) not in links(v2, 1) and links(v2, 2)[("contact", 1)] == "address"


def test_unlink_all_marks_not_crm_relevant() -> None:
    v = run(msg(1, "jane@acme.fr"), msg(2, "jane@acme.fr", at=1), marks=(Mark("any", 0, True),))
    assert {m.reason for m in v.messages} == {"unlinked_manually"}
    assert all(not m.links for m in v.messages)


def test_manual_message_link_is_not_reemitted_but_counts_for_the_thread() -> None:
    marks = (Mark("contact", 2, False, message_id=1, by="cli:alice"),)
    noisy = msg(1, "robot@acme.fr", flags=frozenset({"auto_reply"}))
    v = run(noisy, msg(2, "x@gmail.com", at=1), marks=marks)
    assert links(v, 1) == {} and reason(v, 1) == "linked"
    assert links(v, 2) == {("contact", 2): "manual"}


# --- auto-creation, names, blocklists -----------------------------------------------------------


def test_auto_create_policies() -> None:
    out = msg(1, ALICE, to=["new@acme.fr", "info@acme.fr", "pal@gmail.com", "jane@acme.fr"])
    inbound = msg(2, "other@newco.io", at=1)
    thread = ThreadMatchFacts(1, (out, inbound))
    none = matcher.contacts_to_create([thread], index(), policy())
    sent = matcher.contacts_to_create([thread], index(), policy(auto_create="sent"))
    both = matcher.contacts_to_create([thread], index(), policy(auto_create="sent_and_received"))
    assert none == []
    assert [(c.key, c.company_id) for c in sent] == [("new@acme.fr", 10)]
    assert {c.key for c in both} == {"new@acme.fr", "other@newco.io"}


def test_auto_create_skips_noise_and_unlinked_threads() -> None:
    bounce = msg(1, ALICE, to="new@acme.fr", flags=frozenset({"bounce"}))
    pol = policy(auto_create="sent")
    assert matcher.contacts_to_create([ThreadMatchFacts(1, (bounce,))], index(), pol) == []
    marked = ThreadMatchFacts(1, (msg(1, ALICE, to="new@acme.fr"),), (Mark("any", 0, True),))
    assert matcher.contacts_to_create([marked], index(), pol) == []


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Jane Doe", ("Jane", "Doe")),
        ("Doe, Jane", ("Jane", "Doe")),
        ("DUPONT Jean", ("Jean", "DUPONT")),
        ("Marie-Claire de la Tour", ("Marie-Claire de la", "Tour")),
        ("jane@acme.fr", ("", "")),
        ("Cher", ("", "Cher")),
    ],
)
def test_split_name(display: str, expected: tuple[str, str]) -> None:
    assert matcher.split_name(display) == expected


def test_blocklist_parse_and_match() -> None:
    b = Blocklist.parse(["@acme.fr", "J.Doe+news@gmail.com"])
    assert b.blocks("x@acme.fr") and b.blocks("x@eu.mail.acme.fr")
    assert not b.blocks("x@notacme.fr")
    assert b.blocks("jdoe@gmail.com")  # stored as a match key
    assert not Blocklist() and b
