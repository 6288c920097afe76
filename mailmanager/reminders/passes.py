"""Evaluation passes over reminders: which threads and targets to look at, and the writes.

`reminders.evaluate` drives this module; the rules themselves are pure functions
(`reminders.rules`, `reminders.plan`) fed by `reminders.facts` and `reminders.targets`. Writes are
queued per chunk and issued as a few executemany statements: inserts go through
`store.insert_ignore`, so a reminder is never created twice, even by two workers at once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import models, store, webhookevents
from mailmanager.db.models import Reminder, ReminderCheck
from mailmanager.mail import normalize
from mailmanager.reminders import facts as reminder_facts
from mailmanager.reminders import plan as reminder_plan
from mailmanager.reminders import rules
from mailmanager.reminders import targets as reminder_targets

ACTIVE = ("pending", "snoozed")  # may fall due
OPEN = reminder_plan.OPEN
WATERMARK = "threads_changed_until"
_OVERLAP = timedelta(minutes=5)  # re-read thread changes a bit before the last pass began
_CHUNK = 500
_MAX_ACTIONS = 1000  # actions listed in a report (counts stay exact)
_RECHECK_TARGETS = timedelta(days=1)


@dataclass(frozen=True)
class Action:
    """One change an evaluation made (or, in a dry run, would make)."""

    action: str  # create, escalate, cancel, answer, revive, move, repeat, unsnooze
    kind: str
    reminder_id: int | None
    thread_id: int | None
    target: str | None
    user: str
    due_at: datetime | None


@dataclass
class Pass:
    """What a pass accumulates before writing a chunk."""

    now: datetime
    st: reminder_facts.Setting
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    uncheck: list[tuple[str, int]] = field(default_factory=list)
    invalid: list[tuple[str, datetime]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    threads: int = 0
    targets: int = 0
    invalidated: int = 0

    def note(
        self,
        action: str,
        kind: str,
        rid: int | None,
        where: tuple[Any, Any],
        user: int,
        due: datetime | None,
    ) -> None:
        self.counts[action] = self.counts.get(action, 0) + 1
        if len(self.actions) < _MAX_ACTIONS:
            email = self.st.emails.get(user, str(user))
            self.actions.append(Action(action, kind, rid, where[0], where[1], email, due))


def _record(
    p: Pass,
    plan: reminder_plan.Plan,
    rows: Sequence[reminder_plan.Row],
    where: tuple[int | None, str | None],
    extra: dict[str, Any],
) -> None:
    """Queue the writes of one thread's or target's plan."""
    by_id = {r.id: r for r in rows}
    wall = models.utcnow()
    for c in plan.changes:
        if c.want is not None:
            w = c.want
            kind = w.kind if c.action == "create" else rules.ESCALATION + w.kind
            reason = w.reason
            if c.action == "escalate":
                reason = f"Escalation about {p.st.emails.get(w.user_id, '')}: {w.reason}"
            p.inserts.append(
                {
                    **extra,
                    "thread_id": where[0],
                    "target": where[1],
                    "kind": kind,
                    "cycle": w.cycle,
                    "user_id": c.user_id,
                    "rule": f"{w.kind}",
                    "due_at": c.due_at,
                    "status": "pending",
                    "reason": reason,
                    "waiting_since": w.waiting_since,
                    "contact_email": w.contact_email or extra.get("contact_email", ""),
                    "escalated_from_id": w.user_id if c.action == "escalate" else None,
                    "sent_count": 0,
                    "created_at": wall,
                    "updated_at": wall,
                }
            )
            p.note(c.action, kind, None, where, c.user_id or 0, c.due_at)
            continue
        assert c.reminder_id is not None
        row = by_id[c.reminder_id]
        p.updates.setdefault(c.action, []).append({"rid": c.reminder_id, "due": c.due_at})
        p.note(c.action, row.kind, row.id, where, row.user_id, c.due_at)


def _thread_extra(info: reminder_facts.ThreadInfo, contact_email: str) -> dict[str, Any]:
    return {
        "contact_id": info.contact_of.get(contact_email),
        "company_id": info.company_of.get(contact_email),
        "opportunity_id": info.opportunity_id,
    }


def run_threads(
    session: Session, cfg: config_mod.Config, p: Pass, thread_ids: Collection[int]
) -> set[reminder_targets.Target]:
    touched: set[reminder_targets.Target] = set()
    for chunk in store.chunks(sorted(thread_ids), _CHUNK):
        infos = reminder_facts.load_threads(session, cfg, p.st, chunk)
        p.uncheck += [("thread", tid) for tid in chunk if tid not in infos]
        for tid, info in infos.items():
            wants, invalid = rules.thread_wants(info.facts, p.st.by_address, p.st.org, info.texts)
            sent = [(r.kind, r.cycle) for r in info.rows if r.sent_count and r.status in OPEN]
            answered = rules.answered(info.facts, p.st.by_address, p.st.org, sent)
            plan = reminder_plan.reconcile(
                wants, info.rows, p.st.by_id, p.st.org, p.now, answered=answered
            )
            for w in wants:
                one = reminder_plan.Plan(
                    tuple(c for c in plan.changes if c.want is w), plan.next_check
                )
                extra = _thread_extra(info, w.contact_email) | {"message_id": w.cycle}
                _record(p, one, info.rows, (tid, None), extra)
            rest = tuple(c for c in plan.changes if c.want is None)
            _record(p, reminder_plan.Plan(rest, None), info.rows, (tid, None), {})
            if plan.next_check is None:
                p.uncheck.append(("thread", tid))
            else:
                p.checks.append(
                    {"target_kind": "thread", "target_id": tid, "check_at": plan.next_check}
                )
            p.invalid += invalid
            touched |= info.targets
        p.threads += len(infos)
        _write(session, p)
    return touched


def run_targets(session: Session, p: Pass, targets: Iterable[reminder_targets.Target]) -> None:
    ordered = sorted(set(targets))
    opps = [i for k, i in ordered if k == "opportunity"]
    clients = [t for t in ordered if t[0] in ("company", "contact")]
    for chunk in store.chunks(opps, _CHUNK):
        _apply_targets(session, p, reminder_targets.load_opportunities(session, p.st, chunk, p.now))
    for cchunk in store.chunks(clients, _CHUNK):
        _apply_targets(session, p, reminder_targets.load_clients(session, p.st, cchunk, p.now))


def _apply_targets(
    session: Session, p: Pass, infos: dict[reminder_targets.Target, reminder_targets.TargetInfo]
) -> None:
    for t, info in infos.items():
        plan = reminder_plan.reconcile(
            info.wants, info.rows, p.st.by_id, p.st.org, p.now, info.next_check, info.answered
        )
        extra = {
            "opportunity_id": info.opportunity_id,
            "contact_id": info.contact_id,
            "company_id": info.company_id,
            "message_id": info.message_id,
        }
        _record(p, plan, info.rows, (None, reminder_targets.key(t)), extra)
        if info.alive:
            # With nothing scheduled, look again in a day: CRM edits (a new owner, a new
            # contact) do not touch any thread, so nothing else would bring it back.
            check = plan.next_check or p.now + _RECHECK_TARGETS
            p.checks.append({"target_kind": t[0], "target_id": t[1], "check_at": check})
        else:
            p.uncheck.append(t)
    p.targets += len(infos)
    _write(session, p)


_UPDATES: dict[str, dict[str, Any]] = {
    "cancel": {"status": "cancelled"},
    "answer": {"status": "answered"},
    "revive": {"status": "pending", "due_at": sa.bindparam("due")},
    "move": {"due_at": sa.bindparam("due")},
    "repeat": {"status": "pending", "due_at": sa.bindparam("due")},
    "unsnooze": {"status": "pending", "due_at": sa.bindparam("due"), "snoozed_until": None},
}


def _write(session: Session, p: Pass) -> None:
    """Write what the pass queued so far (one chunk)."""
    t = store.table(Reminder)
    store.insert_ignore(session, t, p.inserts)
    wall = models.utcnow()
    for action, params in p.updates.items():
        values = dict(_UPDATES[action], updated_at=wall)
        stmt = sa.update(t).where(t.c.id == sa.bindparam("rid")).values(**values)
        if action in ("cancel", "answer"):
            # Only a row still open (a user's dismiss or done wins). No IN list here:
            # expanding parameters do not work with executemany.
            stmt = stmt.where(sa.or_(*(t.c.status == status for status in OPEN)))
        session.execute(stmt, params)
        if action in ("cancel", "answer"):  # a reply closed them: tell the webhooks
            webhookevents.reminders_closed(session, [int(x["rid"]) for x in params], wall)
    c = store.table(ReminderCheck)
    store.upsert(session, c, p.checks, ("target_kind", "target_id"), ("check_at",))
    if p.uncheck:
        session.execute(
            sa.delete(c).where(
                c.c.target_kind == sa.bindparam("k"), c.c.target_id == sa.bindparam("i")
            ),
            [{"k": kind, "i": ident} for kind, ident in p.uncheck],
        )
    p.invalidated += _invalidate(session, p.invalid)
    p.inserts, p.updates, p.checks, p.uncheck, p.invalid = [], {}, [], [], []


def _invalidate(session: Session, bounced: Sequence[tuple[str, datetime]]) -> int:
    """Mark bounced addresses invalid (the first bounce's time is kept)."""
    if not bounced:
        return 0
    e = store.table(models.ContactEmail)
    done = 0
    for address, at in bounced:
        res = session.execute(
            sa.update(e)
            .where(
                e.c.email == (normalize.match_key(address) or address),
                e.c.invalid_since.is_(None),
            )
            .values(invalid_since=at)
        )
        done += int(res.rowcount)  # type: ignore[attr-defined]
    return done


def full_pass(session: Session, cfg: config_mod.Config, p: Pass, wall: datetime) -> None:
    c = store.table(ReminderCheck)
    due = session.execute(
        sa.select(c.c.target_kind, c.c.target_id).where(c.c.check_at <= p.now)
    ).all()
    threads = {i for k, i in due if k == "thread"}
    targets: set[reminder_targets.Target] = {(k, i) for k, i in due if k != "thread"}
    state = session.get(models.ReminderState, WATERMARK)
    T = models.Thread
    if state is None or state.at is None:
        since = p.now - timedelta(days=cfg.reminders.max_age_days + 1)
        changed = sa.select(T.id).where(T.last_at >= since)
    else:
        changed = sa.select(T.id).where(T.updated_at > state.at - _OVERLAP)
    threads.update(session.scalars(changed))
    targets |= _never_evaluated(session)
    targets |= run_threads(session, cfg, p, threads)
    run_targets(session, p, targets)
    store.upsert(
        session,
        store.table(models.ReminderState),
        [{"name": WATERMARK, "at": wall}],
        ("name",),
        ("at",),
    )


def _never_evaluated(session: Session) -> set[reminder_targets.Target]:
    """Open opportunities and clients without a check row (new, reopened, or new clients)."""
    c = store.table(ReminderCheck)
    Opp, C = models.Opportunity, models.Contact

    def unchecked(kind: str, column: Any) -> Any:
        return ~sa.exists().where(c.c.target_kind == kind, c.c.target_id == column)

    found: set[reminder_targets.Target] = set()
    found |= {
        ("opportunity", i)
        for i in session.scalars(
            sa.select(Opp.id).where(Opp.stage == "open", unchecked("opportunity", Opp.id))
        )
    }
    found |= {
        ("company", i)
        for i in session.scalars(
            sa.select(C.company_id)
            .distinct()
            .where(
                C.status == "client", C.company_id.is_not(None), unchecked("company", C.company_id)
            )
        )
        if i is not None
    }
    found |= {
        ("contact", i)
        for i in session.scalars(
            sa.select(C.id).where(
                C.status == "client", C.company_id.is_(None), unchecked("contact", C.id)
            )
        )
    }
    return found


def schedule(
    session: Session, where: Iterable[tuple[int | None, str | None]], at: datetime
) -> None:
    """Have these threads or targets re-evaluated by the first pass at or after `at`."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for tid, target in where:
        found = (
            ("thread", tid)
            if tid is not None
            else (reminder_targets.parse_key(target) if target else None)
        )
        if found is not None:
            rows[found] = {"target_kind": found[0], "target_id": found[1], "check_at": at}
    c = store.table(ReminderCheck)
    store.upsert(session, c, list(rows.values()), ("target_kind", "target_id"), ("check_at",))
