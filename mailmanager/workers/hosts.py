"""Where each procrastinate worker runs: its `worker_hosts` row (host, pid, start, queues).

procrastinate's `procrastinate_workers` row has only an id and a heartbeat. Once a worker has
registered (procrastinate gave it its id), `record` writes the same id with this process's
host, pid and start time; `forget` deletes it at the worker's clean stop. A worker killed
with -9 keeps both rows: `status` shows it stale once its heartbeat is older than
`[workers] stalled_after`, and "gone" once procrastinate pruned its row (a worker starting prunes
the silent ones); `record` then deletes such orphans. Neither ever stops a worker: a row it
could not write only makes `status` show less.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import leases, models, store

log = logging.getLogger(__name__)

_PROCRASTINATE_WORKERS = sa.table("procrastinate_workers", sa.column("id"))


def record(
    factory: sessionmaker[Session],
    worker_id: int,
    name: str,
    queues: Iterable[str],
    started_at: datetime,
) -> None:
    """Write the row of procrastinate worker `worker_id` (this process), and delete the rows
    whose procrastinate worker is gone."""
    host = models.WorkerHost
    try:
        with store.session_scope(factory) as s:
            s.execute(
                sa.delete(host).where(
                    host.id.not_in(sa.select(_PROCRASTINATE_WORKERS.c.id).scalar_subquery())
                )
            )
            store.insert_ignore(
                s,
                store.table(host),
                [
                    {
                        "id": worker_id,
                        "name": name,
                        "host": leases.HOST,
                        "pid": os.getpid(),
                        "queues": ",".join(queues),
                        "started_at": started_at,
                    }
                ],
            )
    except Exception as exc:  # the status loses a line; the worker goes on
        log.warning(
            "could not record the worker's host",
            extra={"action": "worker_host_error", "error": f"{type(exc).__name__}: {exc}"},
        )


def forget(factory: sessionmaker[Session], worker_ids: Iterable[int]) -> None:
    """Delete the rows of these workers (stopped cleanly); quietly kept when the database is
    away (the worker was stopped by its loss): `record` deletes them later."""
    ids = list(worker_ids)
    if not ids:
        return
    try:
        with store.session_scope(factory) as s:
            s.execute(sa.delete(models.WorkerHost).where(models.WorkerHost.id.in_(ids)))
    except Exception as exc:
        log.info(
            "could not forget the worker's host",
            extra={"action": "worker_host_error", "error": f"{type(exc).__name__}: {exc}"},
        )
