"""Hostile-mail benchmark (issue #16): time and peak RSS per hostile case, and what the
budgets cost ordinary mail.

1. Each case of `mailmanager.testing.hostile` (at the issue's scale, or the tests' with
   `--scale small`) is written alone, followed by a canary, into a Maildir and synced by
   `mailmanager sync` in a subprocess of its own (`hostile.measured_sync`, so the peak RSS
   is that sync's). The table says whether the hostile message was stored or quarantined
   (with the reason) and whether the canary after it was stored.
2. The whole shared corpus (../shared/corpus) is written as a Maildir (as
   `benchmarks/ingest.py` writes it) and synced into a new SQLite database, parse included,
   in one process (`parse_workers = 0`), each run in a fresh subprocess, `--repeat` times,
   interleaved; the run of least CPU time is kept (CPU time, not wall time: the machine is
   shared, and a busy neighbour changes the wall time far more than the 5 % measured):
   - `current`: this tree as it is;
   - `budgets relaxed`: the same with the parser's budgets (`mime.MAX_PARTS`, `MAX_DEPTH`,
     the HTML caps, `replies.TEXT_BUDGET`) lifted, in that subprocess only (set by
     `--child relaxed`, read by nothing else);
   - `--baseline REV` (optional, repeatable): the tree at git revision REV, written by
     `git archive` into a temporary directory (the working tree is not touched), or the
     tree in a directory REV, first on the path of the same child.

    python benchmarks/hostile.py                       # every case at full scale + corpus
    python benchmarks/hostile.py --scale small         # the property test's sizes
    python benchmarks/hostile.py --cases nested_divs,oversize --skip-corpus
    python benchmarks/hostile.py --baseline a188c31    # the corpus before issue #16 too
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

# Nothing of `mailmanager` at import time: the corpus child (`--child`) runs with another
# tree's `mailmanager` first on the path (`--baseline`), which may have no `testing.hostile`.
if TYPE_CHECKING:
    from mailmanager.testing import hostile

HERE = Path(__file__).resolve().parent

RSS_BUDGET_MB = 400


def case_config(root: Path, db_url: str) -> Path:
    from mailmanager.testing import hostile

    path = root / "hostile.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [database]
            url = "{db_url}"
            [organization]
            domains = ["example.com"]
            [[users]]
            email = "{hostile.ALICE}"
            name = "Alice"
            [[mailboxes]]
            name = "h"
            connector = "maildir"
            path = "{root}"
            owner = "{hostile.ALICE}"
            """
        )
    )
    return path


def outcome(db_url: str, tag: str) -> tuple[str, bool]:
    """(what became of the hostile message, whether the canary was stored)."""
    import sqlalchemy as sa

    from mailmanager.db import models, store
    from mailmanager.testing import hostile

    engine = store.make_engine(db_url)
    try:
        with engine.connect() as conn:
            ids = set(conn.scalars(sa.select(models.Message.message_id)))
            reasons = conn.scalars(sa.select(models.Quarantine.reason)).all()
    finally:
        engine.dispose()
    canary = hostile.canary_id(tag) in ids
    others = ids - {hostile.canary_id(tag)}
    if others:
        return "stored", canary
    if reasons:
        return f"quarantined: {reasons[0][:50]}", canary
    return "LOST", canary


def bench_case(case: hostile.Case, scale: int, timeout: float) -> dict[str, object]:
    from mailmanager.db import store
    from mailmanager.testing import hostile

    with tempfile.TemporaryDirectory(prefix="mm-hostile-") as tmp:
        root = Path(tmp)
        tag = f"bench-{case.name}"
        raw = case.make(scale, tag)
        size_mb = len(raw) / 1e6
        hostile.write_maildir(root / "INBOX", [raw, hostile.canary(tag)])
        del raw
        db_url = f"sqlite:///{root / 'hostile.db'}"
        engine = store.make_engine(db_url)
        store.upgrade(engine)
        engine.dispose()
        run = hostile.measured_sync(case_config(root, db_url), "--json", timeout=timeout)
        result, canary = outcome(db_url, tag)
        report = json.loads(run.stdout)["mailboxes"][0] if run.code == 0 else {}
        if run.code != 0:
            result = f"sync exit {run.code}: {run.stderr.strip().splitlines()[-1:]}"
        return {
            "case": case.name,
            "scale": scale,
            "size_mb": size_mb,
            "seconds": run.seconds,
            "sync_seconds": report.get("elapsed", float("nan")),
            "peak_rss_mb": run.peak_mb,
            "result": result,
            "canary": canary,
        }


def relax_budgets() -> None:
    """Lift the parser's budgets in this process (and the parse workers it forks)."""
    from mailmanager.mail import mime, replies

    huge = 1 << 40
    for name in ("MAX_PARTS", "MAX_DEPTH", "MAX_HTML_CHARS", "MAX_HTML_DEPTH", "_FEW_TAGS"):
        if hasattr(mime, name):
            setattr(mime, name, huge)
    mime.html_to_text.__defaults__ = (huge,)
    replies.TEXT_BUDGET = huge


def child_ingest(root: Path, relaxed: bool) -> dict[str, float]:
    """One sync of the Maildir at `root` into a new SQLite database, parse included, all in
    this process (`parse_workers = 0`: its CPU time, which a busy machine barely changes,
    is all in `time.process_time`), by whichever `mailmanager` is first on the path."""
    import resource
    import time

    from mailmanager import config
    from mailmanager.db import store
    from mailmanager.sync import engine as sync

    if relaxed:
        relax_budgets()
    db, cfg_path = root / "bench.db", root / "bench.toml"
    for leftover in (db, root / "bench.db-wal", root / "bench.db-shm"):
        leftover.unlink(missing_ok=True)
    cfg_path.write_text(
        textwrap.dedent(
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
            parse_workers = 0
            """
        )
    )
    cfg = config.load(cfg_path)
    engine = store.make_engine(cfg.database.url)
    store.upgrade(engine)
    factory = store.session_factory(engine)
    wall, cpu = time.perf_counter(), time.process_time()
    report = sync.Syncer(cfg, factory).sync("bench")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert report.status == "ok", report.error
    return {
        "messages": report.total("fetched"),
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def corpus_run(mode: str, root: Path, tree: Path | None) -> dict[str, float]:
    """`child_ingest` in a fresh subprocess: with this tree (`current`), this tree with the
    budgets lifted (`relaxed`), or the tree at `tree` (`baseline`). The child is this script
    run by `python -c` from the tree's directory, so that tree's `mailmanager` is found
    first (before the installed one)."""
    child = "relaxed" if mode == "relaxed" else "ingest"
    code = f"import runpy; runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    out = subprocess.run(
        [sys.executable, "-c", code, "--child", child, str(root)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree if mode == "baseline" and tree is not None else HERE.parent,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def export_tree(rev: str, into: Path) -> Path:
    """The repository's tree at `rev`, written into `into` (read from git; nothing in the
    working tree changes)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", rev],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def print_cases(rows: list[dict[str, object]]) -> None:
    print(
        f"{'case':<16} {'scale':>11} {'MB':>7} {'seconds':>8} {'sync s':>7} {'peak RSS MB':>11}"
        f"  {'canary':<6}  hostile message"
    )
    for r in rows:
        over = " OVER" if float(r["peak_rss_mb"]) > RSS_BUDGET_MB else ""  # type: ignore[arg-type]
        print(
            f"{r['case']:<16} {r['scale']:>11,} {r['size_mb']:>7.2f} {r['seconds']:>8.2f}"
            f" {r['sync_seconds']:>7.2f} {r['peak_rss_mb']:>11.0f}{over}"
            f"  {'stored' if r['canary'] else 'LOST':<6}  {r['result']}"
        )


def bench_corpus(repeat: int, baselines: list[str]) -> None:
    from mailmanager.testing import corpus, hostile

    with tempfile.TemporaryDirectory(prefix="mm-hostile-corpus-") as tmp:
        root = Path(tmp) / "maildir"
        messages = corpus.corpus_messages()
        n, mb = len(messages), hostile.write_maildir(root / "INBOX", messages) / 1e6
        trees: dict[str, tuple[str, Path | None]] = {
            "current": ("current", None),
            "budgets relaxed": ("relaxed", None),
        }
        for i, base in enumerate(baselines):  # a revision, or a directory holding a tree
            tree = Path(base) if Path(base).is_dir() else None
            tree = tree or export_tree(base, Path(tmp) / f"baseline{i}")
            trees[f"at {base}"] = ("baseline", tree)
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeat):  # interleaved, so a busy moment of the machine hits all
            for label, (mode, tree) in trees.items():
                r = corpus_run(mode, root, tree)
                if label not in best or r["cpu_seconds"] < best[label]["cpu_seconds"]:
                    best[label] = r
        print(f"\ncorpus: {n} messages, {mb:.0f} MB, one process; best of {repeat} runs")
        print(
            f"{'tree':<30} {'msgs/CPU s':>10} {'CPU s':>7} {'wall s':>7} {'peak RSS MB':>11}"
            f" {'current vs it':>14}"
        )
        for label, r in best.items():
            slower = best["current"]["cpu_seconds"] / r["cpu_seconds"] - 1
            print(
                f"{label[:30]:<30} {r['messages'] / r['cpu_seconds']:>10.0f}"
                f" {r['cpu_seconds']:>7.2f} {r['seconds']:>7.2f} {r['peak_rss_mb']:>11.0f}"
                f" {'' if label == 'current' else f'{slower:+.1%}':>14}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", choices=("full", "small"), default="full")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per case sync")
    ap.add_argument("--skip-corpus", action="store_true")
    ap.add_argument("--skip-cases", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="corpus runs per tree")
    ap.add_argument(
        "--baseline",
        metavar="REV|DIR",
        action="append",
        default=[],
        help="also time the corpus with the tree at git REV, or in DIR (repeatable)",
    )
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_ingest(Path(args.child[1]), args.child[0] == "relaxed")))
        return
    from mailmanager.testing import hostile

    if not args.skip_cases:
        names = args.cases.split(",") if args.cases else [c.name for c in hostile.CASES]
        rows = []
        for name in names:
            case = hostile.BY_NAME[name]
            scale = case.full if args.scale == "full" else case.small
            rows.append(bench_case(case, scale, args.timeout))
            print(f"  {name}: {rows[-1]['seconds']:.2f} s", file=sys.stderr)
        print_cases(rows)
    if not args.skip_corpus:
        bench_corpus(args.repeat, args.baseline)


if __name__ == "__main__":
    main()
