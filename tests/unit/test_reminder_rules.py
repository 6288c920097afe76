"""The pure reminder rules: anchors, what counts as a reply, and `reconcile`'s lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailmanager.config import identity, reminder_kinds
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import plan, rules

CAL = bt.calendar("Europe/Paris", holiday_country="FR")
ALICE = rules.UserRules(
    1, "alice@example.com", CAL, max_repeats=1, repeat_days=2, escalate_after=1, manager_id=2
)
BOB = rules.UserRules(2, "bob@example.com", CAL)
USERS = {"alice@example.com": ALICE, "bob@example.com": BOB}
BY_ID = {1: ALICE, 2: BOB}
ORG = rules.OrgRules(
    frozenset(reminder_kinds.THREAD), identity=identity.Identity.build(domains=["example.com"])
)
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)  # Monday


def msg(i: int, frm: str, to: tuple[str, ...], hours: float, **kw: object) -> rules.MessageFact:
    direction = "outbound" if frm.endswith("example.com") else "inbound"
    return rules.MessageFact(i, T0 + timedelta(hours=hours), direction, frm, to=to, **kw)  # type: ignore[arg-type]


def wants(*messages: rules.MessageFact, org: rules.OrgRules = ORG, **kw: object) -> list[str]:
    facts = rules.ThreadReminderFacts(1, tuple(messages), **kw)  # type: ignore[arg-type]
    return [f"{w.kind}:{w.cycle}" for w in rules.thread_wants(facts, USERS, org, {})[0]]


def test_anchors_skip_noise_and_internal_mail() -> None:
    ours = msg(1, "alice@example.com", ("jean@acme.fr",), 0)
    internal = msg(2, "alice@example.com", ("bob@example.com",), 1)
    auto = msg(3, "jean@acme.fr", ("alice@example.com",), 2, noise=True)
    assert wants(ours, internal, auto) == ["awaiting_reply:1"]
    reply = msg(4, "jean@acme.fr", ("alice@example.com",), 3)
    assert wants(ours, internal, auto, reply) == ["needs_response:4"]
    # Someone new at the same domain: a reply only when known to be the same company.
    other = msg(5, "sales@acme.fr", ("alice@example.com",), 4)
    assert wants(ours, other) == ["awaiting_reply:1", "needs_response:5"]
    ident = {
        "jean@acme.fr": rules.Identity(company_key="domain:acme.fr"),
        "sales@acme.fr": rules.Identity(company_key="domain:acme.fr"),
    }
    assert wants(ours, other, identities=ident) == ["needs_response:5"]
    # Copied only (Cc): no needs-response for Alice.
    cc_only = msg(6, "sales@acme.fr", ("info@example.com",), 5, cc=("alice@example.com",))
    assert wants(ours, cc_only, identities=ident) == []


def test_reply_from_another_address_of_the_same_contact() -> None:
    ours = msg(1, "alice@example.com", ("jean@acme.fr",), 0)
    other = msg(2, "jean.dupont@gmail.com", ("alice@example.com",), 5)
    ident = {"jean@acme.fr": rules.Identity(7), "jean.dupont@gmail.com": rules.Identity(7)}
    no_company = rules.OrgRules(ORG.rules, ORG.identity, reply_from_company=False)
    assert wants(ours, other, org=no_company, identities=ident) == ["needs_response:2"]
    assert wants(ours, other, org=no_company) == ["awaiting_reply:1", "needs_response:2"]


def row(
    status: str,
    due: datetime,
    sent: datetime | None = None,
    count: int = 0,
    kind: str = "awaiting_reply",
    rid: int = 10,
) -> plan.Row:
    return plan.Row(rid, kind, 1, status, 1, due, sent, count)


def want(due: datetime, not_before: datetime | None = None) -> rules.Want:
    return rules.Want("awaiting_reply", 1, 1, due, T0, "r", not_before=not_before)


def actions(p: plan.Plan) -> list[tuple[str, int | None]]:
    return [(c.action, c.user_id if c.want else c.reminder_id) for c in p.changes]


def test_reconcile_lifecycle() -> None:
    due = T0 + timedelta(days=3)
    now = due + timedelta(hours=1)
    assert actions(plan.reconcile([want(due)], [], BY_ID, ORG, now)) == [("create", 1)]
    # Never created about a message older than max_age.
    old = rules.Want("awaiting_reply", 1, 1, due, T0 - timedelta(days=40), "r")
    assert plan.reconcile([old], [], BY_ID, ORG, now).changes == ()
    # No longer wanted (a reply came): cancelled before it was sent, answered after (issue
    # #17: a sent reminder used to stay "sent" for ever); no longer wanted without an
    # answer (a newer follow-up): cancelled.
    assert actions(plan.reconcile([], [row("pending", due)], BY_ID, ORG, now)) == [("cancel", 10)]
    reply = {("awaiting_reply", 1)}
    for status in ("sent", "pending", "snoozed"):  # pending again: a repeat; snoozed after it
        sent = row(status, due, now, 1)
        assert actions(plan.reconcile([], [sent], BY_ID, ORG, now, answered=reply)) == [
            ("answer", 10)
        ]
    assert actions(plan.reconcile([], [row("sent", due, now, 1)], BY_ID, ORG, now)) == [
        ("cancel", 10)
    ]
    assert plan.reconcile([], [row("answered", due, now, 1)], BY_ID, ORG, now).changes == ()
    # Dismissed and done stay so; cancelled before being sent comes back.
    for status in ("dismissed", "done"):
        assert plan.reconcile([want(due)], [row(status, due)], BY_ID, ORG, now).changes == ()
    assert actions(plan.reconcile([want(due)], [row("cancelled", due)], BY_ID, ORG, now)) == [
        ("revive", 10)
    ]
    # Moved later by an absence notice, never earlier (that would undo a snooze).
    later = due + timedelta(days=5)
    moved = plan.reconcile([want(later, later)], [row("pending", due)], BY_ID, ORG, now)
    assert [(c.action, c.due_at) for c in moved.changes] == [("move", later)]
    assert plan.reconcile([want(due)], [row("pending", later)], BY_ID, ORG, now).changes == ()


def test_repeat_and_escalation_times() -> None:
    sent = datetime(2026, 11, 5, 21, tzinfo=UTC)  # Thursday evening
    again = datetime(2026, 11, 10, 8, tzinfo=UTC)  # Tuesday 09:00 in Paris (2 business days)
    w = want(T0 + timedelta(days=3))
    early = plan.reconcile([w], [row("sent", w.due_at, sent, 1)], BY_ID, ORG, again - timedelta(1))
    assert early.changes == () and early.next_check == again
    on_time = plan.reconcile([w], [row("sent", w.due_at, sent, 1)], BY_ID, ORG, again)
    assert [(c.action, c.due_at, c.user_id) for c in on_time.changes] == [
        ("repeat", again, None),
        ("escalate", again, 2),
    ]
    # Once escalated and repeated max_repeats times: nothing more, nothing to check.
    esc = row("sent", again, again, 1, kind="escalation:awaiting_reply", rid=11)
    done = plan.reconcile(
        [w], [row("sent", again, again, 2), esc], BY_ID, ORG, again + timedelta(30)
    )
    assert done.changes == () and done.next_check is None


def test_answered_reminders_of_a_thread() -> None:
    """`rules.answered`: our message is answered by a reply from the people we wrote to;
    theirs by a real message from us; an auto-reply answers nothing (issue #17)."""
    ours = msg(1, "alice@example.com", ("jean@acme.fr",), 0)
    auto = msg(2, "jean@acme.fr", ("alice@example.com",), 1, noise=True)
    keys = [("awaiting_reply", 1), ("escalation:awaiting_reply", 1), ("needs_response", 3)]
    facts = rules.ThreadReminderFacts(1, (ours, auto))
    assert rules.answered(facts, USERS, ORG, keys) == set()
    reply = msg(3, "jean@acme.fr", ("alice@example.com",), 2)
    facts = rules.ThreadReminderFacts(1, (ours, auto, reply))
    assert rules.answered(facts, USERS, ORG, keys) == set(keys[:2])
    again = msg(4, "alice@example.com", ("jean@acme.fr",), 3)
    facts = rules.ThreadReminderFacts(1, (ours, auto, reply, again))
    assert rules.answered(facts, USERS, ORG, keys) == set(keys)
    assert rules.answered(facts, USERS, ORG, [("bounced", 1)]) == set()


def test_a_post_to_a_mailing_list_awaits_no_reply() -> None:
    """Issue #17: list addresses are not people we wait for; a message to a list and a
    person still waits for the person; mail only to our own role addresses waits for none."""
    to_list = msg(1, "alice@example.com", ("dev@lists.acme.fr",), 0, lists=("dev@lists.acme.fr",))
    assert wants(to_list) == []
    both = msg(
        1,
        "alice@example.com",
        ("dev@lists.acme.fr", "jean@acme.fr"),
        0,
        lists=("dev@lists.acme.fr",),
    )
    (w,) = rules.thread_wants(rules.ThreadReminderFacts(1, (both,)), USERS, ORG, {})[0]
    assert (w.kind, w.contact_email) == ("awaiting_reply", "jean@acme.fr")
    ours_only = msg(1, "alice@example.com", ("sales@example.com", "bob@example.com"), 0)
    assert wants(ours_only) == []


def test_list_recipients() -> None:
    """Which recipients are lists: known ones, and the list a copy came back through (when
    no recipient is its address, the whole message was a list post)."""
    to = ("dev@lists.acme.fr", "jean@acme.fr")
    assert rules.list_recipients(to, None, set()) == ()
    assert rules.list_recipients(to, None, {"dev@lists.acme.fr"}) == ("dev@lists.acme.fr",)
    assert rules.list_recipients(to, "dev.lists.acme.fr", set()) == ("dev@lists.acme.fr",)
    assert rules.list_recipients(to, "other.example.org", set()) == to
    assert rules.is_list_address("Group@Example.com", "group.example.com")
    assert not rules.is_list_address("jean@acme.fr", "dev.lists.acme.fr")
