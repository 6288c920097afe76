"""Reminder evaluation benchmark: passes over 1,000,000 threads and 50 users, on SQLite and
PostgreSQL.

Rows are generated directly with executemany (not through sync): 50 users with a mailbox
each, N threads of one outbound question each (10% of them with a pending awaiting-reply
reminder, 5% with a future check time), 20,000 open opportunities and 10,000 client
contacts in 5,000 companies, all already evaluated once. Then:

1. a pass when nothing changed (what the daemon does every few minutes);
2. a pass after 1,000 threads changed: each got a real reply from its contact (synced as
   `ingest` would leave it: new message, participants, raw bytes, thread summary), so the
   pass cancels 1,000 awaiting-reply reminders and creates the needs-response ones;
3. the same 1,000 threads evaluated the way the sync hook does (`thread_ids=`).

PostgreSQL runs in a private database created on 127.0.0.1:5432 and dropped afterwards.

    python benchmarks/reminders.py                       # 1,000,000 threads, both backends
    python benchmarks/reminders.py --threads 100000 --backend sqlite
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.reminders import evaluation as reminders

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 18, 10, tzinfo=UTC)  # a Wednesday
CHUNK = 20_000


def _config(url: str, users: int, tmp: Path) -> config.Config:
    text = f'[database]\nurl = "{url}"\n[organization]\ndomains = ["example.com"]\n'
    for i in range(users):
        text += f'[[users]]\nemail = "u{i:02d}@example.com"\nname = "User {i}"\n'
    path = tmp / f"bench-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text)
    return config.load(path)


def _insert(conn: sa.Connection, model: type[models.Base], rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(sa.insert(store.table(model)), rows[start : start + CHUNK])


def generate(url: str, n_threads: int, n_users: int, seed: int = 5) -> dict[str, float]:
    """Fill an empty migrated database; returns the time it took."""
    rnd = random.Random(seed)
    started = time.perf_counter()
    engine = store.make_engine(url)
    old = NOW - timedelta(days=20)
    with engine.begin() as conn:
        _insert(
            conn,
            models.User,
            [
                {
                    "id": u + 1,
                    "email": f"u{u:02d}@example.com",
                    "name": f"User {u}",
                    "timezone": "Europe/Paris",
                    "holiday_country": "FR",
                }
                for u in range(n_users)
            ],
        )
        _insert(
            conn,
            models.Mailbox,
            [
                {
                    "id": u + 1,
                    "name": f"mb{u:02d}",
                    "connector": "memory",
                    "owner_id": u + 1,
                    "synced_until": NOW,
                }
                for u in range(n_users)
            ],
        )
        _insert(
            conn,
            models.Folder,
            [
                {"id": u + 1, "mailbox_id": u + 1, "remote_id": "Sent", "role": "sent"}
                for u in range(n_users)
            ],
        )
        n_companies, n_clients, n_opps = 5_000, 10_000, 20_000
        _insert(
            conn,
            models.Company,
            [{"id": c + 1, "name": f"Company {c}"} for c in range(n_companies)],
        )
        _insert(
            conn,
            models.Contact,
            [
                {
                    "id": c + 1,
                    "first_name": "C",
                    "last_name": str(c),
                    "status": "client",
                    "company_id": c % n_companies + 1,
                    "owner_id": c % n_users + 1,
                }
                for c in range(n_clients)
            ],
        )
        _insert(
            conn,
            models.ContactEmail,
            [
                {"contact_id": c + 1, "email": f"client{c}@company{c % n_companies}.test"}
                for c in range(n_clients)
            ],
        )
        _insert(
            conn,
            models.Opportunity,
            [
                {
                    "id": o + 1,
                    "title": f"Deal {o}",
                    "owner_id": o % n_users + 1,
                    "company_id": o % n_companies + 1,
                    "created_at": old,
                }
                for o in range(n_opps)
            ],
        )
        checks = [
            {
                "target_kind": "opportunity",
                "target_id": o + 1,
                "check_at": NOW + timedelta(days=rnd.uniform(1, 30)),
            }
            for o in range(n_opps)
        ]
        checks += [
            {"target_kind": "company", "target_id": c + 1, "check_at": None}
            for c in range(n_companies)
        ]
        for start in range(0, n_threads, CHUNK):
            ids = range(start + 1, min(start + CHUNK, n_threads) + 1)
            threads, messages, parts, rems = [], [], [], []
            for t in ids:
                user = t % n_users + 1
                sent = NOW - timedelta(days=rnd.uniform(0.5, 400))
                threads.append(
                    {
                        "id": t,
                        "subject": f"Offer {t}",
                        "subject_normalized": f"offer {t}",
                        "first_at": sent,
                        "last_at": sent,
                        "last_outbound_at": sent,
                        "last_direction": "outbound",
                        "last_message_id": t,
                        "message_count": 1,
                        "updated_at": old,
                    }
                )
                messages.append(
                    {
                        "id": t,
                        "key": f"m{t}@example.com",
                        "message_id": f"m{t}@example.com",
                        "thread_id": t,
                        "subject": f"Offer {t}",
                        "sent_at": sent,
                        "direction": "outbound",
                        "from_email": f"u{user - 1:02d}@example.com",
                        "sha256": f"{t:064x}",
                        "snippet": "Could you confirm?",
                    }
                )
                parts.append({"message_id": t, "role": "to", "email": f"x{t}@ext{t % 997}.test"})
                if t % 10 == 0:
                    rems.append(
                        {
                            "thread_id": t,
                            "kind": "awaiting_reply",
                            "cycle": t,
                            "user_id": user,
                            "due_at": sent + timedelta(days=3),
                            "status": "pending",
                            "message_id": t,
                            "contact_email": f"x{t}@ext{t % 997}.test",
                            "waiting_since": sent,
                        }
                    )
                if t % 20 == 0:
                    checks.append(
                        {
                            "target_kind": "thread",
                            "target_id": t,
                            "check_at": NOW + timedelta(days=rnd.uniform(0.01, 10)),
                        }
                    )
            _insert(conn, models.Thread, threads)
            _insert(conn, models.Message, messages)
            _insert(conn, models.Participant, parts)
            _insert(conn, models.Reminder, rems)
        _insert(conn, models.ReminderCheck, checks)
        _insert(conn, models.ReminderState, [{"name": "threads_changed_until", "at": NOW}])
        if conn.dialect.name == "postgresql":
            for table in ("threads", "messages", "participants", "reminders", "users"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    with engine.connect() as conn:  # fresh planner statistics, as autovacuum would have
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    engine.dispose()
    return {"generate_s": round(time.perf_counter() - started, 1)}


def touch(url: str, n_threads: int, count: int, seed: int = 7) -> list[int]:
    """`count` threads with a pending reminder get a real reply from their contact."""
    rnd = random.Random(seed)
    tids = rnd.sample(range(10, n_threads + 1, 10), count)
    at = NOW - timedelta(hours=1)
    body = b"From: x@ext.test\r\nSubject: RE\r\n\r\nWe agree, please send the contract.\r\n"
    engine = store.make_engine(url)
    with engine.begin() as conn:
        base = int(conn.scalar(sa.select(sa.func.max(models.Message.id))) or 0) + 1
        msgs, parts, raws, threads = [], [], [], []
        for i, t in enumerate(tids):
            mid = base + i
            user = t % 50
            sha = f"{mid:064x}"
            msgs.append(
                {
                    "id": mid,
                    "key": f"r{mid}@ext.test",
                    "message_id": f"r{mid}@ext.test",
                    "thread_id": t,
                    "subject": "RE: Offer",
                    "sent_at": at,
                    "direction": "inbound",
                    "from_email": f"x{t}@ext{t % 997}.test",
                    "sha256": sha,
                    "snippet": "We agree",
                }
            )
            parts.append({"message_id": mid, "role": "to", "email": f"u{user:02d}@example.com"})
            raws.append({"sha256": sha, "data": body})
            threads.append(
                {"tid": t, "last_at": at, "last_message_id": mid, "updated_at": datetime.now(UTC)}
            )
        _insert(conn, models.Message, msgs)
        _insert(conn, models.Participant, parts)
        _insert(conn, models.MessageRaw, raws)
        table = store.table(models.Thread)
        conn.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("tid"))
            .values(
                last_at=sa.bindparam("last_at"),
                last_inbound_at=sa.bindparam("last_at"),
                last_direction="inbound",
                last_message_id=sa.bindparam("last_message_id"),
                message_count=2,
                updated_at=sa.bindparam("updated_at"),
            ),
            threads,
        )
    engine.dispose()
    return tids


def _pass(url: str, cfg: config.Config, thread_ids: list[int] | None = None) -> dict[str, Any]:
    engine = store.make_engine(url)
    factory = store.session_factory(engine)
    started = time.perf_counter()
    with store.session_scope(factory) as s:
        report = reminders.evaluate(s, cfg, NOW, thread_ids)
    wall = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": round(wall, 3),
        "threads": report.threads,
        "targets": report.targets,
        "counts": report.counts,
    }


def bench_evaluation(url: str, n_threads: int, n_users: int, tmp: Path) -> dict[str, Any]:
    """Generate, then time the three passes described in the module docstring."""
    engine = store.make_engine(url)
    store.upgrade(engine)
    engine.dispose()
    out: dict[str, Any] = generate(url, n_threads, n_users)
    cfg = _config(url, n_users, tmp)
    out["nothing_changed"] = [_pass(url, cfg) for _ in range(3)]
    tids = touch(url, n_threads, 1000)
    out["after_1000_changed"] = _pass(url, cfg)
    tids2 = touch(url, n_threads, 1000, seed=11)
    out["hook_1000_threads"] = _pass(url, cfg, tids2)
    out["nothing_changed_after"] = _pass(url, cfg)
    del tids
    return out


# --- digest rendering throughput (notifications, issue #5) goes below this line -------------


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'reminders-bench.db'}"


def _postgres() -> tuple[str, sa.Engine, str]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"mm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(False), admin, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    results: dict[str, Any] = {"threads": args.threads, "users": args.users}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.backend in ("sqlite", "both"):
            results["sqlite"] = bench_evaluation(_sqlite(tmp), args.threads, args.users, tmp)
            print(json.dumps({"sqlite": results["sqlite"]}, indent=1), flush=True)
        if args.backend in ("postgresql", "both"):
            url, admin, name = _postgres()
            try:
                results["postgresql"] = bench_evaluation(url, args.threads, args.users, tmp)
                print(json.dumps({"postgresql": results["postgresql"]}, indent=1), flush=True)
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
