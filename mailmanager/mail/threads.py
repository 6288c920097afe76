"""Threading: which messages form one conversation. Plain values in, plain values out.

A thread is a connected component of the graph whose nodes are Message-IDs (and provider
thread hints) and whose edges join a message to its In-Reply-To and References ids (JWZ's
rule without the tree: we need the grouping, not the reply tree). Because it is a union of
components, the result does not depend on arrival order: a late parent or a missing middle
message merges the threads it connects. Ids only ever referenced ("phantoms") are nodes too,
so two replies to a message we never saw still group together. Reference loops are harmless
to a union-find.

The subject fallback is deliberately narrow, because a subject alone merges unrelated
mail: Dovecot's RFC 5256 subject threading puts a new "Quote for Q3" into last week's
"Quote for Q3" thread; we don't. It joins a message that carries no In-Reply-To/References
at all, whose subject has a reply prefix ("Re:", "TR :", "AW:"...), to the one recent
thread (inside a time window) that has the same normalised subject and shares the sender
plus at least one other participant. The same rule runs the other way when the original
arrives after such a reply (a Sent folder synced after the inbox). List mail never takes
the fallback: everyone on a list shares its address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThreadInput:
    """One new message to thread: its key and its nodes (own Message-ID first)."""

    key: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    """Messages of a batch that end up in one thread.

    `existing` lists the stored threads the group touches, smallest id first: the first
    survives and the others merge into it. Empty means a new thread. `new_nodes` are the
    group's nodes not stored yet.
    """

    keys: tuple[str, ...]
    existing: tuple[int, ...]
    new_nodes: tuple[str, ...]


def hint_node(scope: str, hint: str) -> str:
    """The node standing for a provider's thread id, scoped to where it is meaningful."""
    return f"hint:{scope}:{hint}"


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        parent = self.parent
        root = x
        while True:
            p = parent.setdefault(root, root)
            if p == root:
                break
            root = p
        while x != root:  # path compression
            nxt = parent[x]
            parent[x] = root
            x = nxt
        return root

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def plan(inputs: Sequence[ThreadInput], existing: Mapping[str, int]) -> list[Group]:
    """Group a batch of new messages, given the stored thread of each known node.

    `existing` maps node → thread id for the nodes of `inputs` already stored (missing
    nodes are new). Returns one Group per resulting thread, in input order.
    """
    uf = _UnionFind()
    for item in inputs:
        first = item.nodes[0]
        uf.find(first)
        for node in item.nodes[1:]:
            uf.union(node, first)
    for node, thread_id in existing.items():
        if node in uf.parent:
            uf.union(("thread", thread_id), node)

    keys: dict[object, list[str]] = {}
    nodes: dict[object, list[str]] = {}
    threads: dict[object, set[int]] = {}
    for item in inputs:
        root = uf.find(item.nodes[0])
        keys.setdefault(root, []).append(item.key)
    for x in list(uf.parent):
        root = uf.find(x)
        if isinstance(x, tuple):
            threads.setdefault(root, set()).add(x[1])
        elif x not in existing:
            assert isinstance(x, str)
            nodes.setdefault(root, []).append(x)
    return [
        Group(
            keys=tuple(group_keys),
            existing=tuple(sorted(threads.get(root, ()))),
            new_nodes=tuple(sorted(nodes.get(root, ()))),
        )
        for root, group_keys in keys.items()
    ]


@dataclass(frozen=True)
class FallbackCandidate:
    """A thread that may receive a header-less message by subject.

    `lone_reply_at` is set when the thread is a single header-less "Re:" message (sent
    then): only such a thread may receive the original it answers.
    """

    thread_id: int
    last_at: datetime | None
    participants: frozenset[str]
    lone_reply_at: datetime | None = None


def subject_fallback(
    sender: str,
    participants: Iterable[str],
    at: datetime | None,
    has_prefix: bool,
    candidates: Sequence[FallbackCandidate],
    window: timedelta,
) -> int | None:
    """Pick the thread a header-less message belongs to, or None when unsure.

    The caller has already checked that the message has no In-Reply-To/References and that
    `candidates` share its normalised subject. A message whose subject has a reply prefix
    may join any candidate; one without may only join a lone later header-less reply.
    Exactly one candidate must qualify; several mean we cannot tell.
    """
    if not sender or at is None:
        return None
    others = set(participants) - {sender}
    hits = [
        c.thread_id
        for c in candidates
        if c.last_at is not None
        and abs(at - c.last_at) <= window
        and sender in c.participants
        and others & c.participants
        and (has_prefix or (c.lone_reply_at is not None and c.lone_reply_at >= at))
    ]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True)
class SummaryInput:
    """What a thread summary needs of one message."""

    message_id: int
    sent_at: datetime | None
    direction: str  # inbound, outbound, internal
    noise: bool  # auto-reply, bounce or list mail: never counts as a real exchange
    subject: str


@dataclass(frozen=True)
class ThreadSummary:
    subject: str
    first_at: datetime | None
    last_at: datetime | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None
    last_direction: str | None
    last_message_id: int | None
    message_count: int


def summarize(messages: Iterable[SummaryInput]) -> ThreadSummary:
    """Times and directions of a thread; "last_*" fields consider real messages only."""
    ordered = sorted(
        messages, key=lambda m: (m.sent_at is None, m.sent_at or datetime.min, m.message_id)
    )
    dated = [m.sent_at for m in ordered if m.sent_at is not None]
    real = [m for m in ordered if not m.noise]
    last_in = [m.sent_at for m in real if m.direction == "inbound" and m.sent_at]
    last_out = [m.sent_at for m in real if m.direction == "outbound" and m.sent_at]
    last_real = real[-1] if real else None
    subject = next((m.subject for m in ordered if m.subject), "")
    return ThreadSummary(
        subject=subject,
        first_at=min(dated) if dated else None,
        last_at=max(dated) if dated else None,
        last_inbound_at=max(last_in) if last_in else None,
        last_outbound_at=max(last_out) if last_out else None,
        last_direction=last_real.direction if last_real else None,
        last_message_id=last_real.message_id if last_real else None,
        message_count=len(ordered),
    )
