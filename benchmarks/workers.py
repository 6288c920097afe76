"""Workers benchmark (issue #15): N procrastinate workers (`mailmanager run` on PostgreSQL)
sharing M maildir mailboxes on a fresh database.

Reports: the time from the start (every mailbox new: a burst) until every mailbox is synced;
syncs per mailbox per interval in the steady state (target 1.00); overlapping syncs of one
mailbox (target 0); database transactions per worker per minute in the steady state (every
mailbox synced once per interval, nothing new); the takeover time after a `kill -9` of a
worker (until each mailbox it was syncing is synced by another); each worker's peak RSS.

With `--idle SECONDS`, the idle cost instead: the reminder pass, digests and outbox on at
their default intervals, the sync tick a day away; after the first syncs, the transactions
per worker per minute (pg_stat_database's xact_commit) over SECONDS, and the statements per
worker per minute when the server has pg_stat_statements preloaded.

    python benchmarks/workers.py                                  # 1,000 mailboxes, 3 workers
    python benchmarks/workers.py --mailboxes 200 --workers 1 --interval 30 --intervals 2
    python benchmarks/workers.py --workers 10 --idle 180

PostgreSQL: MAILMANAGER_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test) is
the admin URL; a database is created for the run and dropped at its end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import mailbox
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager.testing import processes

ADMIN = os.environ.get("MAILMANAGER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent
IDLE_INTERVAL = 86400  # the sync tick of an idle measurement: at midnight only
IDLE_SETTLE = 15  # seconds after the first syncs before an idle window (idle backends flush
# their statistics every 10 s, PostgreSQL's PGSTAT_IDLE_INTERVAL)
WORKER = """
    import sys
    from mailmanager import config
    from mailmanager.db import store
    from mailmanager.workers import runner
    cfg = config.load(sys.argv[1])
    with store.open_database(cfg.database.url, create=True) as factory:
        runner.run_worker(cfg, factory)
"""


def seed(root: Path, mailboxes: int, per_box: int) -> list[str]:
    names = []
    root.mkdir(parents=True, exist_ok=True)
    for b in range(mailboxes):
        name = f"box{b:04d}"
        box = mailbox.Maildir(str(root / name), create=True)
        for i in range(per_box):
            box.add(
                f"From: client{b}@acme.fr\r\nTo: alice@example.com\r\nSubject: Devis {b}-{i}\r\n"
                f"Message-ID: <{b}-{i}@acme.fr>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n"
                "Bonjour\r\n".encode()
            )
        names.append(name)
    return names


def write_config(
    path: Path, url: str, root: Path, names: list[str], interval: int, timers: bool = False
) -> None:
    """Maildir mailboxes synced every `interval` s; with `timers`, the reminder pass, the
    digests and the outbox run at their default intervals (else they are disabled)."""
    boxes = "".join(
        f'[[mailboxes]]\nname = "{n}"\nconnector = "maildir"\npath = "{root / n}"\n'
        'owner = "alice@example.com"\n'
        for n in names
    )
    off = "" if timers else "[reminders]\nenabled = false\n[notifications]\nenabled = false\n"
    path.write_text(
        f'[database]\nurl = "{url}"\n[organization]\ndomains = ["example.com"]\n'
        '[[users]]\nemail = "alice@example.com"\nname = "Alice"\n'
        f"[sync]\ninterval = {interval}\n" + off + boxes
    )


def runs(engine: sa.Engine) -> list[tuple[str, str, datetime, datetime | None, str | None]]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("sync_runs"):
            return []
        rows = conn.execute(
            sa.text(
                "SELECT m.name, r.status, r.started_at, r.finished_at, r.worker "
                "FROM sync_runs r JOIN mailboxes m ON m.id = r.mailbox_id ORDER BY r.id"
            )
        ).all()
    return [(str(a), str(b), _utc(c), d and _utc(d), e) for a, b, c, d, e in rows]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # stored as naive UTC


def overlaps(rows: list[tuple[str, str, datetime, datetime | None, str | None]]) -> int:
    by_box: dict[str, list[tuple[datetime, datetime]]] = {}
    far = datetime.max.replace(tzinfo=UTC)
    for name, _, start, end, _ in rows:
        by_box.setdefault(name, []).append((start, end or far))
    count = 0
    for spans in by_box.values():
        spans.sort()
        count += sum(1 for a, b in itertools.pairwise(spans) if a[1] > b[0])
    return count


def commits(engine: sa.Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"), {"d": name}
            ).scalar()
            or 0
        )


def statements_on(engine: sa.Engine) -> bool:
    """True when the server counts statements (pg_stat_statements preloaded)."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.exec_driver_sql("SELECT pg_stat_statements_reset()")
            conn.commit()
        except sa.exc.DBAPIError:
            return False
    return True


def statements(engine: sa.Engine, dbname: str) -> list[tuple[str, int]]:
    """The statements run on `dbname` since the last reset, most called first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT s.query, s.calls FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = :d "
                "AND s.query NOT LIKE '%pg_stat%' ORDER BY s.calls DESC"
            ),
            {"d": dbname},
        ).all()
    return [(" ".join(str(q).split())[:100], int(c)) for q, c in rows]


def measure_idle(engine: sa.Engine, dbname: str, workers: int, seconds: int) -> dict[str, Any]:
    """Transactions (and statements, where counted) per worker per minute while nothing is
    due: every mailbox synced, the next sync tick a day away, the outbox empty; only the
    workers' own upkeep (heartbeats, polling, periodic ticks) and the timers' passes run."""
    time.sleep(IDLE_SETTLE)  # the burst's last jobs end, their statistics are flushed
    counted = statements_on(engine)
    c0, t0 = commits(engine, dbname), time.monotonic()
    time.sleep(seconds)
    c1, t1 = commits(engine, dbname), time.monotonic()
    per_min = workers * (t1 - t0) / 60
    out: dict[str, Any] = {
        "idle_s": seconds,
        "db_transactions_per_worker_per_min_idle": round((c1 - c0) / per_min, 1),
    }
    if counted:  # psycopg's pool checks a connection before lending it: a transaction too
        run = statements(engine, dbname)
        out["statements_per_worker_per_min_idle"] = round(sum(c for _, c in run) / per_min, 1)
        out["top_statements_per_worker_per_min"] = [[q, round(c / per_min, 1)] for q, c in run[:12]]
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(0.5)
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailboxes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--per-box", type=int, default=3)
    ap.add_argument("--interval", type=int, default=60)
    ap.add_argument("--intervals", type=int, default=2, help="steady-state intervals measured")
    ap.add_argument(
        "--idle",
        type=int,
        default=0,
        metavar="SECONDS",
        help="measure the idle cost instead: after the first syncs, nothing due for SECONDS",
    )
    args = ap.parse_args()
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    dbname = f"mm_bench_workers_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{dbname}"')
    url = sa.engine.make_url(ADMIN).set(database=dbname).render_as_string(False)
    engine = sa.create_engine(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mm-bench-workers-") as tmp:
            root = Path(tmp)
            names = seed(root / "boxes", args.mailboxes, args.per_box)
            cfg = root / "mm.toml"
            interval = IDLE_INTERVAL if args.idle else args.interval
            write_config(cfg, url, root / "boxes", names, interval, timers=bool(args.idle))
            argv = [sys.executable, "-c", textwrap.dedent(WORKER), str(cfg)]
            log = (root / "workers.log").open("wb")
            procs = [subprocess.Popen(argv, cwd=REPO, stderr=log) for _ in range(args.workers)]
            burst = wait_until(
                lambda: len({r[0] for r in runs(engine) if r[1] == "ok"}) >= args.mailboxes,
                60 * 20,
            )
            if args.idle:
                idle = measure_idle(engine, dbname, args.workers, args.idle)
                report = {"mailboxes": args.mailboxes, "workers": args.workers, **idle}
                print(json.dumps(report, indent=2))
                return
            # Steady state: from just before the next tick, count the syncs started per
            # interval (ticks fall on multiples of the interval, see `tasks.cron_every`).
            time.sleep(args.interval - time.time() % args.interval - 2 + args.interval)
            steady_start = datetime.now(UTC)
            c0, t0 = commits(engine, dbname), time.monotonic()
            time.sleep(args.interval * args.intervals)
            c1, t1 = commits(engine, dbname), time.monotonic()
            steady_end = datetime.now(UTC)
            started = [r for r in runs(engine) if steady_start <= r[2] < steady_end]
            per_interval = len(started) / args.mailboxes / args.intervals
            per_worker_min = (c1 - c0) / args.workers / ((t1 - t0) / 60)
            rss = [peak_rss_mb(p.pid) for p in procs]
            takeover = None
            if args.workers > 1:
                # Kill a worker while it syncs (wait for the next tick's burst).
                def busy() -> tuple[int, list[str]] | None:
                    for p in procs:
                        held = [
                            r[0]
                            for r in runs(engine)
                            if r[1] == "running" and r[4] and r[4].endswith(f":{p.pid}")
                        ]
                        if held:
                            return p.pid, held
                    return None

                wait_until(lambda: busy() is not None, args.interval * 2)
                found = busy()
                assert found is not None
                pid, held = found
                victim = next(p for p in procs if p.pid == pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed_at = datetime.now(UTC) - timedelta(seconds=1)

                def taken_over() -> bool:
                    done = {
                        r[0]
                        for r in runs(engine)
                        if r[1] == "ok" and r[2] > killed_at and not str(r[4]).endswith(f":{pid}")
                    }
                    return set(held) <= done

                takeover = wait_until(taken_over, 180)
            overlap = overlaps(runs(engine))
    finally:
        processes.terminate(procs)
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.dispose()
    print(
        json.dumps(
            {
                "mailboxes": args.mailboxes,
                "workers": args.workers,
                "interval_s": args.interval,
                "burst_all_synced_s": round(burst, 1),
                "syncs_per_mailbox_per_interval": round(per_interval, 3),
                "overlapping_syncs": overlap,
                "db_transactions_per_worker_per_min_steady": round(per_worker_min),
                "takeover_after_kill9_s": round(takeover, 1) if takeover is not None else None,
                "peak_rss_mb_per_worker": [round(r) for r in rss],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
