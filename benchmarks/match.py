"""Matcher benchmark: 100,000 contacts, 20,000 companies, 50,000 opportunities and 200,000
messages, generated synthetically and inserted with executemany.

    python benchmarks/match.py                  # SQLite in a temporary directory
    python benchmarks/match.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/match.py --scale 0.1      # a tenth of every count

With a PostgreSQL URL the benchmark creates its own database next to the one named (and
drops it at the end). Each measurement runs in a fresh subprocess, so its peak RSS is its own:

  generate     the CRM and the mail (threads of 1-6 messages over two years: customers and
               their colleagues, unknown people at customer domains, free-mail strangers,
               subject tags, newsletters, auto-replies, internal mail), numbered in
               arrival order as a sync numbers them, then ANALYZE, and VACUUM on
               PostgreSQL (as autovacuum would after such a load: without statistics
               PostgreSQL scans the participants table for every chunk); not a target
  incremental  the matcher's output is removed (untimed), then the mail arrives in time
               order in sync batches of --batch messages; after each batch the sync
               hook's work runs: match every thread the batch touched (whole threads:
               earlier messages included), commit
  full         `mailmanager match --all` from scratch (matcher output removed first)
  rematch      `mailmanager match --all` again on an up-to-date database (nothing to write)

The three measurements run --repeat times (default 2), each from the same starting state;
the best of each is reported. Targets: incremental >= 20,000 msgs/s; full re-match of
200,000 messages < 30 s; peak RSS < 500 MB; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.matching import run as linking

BASE = datetime(2026, 11, 1, tzinfo=UTC)
SIZES = {"contacts": 100_000, "companies": 20_000, "opportunities": 50_000, "messages": 200_000}


def _config(url: str, root: Path) -> config.Config:
    path = root / "bench.toml"
    path.write_text(
        f"""
[database]
url = "{url}"
[organization]
domains = ["example.com"]
[[users]]
email = "alice@example.com"
name = "Alice"
[[users]]
email = "bob@example.com"
name = "Bob"
"""
    )
    return config.load(path)


def _insert(conn: sa.Connection, model: type[models.Base], rows: list[dict[str, Any]]) -> None:
    for part in store.chunks(rows, 20_000):
        conn.execute(sa.insert(store.table(model)), list(part))


def _threads(rng: random.Random, n: dict[str, int], contact_of: Any) -> Iterator[list[Any]]:
    """Threads as lists of (direction, sender, recipients, subject, flags)."""
    t = 0
    while True:
        t += 1
        company = rng.randint(1, n["companies"])
        kind = rng.random()
        size = rng.randint(1, 6)
        subject = f"Projet {t}"
        if kind < 0.60:  # a customer, maybe a colleague in cc
            people = [contact_of(company, rng.randint(0, 4))]
            if rng.random() < 0.3:
                people.append(contact_of(company, rng.randint(0, 4)))
            if rng.random() < 0.10:
                subject += f" [OPP-{rng.randint(1, n['opportunities'])}]"
        elif kind < 0.70:  # an unknown person at a customer
            people = [f"x{t}@c{company}.com"]
        elif kind < 0.82:  # a free-mail stranger
            people = [f"u{t}@gmail.com"]
        elif kind < 0.92:  # a newsletter
            yield [("inbound", f"news@c{company}.com", ["alice@example.com"], subject, "bulk")]
            continue
        else:
            yield [
                ("internal", "alice@example.com", ["bob@example.com"], subject, "")
                for _ in range(size)
            ]
            continue
        msgs = []
        for i in range(size):
            flags = "auto" if i and rng.random() < 0.03 else ""
            if i % 2 == 0:
                msgs.append(("outbound", "alice@example.com", people, subject, flags))
            else:
                msgs.append(
                    ("inbound", people[0], ["alice@example.com", *people[1:]], subject, flags)
                )
        yield msgs


def generate(url: str, n: dict[str, int]) -> dict[str, float]:
    rng = random.Random(42)
    engine = store.make_engine(url)
    store.upgrade(engine)
    started = time.perf_counter()
    nc, nk = n["companies"], n["contacts"]

    def contact_email(i: int) -> str:
        return f"p{i}@c{(i - 1) % nc + 1}.com"

    def contact_of(company: int, k: int) -> str:
        i = company + nc * (k % max(1, nk // nc))
        return contact_email(i) if i <= nk else contact_email(company)

    now = models.utcnow()
    with engine.begin() as conn:
        _insert(
            conn,
            models.User,
            [
                {"id": 1, "email": "alice@example.com", "name": "Alice", "created_at": now},
                {"id": 2, "email": "bob@example.com", "name": "Bob", "created_at": now},
            ],
        )
        _insert(
            conn,
            models.Company,
            [{"id": i, "name": f"Company {i}", "created_at": now} for i in range(1, nc + 1)],
        )
        domains = [{"company_id": i, "domain": f"c{i}.com"} for i in range(1, nc + 1)]
        domains += [{"company_id": i, "domain": f"c{i}-group.fr"} for i in range(1, nc + 1, 3)]
        _insert(conn, models.CompanyDomain, domains)
        _insert(
            conn,
            models.Contact,
            [
                {
                    "id": i,
                    "first_name": "P",
                    "last_name": str(i),
                    "company_id": (i - 1) % nc + 1,
                    "status": "client",
                    "source": "bench",
                    "phone": "",
                    "title": "",
                    "created_at": now,
                }
                for i in range(1, nk + 1)
            ],
        )
        emails = [
            {"contact_id": i, "email": contact_email(i), "display": ""} for i in range(1, nk + 1)
        ]
        emails += [
            {"contact_id": i, "email": f"firstlast{i}@gmail.com", "display": ""}
            for i in range(5, nk + 1, 5)
        ]
        _insert(conn, models.ContactEmail, emails)
        opps, members = [], []
        for i in range(1, n["opportunities"] + 1):
            company = rng.randint(1, nc)
            created = BASE - timedelta(days=rng.uniform(0, 700))
            stage = "open" if rng.random() < 0.6 else rng.choice(["won", "lost"])
            closed = created + timedelta(days=rng.uniform(30, 200)) if stage != "open" else None
            opps.append(
                {
                    "id": i,
                    "reference": f"OPP-{i}",
                    "title": f"Deal {i}",
                    "company_id": company,
                    "stage": stage,
                    "pipeline_step": "",
                    "currency": "EUR",
                    "created_at": created,
                    "closed_at": closed,
                }
            )
            for k in sorted({rng.randint(0, 4) for _ in range(rng.randint(1, 2))}):
                cid = company + nc * k
                if cid <= nk:
                    members.append({"opportunity_id": i, "contact_id": cid})
        _insert(conn, models.Opportunity, opps)
        _insert(conn, models.OpportunityContact, members)

        # Draw the threads, then number threads and messages in arrival order, as a sync
        # does: a message's id grows with the moment it arrived, a thread's with its first.
        drawn: list[tuple[datetime, list[Any]]] = []
        total = 0
        for msgs in _threads(rng, n, contact_of):
            msgs = msgs[: n["messages"] - total]
            drawn.append((BASE - timedelta(days=rng.uniform(0, 730)), msgs))
            total += len(msgs)
            if total >= n["messages"]:
                break
        drawn.sort(key=lambda d: d[0])
        arrivals = sorted(
            (start + timedelta(hours=5 * i), tid, i)
            for tid, (start, msgs) in enumerate(drawn, start=1)
            for i in range(len(msgs))
        )
        _insert(
            conn,
            models.Thread,
            [
                {
                    "id": tid,
                    "subject": msgs[0][3],
                    "subject_normalized": msgs[0][3].lower(),
                    "first_at": start,
                    "last_at": start + timedelta(hours=5 * (len(msgs) - 1)),
                    "message_count": len(msgs),
                    "updated_at": now,
                }
                for tid, (start, msgs) in enumerate(drawn, start=1)
            ],
        )
        messages, parts = [], []
        for mid, (at, tid, i) in enumerate(arrivals, start=1):
            direction, sender, to, subject, flags = drawn[tid - 1][1][i]
            messages.append(
                {
                    "id": mid,
                    "key": f"m{mid}@bench",
                    "message_id": f"m{mid}@bench",
                    "thread_id": tid,
                    "subject": ("RE: " if i else "") + subject,
                    "subject_normalized": subject.lower(),
                    "sent_at": at,
                    "direction": direction,
                    "from_email": sender,
                    "is_bulk": flags == "bulk",
                    "is_auto_reply": flags == "auto",
                    "sha256": f"{mid:064d}",
                    "snippet": "",
                    "created_at": now,
                }
            )
            parts.append({"message_id": mid, "role": "from", "email": sender, "name": ""})
            parts.extend(
                {"message_id": mid, "role": "to" if k == 0 else "cc", "email": a, "name": ""}
                for k, a in enumerate(to)
            )
            if len(messages) >= 20_000 or mid == total:
                _insert(conn, models.Message, messages)
                _insert(conn, models.Participant, parts)
                messages, parts = [], []
    # Fresh statistics and (PostgreSQL) a vacuumed table, as autovacuum gives after a bulk
    # load: otherwise the first run pays for setting every new row's hint bits.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    engine.dispose()
    return {"seconds": time.perf_counter() - started, "messages": total, "threads": len(drawn)}


def _clear(factory: Any, engine: sa.Engine) -> None:
    """Remove the matcher's output (untimed), so that a run starts from unmatched mail.

    On PostgreSQL the emptied tables are then vacuumed, as autovacuum would do after such a
    delete: without it every run after the first would write into a table and indexes
    bloated by the previous run's dead rows (some servers, this benchmark machine's among
    them, run with autovacuum off), and the repeats would not start from the same state.
    """
    with factory.begin() as s:
        s.execute(sa.delete(models.Link))
        s.execute(sa.delete(models.MatchState))
        s.execute(sa.delete(models.ReviewItem))
        s.execute(sa.delete(models.Suggestion))
        s.execute(sa.update(models.Opportunity).values(last_activity_at=None))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("links", "match_states", "review_items", "suggestions", "opportunities"):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def incremental(url: str, root: Path, batch: int) -> dict[str, float]:
    cfg = _config(url, root)
    engine = store.make_engine(url)
    factory = store.session_factory(engine)
    _clear(factory, engine)
    with factory() as s:
        order = (
            s.execute(
                sa.select(models.Message.thread_id).order_by(
                    models.Message.sent_at, models.Message.id
                )
            )
            .scalars()
            .all()
        )
    started = time.perf_counter()
    rematched = 0
    for part in store.chunks(order, batch):
        with store.session_scope(factory) as s:
            rematched += linking.match_threads(s, cfg, {t for t in part if t is not None}).messages
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": elapsed,
        "messages": len(order),
        "msgs_per_s": len(order) / elapsed,
        "messages_rematched": rematched,
        "batch": batch,
    }


def full(url: str, root: Path, scratch: bool) -> dict[str, float]:
    cfg = _config(url, root)
    engine = store.make_engine(url)
    factory = store.session_factory(engine)
    if scratch:
        _clear(factory, engine)
    started = time.perf_counter()
    with store.session_scope(factory) as s:
        report = linking.match_all(s, cfg, on_chunk=lambda _r: s.commit())
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": elapsed,
        "messages": report.messages,
        "msgs_per_s": report.messages / elapsed,
        "links_added": report.added,
        "links_removed": report.removed,
        "reviews": report.reviews_opened,
        "linked": report.reasons["linked"],
    }


def child(mode: str, url: str, root: str, extra: str) -> None:
    n = json.loads(extra)
    if mode == "generate":
        out = generate(url, n)
    elif mode == "incremental":
        out = incremental(url, Path(root), n["batch"])
    else:
        out = full(url, Path(root), scratch=mode == "full")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(mode: str, url: str, root: Path, extra: dict[str, Any]) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", mode, url, str(root), json.dumps(extra)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--db", help="database URL (default: SQLite in a temporary directory)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    ap.add_argument("--batch", type=int, default=1000, help="messages per sync batch")
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="run the three measurements this many times and keep each one's best (a shared "
        "machine's speed varies from minute to minute); every run starts from the same state",
    )
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    n = {k: max(10, int(v * args.scale)) for k, v in SIZES.items()}
    with tempfile.TemporaryDirectory(prefix="mm-match-bench-") as tmp:
        root = Path(tmp)
        admin = None
        if args.db and args.db.startswith("postgresql"):
            name = f"mm_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.db, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.engine.make_url(args.db).set(database=name).render_as_string(False)
        else:
            url = args.db or f"sqlite:///{root / 'bench.db'}"
        try:
            print(f"database: {sa.engine.make_url(url).get_backend_name()}; sizes: {n}")
            results = {"generate": run_child("generate", url, root, n)}
            runs: dict[str, list[dict[str, float]]] = {}
            for _ in range(args.repeat):
                for mode in ("incremental", "rematch", "full"):
                    r = run_child(mode, url, root, {**n, "batch": args.batch})
                    runs.setdefault(mode, []).append(r)
            for mode, rs in runs.items():
                results[mode] = {**min(rs, key=lambda r: r["seconds"]), "runs": len(rs)}
                if len(rs) > 1:
                    times = ", ".join(f"{r['seconds']:.1f}" for r in rs)
                    print(f"{mode:<12} seconds of each run: {times} (best kept)")
            for mode, r in results.items():
                figures = ", ".join(
                    f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in r.items()
                )
                print(f"{mode:<12} {figures}")
            inc, fm = results["incremental"], results["full"]
            peak = max(r["peak_rss_mb"] for m, r in results.items() if m != "generate")
            print(
                f"targets: incremental {inc['msgs_per_s']:,.0f} msgs/s (>= 20,000: "
                f"{'ok' if inc['msgs_per_s'] >= 20_000 else 'MISSED'}); full "
                f"{fm['seconds']:.1f} s for {fm['messages']:,} (< 30 s: "
                f"{'ok' if fm['seconds'] < 30 else 'MISSED'}); peak RSS {peak:.0f} MB "
                f"(< 500 MB: {'ok' if peak < 500 else 'MISSED'})"
            )
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()


if __name__ == "__main__":
    main()
