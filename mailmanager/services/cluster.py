"""Who is working: the operator's view of the workers (`mailmanager status`, issue #15).

From the mailboxes' sync leases and the runs still under way (both modes), and, when the
procrastinate workers run on this database, from procrastinate's own tables: each worker's
last heartbeat and the jobs it runs now, and the job counts (queued, running, stalled,
failed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager.db import models


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def cluster_status(session: Session, now: datetime, stalled_after: float) -> dict[str, Any]:
    """`holders` (mailbox, lease owner, until), `running` syncs (mailbox, worker "host:pid",
    started), and with procrastinate: `workers` (id, last heartbeat, jobs running now, alive)
    and `jobs` (counts by status, and `stalled`: running on a worker silent for more than
    `stalled_after` seconds). `workers` and `jobs` are None without procrastinate."""
    M, R = models.Mailbox, models.SyncRun
    holders = [
        {"mailbox": name, "owner": owner, "until": _iso(until)}
        for name, owner, until in session.execute(
            sa.select(M.name, M.lease_owner, M.lease_until)
            .where(M.lease_owner.is_not(None), M.lease_until > now)
            .order_by(M.name)
        )
    ]
    running = [
        {"mailbox": name, "worker": worker, "started_at": _iso(started), "run": run_id}
        for name, worker, started, run_id in session.execute(
            sa.select(M.name, R.worker, R.started_at, R.id)
            .join(M, M.id == R.mailbox_id)
            .where(R.status == "running")
            .order_by(M.name)
        )
    ]
    data: dict[str, Any] = {"holders": holders, "running": running, "workers": None, "jobs": None}
    if session.get_bind().dialect.name != "postgresql" or not session.scalar(
        sa.text("SELECT to_regclass('procrastinate_workers') IS NOT NULL")
    ):
        return data
    silent_since = now - timedelta(seconds=stalled_after)
    doing: dict[int, list[str]] = {}
    for worker_id, task, args in session.execute(
        sa.text(
            "SELECT worker_id, task_name, args FROM procrastinate_jobs "
            "WHERE status = 'doing' ORDER BY id"
        )
    ):
        label = task.rpartition(".")[2] + (f" {args['mailbox']}" if "mailbox" in args else "")
        doing.setdefault(worker_id or 0, []).append(label)
    data["workers"] = [
        {
            "id": wid,
            "last_heartbeat": _iso(beat),
            "alive": beat >= silent_since,
            "running": doing.get(wid, []),
        }
        for wid, beat in session.execute(
            sa.text("SELECT id, last_heartbeat FROM procrastinate_workers ORDER BY id")
        )
    ]
    counts: dict[str, int] = dict(
        session.execute(
            sa.text("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status")
        ).all()
    )
    stalled = session.scalar(
        sa.text(
            "SELECT count(*) FROM procrastinate_jobs j "
            "LEFT JOIN procrastinate_workers w ON w.id = j.worker_id "
            "WHERE j.status = 'doing' AND (w.id IS NULL OR w.last_heartbeat < :since)"
        ),
        {"since": silent_since},
    )
    data["jobs"] = {
        "queued": int(counts.get("todo", 0)),
        "running": int(counts.get("doing", 0)),
        "stalled": int(stalled or 0),
        "failed": int(counts.get("failed", 0)),
    }
    return data
