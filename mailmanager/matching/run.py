"""Runs the matcher over the database: after each sync batch, on demand, and retroactively.

Threads are matched in chunks. Per chunk, a few set queries read the messages, their
participants, the manual links and tombstones and the matcher's previous output; the pure
`matcher` decides; the difference with the previous output is written (added, removed and
changed links, verdicts, review items, suggestions), so matching again changes nothing and
a dry run reports exactly what a real run would write. Rows the matcher writes carry
`created_by = "matcher"`; every other Link row (manual links, tombstones) is read, never
written, here.

The lookups come from an in-memory `matcher.Index`: the whole CRM, kept in memory from one
run to the next while it has not changed (`crmcache`), once a process matches more than a
few thousand threads; before that, only the addresses, domains and references of the
chunk. Reads live in `matching.reads`, writes in `matching.writes`, the retro-linking search in
`retrolink`, created contacts and the suggestions queue in `suggestions`; manual decisions
in `curation`.

Entry points: `batch_hook` (the sync stage), `match_threads`, `match_messages`, `match_all`
(`mailmanager match`), and `relink_for` (called by the CRM after a record changes).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager import events
from mailmanager.config import identity
from mailmanager.db import models, store
from mailmanager.db.models import MatchState, Message
from mailmanager.matching import cascade as matcher
from mailmanager.matching import crmcache, retrolink, suggestions
from mailmanager.matching import reads as linkindex
from mailmanager.matching import writes as linkwrite

log = logging.getLogger(__name__)

Change = linkwrite.Change
MatchReport = linkwrite.MatchReport

MATCHER = "matcher"
CHUNK = 1000  # threads per chunk


def policy_for(cfg: config_mod.Config) -> matcher.Policy:
    """The matcher's policy from the configuration, made once per configuration object."""
    return cfg.derived(_make_policy)


def _make_policy(cfg: config_mod.Config) -> matcher.Policy:
    mc = cfg.matcher
    return matcher.Policy(
        identity=identity.of(cfg),
        opportunity_pattern=re.compile(mc.opportunity_pattern, re.IGNORECASE),
        multiple=mc.multiple_opportunities,
        retro_window=timedelta(days=mc.retro_window_days),
        blocklist=matcher.Blocklist.parse(mc.blocklist),
        user_blocklists={
            u.email: matcher.Blocklist.parse(u.blocklist) for u in cfg.users if u.blocklist
        },
        auto_create=mc.auto_create,
    )


@dataclass
class _Run:
    session: Session
    cfg: config_mod.Config
    policy: matcher.Policy
    dry_run: bool
    collect: bool
    report: MatchReport
    index: matcher.Index | None = None  # the whole CRM, when loaded once
    # this run's: which addresses are ours, which references each subject holds
    memo: matcher.Memo = field(default_factory=matcher.Memo)
    placeholder: int = 0  # dry-run ids of contacts that would be created


def threads_merged(session: Session, survivor: int, losers: Sequence[int]) -> None:
    """A `MergeHook`: the losers' links move to the survivor (see `mailmanager.events`).

    Runs while the losers' messages still say which thread they were in: only manual rows
    are indexed by thread (see `models.Link`), the others are found through their messages.
    """
    link = models.Link
    inside = sa.select(Message.id).where(Message.thread_id.in_(losers))
    for where in (
        link.message_id.in_(inside),
        sa.and_(models.manual_links(), link.thread_id.in_(losers)),
    ):
        session.execute(sa.update(link).where(where).values(thread_id=survivor))


def batch_hook(session: Session, cfg: config_mod.Config, result: events.BatchResult) -> None:
    """The per-batch sync stage: match the threads the batch created, grew or merged."""
    if result.threads:
        match_threads(session, cfg, sorted(result.threads))


def match_threads(
    session: Session,
    cfg: config_mod.Config,
    thread_ids: Collection[int],
    dry_run: bool = False,
    collect: bool = False,
    on_chunk: Callable[[MatchReport], None] | None = None,
) -> MatchReport:
    """Match these threads again (every message of each). See the module docstring."""
    started = time.perf_counter()
    run = _Run(session, cfg, policy_for(cfg), dry_run, collect or dry_run, MatchReport())
    ids = sorted(set(thread_ids))
    run.index = crmcache.whole_index(session, len(ids), dry_run)
    for chunk in store.chunks(ids, CHUNK):
        _match_chunk(run, chunk)
        if on_chunk is not None:
            on_chunk(run.report)
    run.report.elapsed = time.perf_counter() - started
    return run.report


def match_messages(
    session: Session, cfg: config_mod.Config, message_ids: Collection[int], dry_run: bool = False
) -> MatchReport:
    """Match the threads of these messages."""
    tids: set[int] = set()
    for chunk in store.chunks(sorted(set(message_ids))):
        tids.update(
            t
            for t in session.scalars(sa.select(Message.thread_id).where(Message.id.in_(chunk)))
            if t is not None
        )
    return match_threads(session, cfg, tids, dry_run=dry_run)


def thread_ids(
    session: Session, since: datetime | None = None, unmatched: bool = False
) -> list[int]:
    """Threads with a message sent since `since` (all when None), or with unmatched messages."""
    query = sa.select(Message.thread_id).where(Message.thread_id.is_not(None)).distinct()
    if since is not None:
        query = query.where(Message.sent_at >= since)
    if unmatched:
        query = query.outerjoin(MatchState, MatchState.message_id == Message.id).where(
            MatchState.message_id.is_(None)
        )
    return sorted(t for t in session.scalars(query) if t is not None)


def match_all(
    session: Session,
    cfg: config_mod.Config,
    since: datetime | None = None,
    dry_run: bool = False,
    collect: bool = False,
    on_chunk: Callable[[MatchReport], None] | None = None,
) -> MatchReport:
    """Match every thread (or those active since `since`) under the current config."""
    return match_threads(
        session, cfg, thread_ids(session, since), dry_run, collect, on_chunk=on_chunk
    )


def relink_for(
    session: Session,
    cfg: config_mod.Config,
    contacts: Iterable[int] = (),
    companies: Iterable[int] = (),
    opportunities: Iterable[int] = (),
) -> MatchReport:
    """Re-match the history of records just created, changed or imported (retro-linking).

    Threads already linked to one of them are matched again whatever their age (a record
    changed or removed); mail within `[matcher] retro_window_days` that involves their
    addresses, domains or opportunity references is matched for the first time.
    """
    contacts, companies, opportunities = set(contacts), set(companies), set(opportunities)
    if not (contacts or companies or opportunities):
        return MatchReport()
    window = cfg.matcher.retro_window_days
    since = models.utcnow() - timedelta(days=window) if window else None
    tids = retrolink.threads_touching(
        session, contacts, companies, opportunities, since, cfg.matcher.strip_plus_addressing
    )
    report = match_threads(session, cfg, tids)
    suggestions.drop_suggestions_for(session, contacts)
    log.info(
        "relinked",
        extra={"action": "relink", "threads": len(tids), "added": report.added},
    )
    return report


# --- one chunk ------------------------------------------------------------------------------


def _match_chunk(run: _Run, chunk: Sequence[int]) -> None:
    s, policy = run.session, run.policy
    facts = linkindex.load_threads(
        s, chunk, run.cfg.matcher.strip_plus_addressing, bool(policy.user_blocklists)
    )
    index = run.index or linkindex.load_for(s, facts, policy)
    _auto_create(run, facts, index)
    verdicts = [matcher.match_thread(t, index, policy, run.memo) for t in facts]
    sent_at = {m.id: m.sent_at for t in facts for m in t.messages}
    thread_of = {m.id: t.thread_id for t in facts for m in t.messages}
    run.report.threads += len(facts)
    run.report.messages += len(sent_at)
    out = linkwrite.Output(s, run.report, run.dry_run, run.collect)
    out.links(verdicts, thread_of)
    out.states(verdicts)
    out.reviews(chunk, verdicts)
    if not run.dry_run:
        out.touch_opportunities(verdicts, sent_at)
        if run.cfg.matcher.suggestions:
            run.report.suggestions += suggestions.write_suggestions(s, verdicts, facts, index)


def _auto_create(run: _Run, facts: list[matcher.ThreadMatchFacts], index: matcher.Index) -> None:
    new = matcher.contacts_to_create(facts, index, run.policy, run.memo)
    if not new:
        return
    if run.dry_run:
        for c in new:
            run.placeholder -= 1
            index.contacts[c.key] = run.placeholder
            index.contact_company[run.placeholder] = c.company_id
    else:
        company = {c.key: c.company_id for c in new}
        with crmcache.own_changes(run.session, run.index):
            for key, cid in suggestions.create_contacts(run.session, new).items():
                index.contacts[key] = cid
                index.contact_company[cid] = company[key]
    index.address_memo.clear()  # what those addresses say has changed
    run.report.contacts_created.extend(c.key for c in new)
