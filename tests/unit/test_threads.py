"""Pure threading logic: grouping, merges, the narrow subject fallback, summaries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from mailmanager.mail import threads
from mailmanager.mail.threads import FallbackCandidate, SummaryInput, ThreadInput


def groups_of(
    inputs: list[ThreadInput], existing: dict[str, int] | None = None
) -> set[frozenset[str]]:
    return {frozenset(g.keys) for g in threads.plan(inputs, existing or {})}


def test_reply_joins_parent_and_phantom_parent_joins_siblings() -> None:
    inputs = [
        ThreadInput("a", ("a@x",)),
        ThreadInput("b", ("b@x", "a@x")),
        # c and d both reply to a message we never saw: they still group.
        ThreadInput("c", ("c@x", "ghost@x")),
        ThreadInput("d", ("d@x", "ghost@x")),
        ThreadInput("e", ("e@x",)),
    ]
    assert groups_of(inputs) == {
        frozenset({"a", "b"}),
        frozenset({"c", "d"}),
        frozenset({"e"}),
    }


def test_order_does_not_matter_and_loops_are_harmless() -> None:
    base = [
        ThreadInput("1", ("1@x", "3@x")),  # a reference loop: 1 → 3 → 2 → 1
        ThreadInput("2", ("2@x", "1@x")),
        ThreadInput("3", ("3@x", "2@x")),
        ThreadInput("4", ("4@x", "9@x", "1@x")),
        ThreadInput("5", ("5@x",)),
    ]
    expected = groups_of(base)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = base[:]
        rng.shuffle(shuffled)
        assert groups_of(shuffled) == expected
    assert expected == {frozenset({"1", "2", "3", "4"}), frozenset({"5"})}


def test_existing_threads_are_reused_and_merged_smallest_first() -> None:
    # The new message references two messages stored in threads 7 and 3: they merge into 3.
    [group] = threads.plan([ThreadInput("n", ("n@x", "a@x", "b@x"))], {"a@x": 7, "b@x": 3})
    assert group.existing == (3, 7)
    assert group.new_nodes == ("n@x",)


def test_new_group_lists_all_new_nodes() -> None:
    [group] = threads.plan([ThreadInput("n", ("n@x", "p@x"))], {})
    assert group.existing == ()
    assert set(group.new_nodes) == {"n@x", "p@x"}


T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


def test_subject_fallback_needs_sender_and_another_shared_participant() -> None:
    cand = FallbackCandidate(5, T0, frozenset({"client@acme.fr", "alice@example.com"}))
    other = FallbackCandidate(6, T0, frozenset({"someone@else.fr", "alice@example.com"}))
    at = T0 + timedelta(days=1)
    assert (
        threads.subject_fallback(
            "client@acme.fr",
            ["client@acme.fr", "alice@example.com"],
            at,
            True,
            [cand, other],
            WINDOW,
        )
        == 5
    )
    # A stranger writing "Re: same subject" is not merged.
    assert (
        threads.subject_fallback(
            "x@y.fr", ["x@y.fr", "alice@example.com"], at, True, [cand], WINDOW
        )
        is None
    )
    # Too late.
    assert (
        threads.subject_fallback(
            "client@acme.fr",
            ["client@acme.fr", "alice@example.com"],
            T0 + timedelta(days=30),
            True,
            [cand],
            WINDOW,
        )
        is None
    )
    # Two qualifying threads: ambiguous, so no merge.
    twin = FallbackCandidate(8, T0, cand.participants)
    assert (
        threads.subject_fallback(
            "client@acme.fr",
            ["client@acme.fr", "alice@example.com"],
            at,
            True,
            [cand, twin],
            WINDOW,
        )
        is None
    )


def test_summary_ignores_noise_for_last_real_message() -> None:
    msgs = [
        SummaryInput(1, T0, "outbound", False, "Devis"),
        SummaryInput(2, T0 + timedelta(hours=1), "inbound", True, "Réponse automatique"),
        SummaryInput(3, None, "inbound", False, ""),
    ]
    s = threads.summarize(msgs)
    assert s.first_at == T0 and s.last_at == T0 + timedelta(hours=1)
    assert s.last_outbound_at == T0
    assert s.last_inbound_at is None  # the auto-reply is noise; message 3 has no date
    assert s.last_direction == "inbound" and s.last_message_id == 3
    assert s.message_count == 3
    assert s.subject == "Devis"


def test_subject_fallback_original_after_its_header_less_reply() -> None:
    people = ["alice@example.com", "client@acme.fr"]
    reply = FallbackCandidate(
        9, T0 + timedelta(days=1), frozenset(people), lone_reply_at=T0 + timedelta(days=1)
    )
    ordinary = FallbackCandidate(10, T0 + timedelta(days=1), frozenset(people))
    # The original (no prefix) joins the lone later reply, never an ordinary thread.
    assert threads.subject_fallback("alice@example.com", people, T0, False, [reply], WINDOW) == 9
    assert (
        threads.subject_fallback("alice@example.com", people, T0, False, [ordinary], WINDOW) is None
    )
    # A reply sent before the "original" is not its answer.
    late = T0 + timedelta(days=2)
    assert (
        threads.subject_fallback("alice@example.com", people, late, False, [reply], WINDOW) is None
    )
