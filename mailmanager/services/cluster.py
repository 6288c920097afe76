"""Who is working: the operator's view of the workers (`mailmanager status`, issue #15).

From the mailboxes' sync leases and the runs still under way (both modes), and, when the
procrastinate workers run on this database, from procrastinate's own tables joined with
`worker_hosts` (`workers.hosts`): each worker's host, pid, start, last heartbeat and the jobs
it runs now, and the job counts (queued, running, stalled, failed).
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
    started), and with procrastinate: `workers` (id, name, host, pid, started, queues, last
    heartbeat, state alive/stale/gone, jobs running now) and `jobs` (counts by status, and
    `stalled`: running on a worker silent for more than `stalled_after` seconds). `workers`
    and `jobs` are None without procrastinate."""
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
    data["workers"] = _workers(session, silent_since, doing)
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


_PROCRASTINATE_WORKERS = sa.table(
    "procrastinate_workers", sa.column("id", sa.BigInteger), sa.column("last_heartbeat")
)


def _workers(
    session: Session, silent_since: datetime, doing: dict[int, list[str]]
) -> list[dict[str, Any]]:
    """procrastinate's workers joined with their `worker_hosts` rows (either may be missing:
    a worker not started by `mailmanager run`, a worker procrastinate pruned). `state` is
    "alive", "stale" (no heartbeat since `silent_since`: killed, host gone) or "gone"."""
    W, H = _PROCRASTINATE_WORKERS, models.WorkerHost
    rows = session.execute(
        sa.select(
            sa.func.coalesce(W.c.id, H.id),
            W.c.last_heartbeat,
            H.name,
            H.host,
            H.pid,
            H.started_at,
            H.queues,
        )
        .select_from(W)
        .join(H, H.id == W.c.id, full=True)
        .order_by(sa.func.coalesce(W.c.id, H.id))
    )
    workers = []
    for wid, beat, name, host, pid, started, queues in rows:
        state = "gone" if beat is None else ("alive" if beat >= silent_since else "stale")
        workers.append(
            {
                "id": wid,
                "name": name,
                "host": host,
                "pid": pid,
                "started_at": _iso(started),
                "queues": queues.split(",") if queues else [],
                "last_heartbeat": _iso(beat),
                "state": state,
                "alive": state == "alive",
                "running": doing.get(wid, []),
            }
        )
    return workers
