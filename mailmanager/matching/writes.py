"""Writes the matcher's output as the difference with what is stored, in bulk.

Links, verdicts and review items are compared with the rows the matcher wrote last time;
only the difference is written (or, in a dry run, only counted and listed), so re-matching
an up-to-date database writes nothing. Large inserts bypass the ORM's per-row parameter
processing: SQLite gets one driver-level executemany, PostgreSQL multi-row VALUES
COPY into a staging table then one INSERT ... SELECT, both with `ON CONFLICT`, which both
databases spell the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models, store, webhookevents
from mailmanager.db.models import Link, ReviewItem
from mailmanager.matching import cascade as matcher
from mailmanager.matching import reads as linkindex

MATCHER = "matcher"
_STATE_COLUMNS = (
    ("message_id", "int"),
    ("reason", "text"),
    ("detail", "text"),
    ("matched_at", "timestamp"),
)
_LINK_COLUMNS = (
    ("message_id", "int"),
    ("thread_id", "int"),
    ("target_kind", "text"),
    ("target_id", "int"),
    ("method", "text"),
    ("confidence", "numeric"),
    ("explanation", "text"),
    ("tombstone", "bool"),
    ("anchor", "bool"),
    ("created_by", "text"),
    ("created_at", "timestamp"),
)


@dataclass(frozen=True)
class Change:
    """One link that a run adds, removes or changes (collected for dry runs)."""

    message_id: int
    action: str  # add, remove, change
    kind: str
    target_id: int
    method: str
    old_method: str = ""
    explanation: str = ""


@dataclass
class MatchReport:
    threads: int = 0
    messages: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    reviews_opened: int = 0
    reviews_closed: int = 0
    contacts_created: list[str] = field(default_factory=list)
    suggestions: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)
    elapsed: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "threads": self.threads,
            "messages": self.messages,
            "links_added": self.added,
            "links_removed": self.removed,
            "links_changed": self.changed,
            "reviews_opened": self.reviews_opened,
            "reviews_closed": self.reviews_closed,
            "contacts_created": self.contacts_created,
            "suggestions": self.suggestions,
            "reasons": dict(sorted(self.reasons.items())),
            "elapsed": round(self.elapsed, 3),
        }


def bulk_insert(
    s: Session,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[Any, ...]],
    tail: str,
    fresh: bool = False,
) -> None:
    """INSERT `rows` (tuples in `columns` order, values already in driver form) + `tail`.

    `columns` are (name, PostgreSQL array element type) pairs. `fresh`: the rows are not
    expected to conflict (they are about messages matched for the first time), so
    PostgreSQL first COPYs them straight into the table; should another worker have
    written some of them meanwhile, that COPY is undone and they take the staged path.
    """
    if not rows:
        return
    conn = s.connection()
    names = ", ".join(name for name, _ in columns)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks}) {tail}", list(rows))
        return
    import psycopg  # PostgreSQL only

    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if fresh:
        cursor.execute("SAVEPOINT mm_fresh")
        try:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT mm_fresh")
            cursor.execute("RELEASE SAVEPOINT mm_fresh")
        else:
            cursor.execute("RELEASE SAVEPOINT mm_fresh")
            return
    # COPY into a session-private staging table, then one INSERT ... SELECT with the
    # conflict clause (COPY has none). psycopg formats COPY rows in C; a VALUES list of
    # thousands of placeholders costs more to parse than to run. The table lives as long
    # as the connection and empties at each commit or rollback: it needs emptying only
    # when this transaction used it already.
    stage = f"_mm_stage_{table}"
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS "
        f"AS SELECT {names} FROM {table} WITH NO DATA"
    )
    used = conn.info.setdefault("mm_staged", {})
    transaction = s.get_transaction()
    if used.get(stage) is transaction:
        cursor.execute(f"TRUNCATE {stage}")
    used[stage] = transaction
    with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} {tail}")


def driver_time(s: Session, when: datetime) -> Any:
    """`when` as `models.UTCDateTime` hands it to the driver: naive UTC (a string on SQLite,
    in SQLAlchemy's SQLite DATETIME storage format)."""
    naive = when.astimezone(UTC).replace(tzinfo=None)
    if s.get_bind().dialect.name == "sqlite":
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    return naive


@dataclass
class Output:
    """Writes one chunk's verdicts into `report` (and the database unless `dry_run`)."""

    s: Session
    report: MatchReport
    dry_run: bool
    collect: bool
    _states: dict[int, tuple[str, str]] | None = None

    def _note(self, change: Change) -> None:
        if self.collect:
            self.report.changes.append(change)

    def _existing_links(
        self, mids: Sequence[int]
    ) -> dict[tuple[int, str, int], tuple[int, str, float, str, bool]]:
        """The matcher's links on these messages, by (message, kind, target). Only messages
        the matcher has seen can have any (links and verdicts are written together), so a
        batch of new mail reads nothing here."""
        old = self._old_states(mids)
        seen = [m for m in mids if m in old]
        out = {}
        for part in linkindex.parts(self.s, seen):
            for lid, mid, kind, target, method, conf, why, anchor in linkindex.rows_by(
                self.s,
                "id, message_id, target_kind, target_id, method, confidence, explanation, anchor",
                "links",
                "message_id",
                part,
                where=f"created_by = '{MATCHER}' AND NOT tombstone",
            ):
                out[(mid, kind, target)] = (lid, method, round(float(conf), 3), why, bool(anchor))
        return out

    def _old_states(self, mids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """The stored verdicts (reason, detail) of these messages, read once per chunk."""
        if self._states is not None:
            return self._states
        old: dict[int, tuple[str, str]] = {}
        for part in linkindex.parts(self.s, mids):
            old.update(
                (mid, (reason, detail))
                for mid, reason, detail in linkindex.raw_rows(
                    self.s,
                    "SELECT message_id, reason, detail FROM match_states WHERE message_id {}",
                    part,
                )
            )
        self._states = old
        return old

    def links(self, verdicts: list[matcher.ThreadVerdict], thread_of: dict[int, int]) -> None:
        mids = sorted(thread_of)
        old = self._existing_links(mids)
        matched_before = self._old_states(mids)
        now = driver_time(self.s, models.utcnow())
        fresh: list[tuple[Any, ...]] = []  # the links of messages matched the first time
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        keep: set[tuple[int, str, int]] = set()
        changed = 0
        collect = self.collect
        for tv in verdicts:
            # The anchor of each target: its row on the thread's first message that has it
            # (verdicts come in the thread's order).
            anchored: set[tuple[str, int]] = set()
            for mv in tv.messages:
                mid = mv.message_id
                if mid not in matched_before:  # new mail (most of a sync batch): all added
                    tid = thread_of[mid]
                    for d in mv.links:
                        aim = (d.kind, d.target_id)
                        anchor = aim not in anchored
                        anchored.add(aim)
                        fresh.append(
                            (mid, tid, d.kind, d.target_id, d.method, d.confidence,
                             d.explanation, False, anchor, MATCHER, now)
                        )  # fmt: skip
                    if collect:
                        for d in mv.links:
                            self._note(Change(mid, "add", d.kind, d.target_id, d.method))
                    continue
                for d in mv.links:
                    key = (mid, d.kind, d.target_id)
                    keep.add(key)
                    aim = (d.kind, d.target_id)
                    anchor = aim not in anchored
                    anchored.add(aim)
                    conf = round(d.confidence, 3)
                    prev = old.get(key)
                    if prev is None:
                        inserts.append(
                            (mid, thread_of[mid], d.kind, d.target_id,
                             d.method, conf, d.explanation, False, anchor, MATCHER, now)
                        )  # fmt: skip
                        self._note(Change(mid, "add", d.kind, d.target_id, d.method))
                    elif prev[1:] != (d.method, conf, d.explanation, anchor):
                        updates.append((d.method, conf, d.explanation, anchor, prev[0]))
                        if prev[1:3] != (d.method, conf):  # a new wording is not a change
                            changed += 1
                            self._note(
                                Change(mid, "change", d.kind, d.target_id, d.method,
                                       prev[1], d.explanation)
                            )  # fmt: skip
        removed = [(key, v) for key, v in old.items() if key not in keep]
        for (mid, kind, target), v in removed:
            self._note(Change(mid, "remove", kind, target, "", v[1]))
        self.report.added += len(fresh) + len(inserts)
        self.report.removed += len(removed)
        self.report.changed += changed
        if self.dry_run:
            return
        for part in store.chunks([v[0] for _, v in removed]):
            self.s.connection().execute(sa.delete(Link).where(Link.id.in_(part)))
        if updates:
            mark = "?" if self.s.get_bind().dialect.name == "sqlite" else "%s"
            self.s.connection().exec_driver_sql(
                f"UPDATE links SET method = {mark}, confidence = {mark}, explanation = {mark}, "
                f"anchor = {mark} WHERE id = {mark}",
                updates,
            )
        bulk_insert(self.s, "links", _LINK_COLUMNS, fresh, "ON CONFLICT DO NOTHING", fresh=True)
        bulk_insert(self.s, "links", _LINK_COLUMNS, inserts, "ON CONFLICT DO NOTHING")
        webhookevents.messages_linked(self.s, fresh)  # no-ops unless a webhook wants them
        if (inserts or removed) and webhookevents.wanted(self.s, "link.changed"):
            edits = [("add", r[0], r[2], r[3], r[4]) for r in inserts]
            edits += [("remove", k[0], k[1], k[2], v[1]) for k, v in removed]
            webhookevents.links_changed(self.s, edits, MATCHER)

    def states(self, verdicts: list[matcher.ThreadVerdict]) -> None:
        old = self._old_states([mv.message_id for tv in verdicts for mv in tv.messages])
        now = driver_time(self.s, models.utcnow())
        fresh, rows_out = [], []
        for tv in verdicts:
            for mv in tv.messages:
                self.report.reasons[mv.reason] += 1
                detail = mv.detail[:2000]
                was = old.get(mv.message_id)
                if was is None:
                    fresh.append((mv.message_id, mv.reason, detail, now))
                elif was != (mv.reason, detail):
                    rows_out.append((mv.message_id, mv.reason, detail, now))
        if not self.dry_run:
            upsert = (
                "ON CONFLICT (message_id) DO UPDATE SET reason = excluded.reason, "
                "detail = excluded.detail, matched_at = excluded.matched_at"
            )
            bulk_insert(self.s, "match_states", _STATE_COLUMNS, fresh, upsert, fresh=True)
            bulk_insert(self.s, "match_states", _STATE_COLUMNS, rows_out, upsert)

    def reviews(self, chunk: Sequence[int], verdicts: list[matcher.ThreadVerdict]) -> None:
        """Open, refresh, reopen (new candidates) or close the threads' review items."""
        s, r = self.s, ReviewItem
        existing = {
            tid: (rid, status, candidates, why)
            for rid, tid, status, candidates, why in linkindex.rows_by(
                s,
                "id, thread_id, status, candidates, explanation",
                "review_items",
                "thread_id",
                chunk,
                where="kind = 'opportunity'",
            )
        }
        now = models.utcnow()
        closed: list[int] = []
        reopened: list[int] = []
        refreshed: list[dict[str, object]] = []
        opened: list[dict[str, object]] = []
        for tv in verdicts:
            prev = existing.get(tv.thread_id)
            req = tv.review
            if req is None:
                if prev is not None and prev[1] == "pending":
                    closed.append(prev[0])
                continue
            candidates = " ".join(str(c) for c in req.candidates)
            if prev is not None and (prev[1] == "accepted" or prev[2] == candidates):
                if prev[1] == "pending" and prev[3] != req.explanation:
                    refreshed.append({"rid": prev[0], "explanation": req.explanation})
                continue  # a rejected item stays rejected while its candidates are the same
            if prev is not None:  # reopened: the candidates changed since it was decided
                reopened.append(prev[0])
            opened.append(
                {"thread_id": tv.thread_id, "kind": "opportunity", "candidates": candidates,
                 "explanation": req.explanation, "status": "pending", "chosen_id": None,
                 "resolved_by": None, "resolved_at": None, "created_at": now}
            )  # fmt: skip
        self.report.reviews_opened += len(opened)
        self.report.reviews_closed += len(closed)
        if self.dry_run:
            return
        for part in store.chunks(closed + reopened):
            s.connection().execute(sa.delete(r).where(r.id.in_(part)))
        table = store.table(r)
        if refreshed:
            s.connection().execute(
                sa.update(table)
                .where(table.c.id == sa.bindparam("rid"))
                .values(explanation=sa.bindparam("explanation")),
                refreshed,
            )
        store.insert_ignore(s, table, opened)  # another worker may have opened it just now

    def touch_opportunities(
        self, verdicts: list[matcher.ThreadVerdict], sent_at: dict[int, datetime | None]
    ) -> None:
        """Opportunity.last_activity_at: the newest linked message; only ever moves forward."""
        latest: dict[int, datetime] = {}
        for tv in verdicts:
            for mv in tv.messages:
                t = sent_at.get(mv.message_id)
                if t is None:
                    continue
                for d in mv.links:
                    if d.kind == "opportunity" and (
                        d.target_id not in latest or latest[d.target_id] < t
                    ):
                        latest[d.target_id] = t
        if not latest:
            return
        conn = self.s.connection()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "UPDATE opportunities SET last_activity_at = ? WHERE id = ? "
                "AND (last_activity_at IS NULL OR last_activity_at < ?)",
                [
                    (at, oid, at)
                    for oid, at in ((k, driver_time(self.s, v)) for k, v in latest.items())
                ],
            )
            return
        # PostgreSQL: one statement for the batch (a statement per row costs a round trip each).
        ids = sorted(latest)
        conn.exec_driver_sql(
            "UPDATE opportunities o SET last_activity_at = v.at "
            "FROM unnest(%s::int[], %s::timestamp[]) AS v(id, at) WHERE o.id = v.id "
            "AND (o.last_activity_at IS NULL OR o.last_activity_at < v.at)",
            (ids, [driver_time(self.s, latest[i]) for i in ids]),
        )
