"""`[workers]`: which scheduler `mailmanager run` uses (issue #15).

- `embedded`: one process, APScheduler timers (`daemon`), any database; what SQLite gets.
- `procrastinate`: a worker of a cluster sharing one PostgreSQL database through the
  procrastinate task queue (`workers`): each mailbox synced by one worker at a time, each
  periodic tick run once across the cluster, a dead worker's job retried by another.
- `auto` (the default): procrastinate on PostgreSQL, embedded on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailmanager.config import schema
from mailmanager.config.schema import spec

ENGINES = ("auto", "embedded", "procrastinate")


@dataclass(frozen=True)
class WorkersConfig:
    """`[workers]`: the scheduler (`engine`) and, for procrastinate, the jobs each worker
    runs at once (`concurrency`), the seconds between its heartbeats (`heartbeat`), the
    silence after which it is taken for dead and its jobs are retried (`stalled_after`), and
    the hours a finished job stays in procrastinate's tables (`keep_jobs_hours`)."""

    engine: str = field(default="auto", metadata=spec(schema.one_of(*ENGINES)))
    concurrency: int = field(default=4, metadata=spec(schema.at_least(1)))
    heartbeat: int = field(default=5, metadata=spec(schema.at_least(1)))
    stalled_after: int = field(default=20, metadata=spec(schema.at_least(3)))
    keep_jobs_hours: int = field(default=72, metadata=spec(schema.at_least(1)))

    @property
    def stalled_seconds(self) -> int:
        """`stalled_after`, at least three heartbeats: a live worker is never taken for dead
        for one late beat."""
        return max(self.stalled_after, 3 * self.heartbeat)


def engine_for(workers: WorkersConfig, database_url: str) -> str:
    """The engine `run` uses: "embedded" or "procrastinate" ("auto" follows the URL)."""
    if workers.engine != "auto":
        return workers.engine
    return "procrastinate" if database_url.startswith("postgresql") else "embedded"
