"""Ingest benchmark: parse-only and full ingest (parse + store + thread) into SQLite.

The corpus (../shared/corpus) is replicated to N messages (default 20,000) and written as a
Maildir; each measurement runs in a fresh subprocess so its peak RSS is its own. Full ingest
goes through the real sync engine and maildir connector, exactly as `mailmanager sync` does.

    python benchmarks/ingest.py            # N = 2,000 and 20,000
    python benchmarks/ingest.py --n 50000  # one size
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailmanager.testing import corpus


def write_maildir(root: Path, n: int) -> int:
    folder = root / "INBOX"
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    total = 0
    for i, raw in enumerate(corpus.replicate(corpus.corpus_messages(), n)):
        (folder / "cur" / f"{1764000000 + i}.M{i}P1.bench:2,S").write_bytes(raw)
        total += len(raw)
    return total


def worker_parse(root: Path) -> dict[str, float]:
    from mailmanager.mail import parsing

    files = sorted((root / "INBOX" / "cur").iterdir())
    start = time.perf_counter()
    quarantined = 0
    for f in files:
        if isinstance(parsing.parse(f.read_bytes()), parsing.Quarantined):
            quarantined += 1
    elapsed = time.perf_counter() - start
    return {"messages": len(files), "seconds": elapsed, "quarantined": quarantined}


def worker_ingest(root: Path, workers: int) -> dict[str, float]:
    from mailmanager import config
    from mailmanager.db import store
    from mailmanager.sync import engine as sync

    db = root / "bench.db"
    cfg_path = root / "bench.toml"
    cfg_path.write_text(
        f"""
[database]
url = "sqlite:///{db}"
[organization]
domains = ["example.com"]
[[users]]
email = "alice@example.com"
name = "Alice"
[[mailboxes]]
name = "bench"
connector = "maildir"
path = "{root}"
owner = "alice@example.com"
[sync]
batch_size = 500
parse_workers = {workers}
"""
    )
    cfg = config.load(cfg_path)
    engine = store.make_engine(cfg.database.url)
    store.upgrade(engine)
    factory = store.session_factory(engine)
    start = time.perf_counter()
    report = sync.Syncer(cfg, factory).sync("bench")
    elapsed = time.perf_counter() - start
    assert report.status == "ok", report.error
    start2 = time.perf_counter()
    again = sync.Syncer(cfg, factory).sync("bench")
    nochange = time.perf_counter() - start2
    assert again.total("new_messages") == 0
    return {
        "messages": report.total("fetched"),
        "new_messages": report.total("new_messages"),
        "seconds": elapsed,
        "nochange_seconds": nochange,
        "db_mb": db.stat().st_size / 1e6,
    }


def run_child(args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="message count (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="parse worker processes")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, root = args.child
        result = (
            worker_parse(Path(root)) if mode == "parse" else worker_ingest(Path(root), args.workers)
        )
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result["peak_rss_mb"] = usage / 1024
        result["peak_rss_children_mb"] = kids / 1024
        print(json.dumps(result))
        return
    sizes = args.n or [2000, 20000]
    print(
        f"{'N':>7} {'stage':<12} {'msgs/s':>9} {'seconds':>8} {'peak RSS MB':>12}"
        f" {'parse-proc MB':>13}"
    )
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
            root = Path(tmp)
            mb = write_maildir(root, n) / 1e6
            parse = run_child(["--child", "parse", tmp])
            ingest = run_child(["--workers", str(args.workers), "--child", "ingest", tmp])
            for stage, r in (("parse-only", parse), ("full ingest", ingest)):
                print(
                    f"{n:>7} {stage:<12} {r['messages'] / r['seconds']:>9.0f} {r['seconds']:>8.2f}"
                    f" {r['peak_rss_mb']:>12.0f} {r['peak_rss_children_mb']:>13.0f}"
                )
            print(
                f"{n:>7} {'no-change':<12} {'':>9} {ingest['nochange_seconds']:>8.3f}"
                f"   (corpus {mb:.0f} MB, database {ingest['db_mb']:.0f} MB)"
            )


if __name__ == "__main__":
    main()
