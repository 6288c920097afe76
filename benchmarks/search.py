"""Search benchmark (issue #14: "over 200,000 messages it must answer in well under a
second"): the matcher benchmark's synthetic CRM and mail (`benchmarks/match.py generate`:
200,000 messages, 100,000 contacts, 20,000 companies), plus a mailbox of alice's holding
every message, one of bob's holding every tenth, and a snippet of six words (some
accented) per message. Then each typical search runs --repeat times through
`services.search.search`; p50 and p95 per search. Target: p95 < 300 ms.

    python benchmarks/search.py                 # SQLite in a temporary directory
    python benchmarks/search.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/search.py --scale 0.05    # quick run
    python benchmarks/search.py --reuse URL     # measure again on a database filled before
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import match
import sqlalchemy as sa

from mailmanager.db import models, store
from mailmanager.services import access
from mailmanager.services.search import Position, SearchQuery, search

VOCAB = ("équipement", "devis", "livraison", "facture", "réunion", "contrat", "échantillon",
         "tarif", "commande", "relance", "remise", "garantie", "délai", "planning", "maquette",
         "prototype", "sécurité", "formation", "audit", "budget")  # fmt: skip


def prepare(url: str, n: dict[str, int]) -> float:
    started = time.perf_counter()
    match.generate(url, n)
    rng = random.Random(7)
    engine = store.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(store.table(models.Mailbox)),
            [
                {"id": 1, "name": "alice", "connector": "imap", "owner_id": 1, "enabled": True},
                {"id": 2, "name": "bob", "connector": "imap", "owner_id": 2, "enabled": True},
            ],
        )
        conn.execute(
            sa.insert(store.table(models.Folder)),
            [
                {"id": 1, "mailbox_id": 1, "remote_id": "INBOX", "name": "INBOX", "role": "inbox"},
                {"id": 2, "mailbox_id": 2, "remote_id": "INBOX", "name": "INBOX", "role": "inbox"},
            ],
        )
        total = n["messages"]
        now = models.utcnow()
        locs = [
            {
                "folder_id": 1,
                "provider_id": str(i),
                "message_id": i,
                "flags": "",
                "labels": "",
                "seen_at": now,
            }
            for i in range(1, total + 1)
        ] + [
            {
                "folder_id": 2,
                "provider_id": str(i),
                "message_id": i,
                "flags": "",
                "labels": "",
                "seen_at": now,
            }
            for i in range(1, total + 1, 10)
        ]
        for part in store.chunks(locs, 20_000):
            conn.execute(sa.insert(store.table(models.MessageLocation)), list(part))
        M = store.table(models.Message)
        rows = [
            {"i": i, "s": " ".join(rng.sample(VOCAB, 6)) + f" ref{i % 5000}"}
            for i in range(1, total + 1)
        ]
        for part in store.chunks(rows, 20_000):
            conn.execute(
                sa.update(M).where(M.c.id == sa.bindparam("i")).values(snippet=sa.bindparam("s")),
                list(part),
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


def queries(url: str) -> dict[str, tuple[str, SearchQuery]]:
    """The typical searches, for a person and a company that have mail."""
    engine = store.make_engine(url)
    with engine.connect() as conn:
        address = conn.execute(
            sa.text(
                "SELECT email FROM participants WHERE email LIKE 'p%@c%.com' "
                "ORDER BY message_id DESC LIMIT 1"
            )
        ).scalar_one()
    engine.dispose()
    c = address.split("@c")[1].removesuffix(".com")
    year = (date(2025, 11, 1), date(2026, 10, 31))
    return {
        "word (common)": ("alice@example.com", SearchQuery(words="devis")),
        "word (rare)": ("alice@example.com", SearchQuery(words="ref1234")),
        "words, accents": ("alice@example.com", SearchQuery(words="equipement securite")),
        "person (address)": ("alice@example.com", SearchQuery(person=address)),
        "person (part)": ("alice@example.com", SearchQuery(person=address.split("@")[0] + "@")),
        "company (name)": ("alice@example.com", SearchQuery(company=f"Company {c}")),
        "date range": (
            "alice@example.com",
            SearchQuery(since=date(2025, 3, 1), until=date(2025, 3, 31)),
        ),
        "combined": (
            "alice@example.com",
            SearchQuery(words="devis", company=f"Company {c}", since=year[0], until=year[1]),
        ),
        "page 10 (offset)": ("alice@example.com", SearchQuery(words="facture", offset=225)),
        # as the page's "next" link asks for it: after the last hit of page 9 (`keyset`)
        "page 10": ("alice@example.com", SearchQuery(words="facture", offset=225)),
        "bob: word": ("bob@example.com", SearchQuery(words="contrat livraison")),
    }


def keyset(factory: Any, cfg: Any, viewer: access.Viewer, q: SearchQuery) -> SearchQuery:
    """`q` starting after the hit before its offset (found untimed), as the web page's
    "next" link asks for it."""
    with factory() as s:
        (last,) = search(s, cfg, viewer, dataclasses.replace(q, offset=q.offset - 1, limit=1)).hits
    assert last.sent_at is not None
    return dataclasses.replace(q, before=Position(last.sent_at, last.message_id))


def measure(url: str, root: Path, repeat: int) -> None:
    cfg = match._config(url, root)
    engine = store.make_engine(url)
    factory = store.session_factory(engine)
    print(f"{'search':<18} {'p50 ms':>8} {'p95 ms':>8} {'hits':>5}")
    worst = 0.0
    for name, (who, q) in queries(url).items():
        viewer = access.viewer_for(cfg, who)
        assert viewer is not None
        if name == "page 10":
            q = keyset(factory, cfg, viewer, q)
        times, hits = [], 0
        for _ in range(repeat):
            with factory() as s:
                t0 = time.perf_counter()
                hits = len(search(s, cfg, viewer, q).hits)
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        worst = max(worst, p95)
        print(f"{name:<18} {statistics.median(times):8.1f} {p95:8.1f} {hits:5d}")
    print(f"target p95 < 300 ms: worst {worst:.1f} ms: {'ok' if worst < 300 else 'MISSED'}")
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--db", help="database URL (default: SQLite in a temporary directory)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    ap.add_argument("--repeat", type=int, default=20, help="runs of each search")
    ap.add_argument("--reuse", help="measure on a database this script filled before (URL)")
    args = ap.parse_args()
    if args.reuse:
        with tempfile.TemporaryDirectory(prefix="mm-search-bench-") as tmp:
            measure(args.reuse, Path(tmp), args.repeat)
        return
    n = {k: max(10, int(v * args.scale)) for k, v in match.SIZES.items()}
    with tempfile.TemporaryDirectory(prefix="mm-search-bench-") as tmp:
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
            print(f"generate: {prepare(url, n):.1f} s")
            measure(url, root, args.repeat)
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()


if __name__ == "__main__":
    main()
