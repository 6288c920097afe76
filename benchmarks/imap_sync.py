"""Benchmark: syncing N messages from a private Dovecot, ours against mbsync (isync).

    python benchmarks/imap_sync.py [--n 20000] [--json out.json] [--keep]

Seeds a Maildir directly (realistic mail from `mailmanager.testing.bulkmail`: 2-200 KB,
~15 KB on average, threads, attachments; INBOX / Sent / Archive), starts Dovecot on it
(`mailmanager.testing.dovecot`), warms Dovecot's index, then measures, each in its own child
process so peak RSS is per measurement:

1. the IMAP connector alone: a full fetch of every folder (batches of 400, the core's
   default `batch_size`);
2. our full sync through the CLI (`mailmanager --config F sync --json`: fetch + parse +
   store + thread into SQLite);
3. our no-change resync, timed inside the process around `Syncer.sync()`;
4. mbsync into a Maildir, full then no-change (default settings, so it fsyncs).

The full syncs (2 and 4) alternate `--repeat` times (default 2), each from scratch; each side
counts its best run, as single runs vary with the disk's flushes.

Targets (issue 3): full sync >= 1.0x mbsync's msgs/s; no-change <= 2x mbsync's no-op time;
peak RSS <= 200 MB and flat in N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from mailmanager.testing import bench, bulkmail

USER = "alice"
FOLDERS = ("INBOX", "Sent", "Archive")


# ------------------------------------------------------------------------- measurement
def measured(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float, str]:
    """Run cmd; (wall seconds, peak RSS MB of it and its reaped children, stdout)."""
    with out.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {out.read_text()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out.read_text()


def phase_connector(config: str) -> None:
    """Child: the connector alone, full fetch of every folder."""
    from mailmanager import config as config_mod
    from mailmanager import registry

    cfg = config_mod.load(config)
    box = cfg.mailbox(USER)
    cls = registry.load(box.connector)
    conn = cls(box.connector_config(cfg.base_dir))
    print(json.dumps(bench.full_fetch(conn, limit=400)))


def phase_nochange(config: str) -> None:
    """Child: one no-change resync, timed around Syncer.sync() only."""
    from mailmanager import config as config_mod
    from mailmanager.db import store
    from mailmanager.sync import engine as sync

    cfg = config_mod.load(config)
    engine = store.make_engine(cfg.database.url_with_secret())
    syncer = sync.Syncer(cfg, store.session_factory(engine))
    started = time.perf_counter()
    report = syncer.sync(USER)
    seconds = time.perf_counter() - started
    engine.dispose()
    print(json.dumps({"seconds": seconds, "new": report.total("new_messages"),
                      "status": report.status}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="messages to seed (default 20000)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument(
        "--repeat", type=int, default=2, help="full syncs per contender, best counts (default 2)"
    )
    ap.add_argument("--phase", choices=["connector", "nochange"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "connector":
        return phase_connector(args.config)
    if args.phase == "nochange":
        return phase_nochange(args.config)

    from mailmanager.testing.dovecot import PASSWORD, DovecotServer

    work = Path(tempfile.mkdtemp(prefix="mm-bench-"))
    work.chmod(0o755)  # Dovecot runs as nobody when we are root: it must reach its dir
    server = DovecotServer(work / "dovecot")
    figures: dict[str, Any] = {"n": args.n}
    try:
        t0 = time.perf_counter()
        per_folder = {f: 0 for f in FOLDERS}
        total_bytes = 0
        for folder, raw in bulkmail.generate(args.n):
            server.write_maildir(USER, [raw], folder)
            per_folder[folder] += 1
            total_bytes += len(raw)
        figures["seed_seconds"] = time.perf_counter() - t0
        figures["avg_kb"] = total_bytes / args.n / 1024
        figures["folders"] = per_folder
        server.start()
        with server.session(USER) as imap:  # warm Dovecot's index for every contender
            for folder in FOLDERS:
                imap.select_folder(folder, readonly=True)
                imap.search(["ALL"])

        env = {**os.environ, "ALICE_IMAP_PASSWORD": PASSWORD}
        config = work / "mm.toml"
        config.write_text(textwrap.dedent(f"""
            [database]
            url = "sqlite:///{work / 'mm.db'}"
            [organization]
            domains = ["example.com"]
            [[users]]
            email = "alice@example.com"
            name = "Alice Martin"
            [[mailboxes]]
            name = "{USER}"
            connector = "imap"
            host = "127.0.0.1"
            port = {server.imap_port}
            security = "none"
            username = "{USER}"
            password_env = "ALICE_IMAP_PASSWORD"
            owner = "alice@example.com"
            """))  # fmt: skip
        me = [sys.executable, str(Path(__file__).resolve())]

        wall, rss, out = measured([*me, "--phase", "connector", "--config", str(config)],
                                  env, work / "connector.out")  # fmt: skip
        got = json.loads(out)
        figures["connector"] = {"seconds": got["seconds"], "wall": wall, "rss_mb": rss,
                                "messages": got["messages"],
                                "mb_per_s": got["bytes"] / got["seconds"] / 1e6}  # fmt: skip

        mm = shutil.which("mailmanager")
        cli = [mm] if mm else [sys.executable, "-m", "mailmanager"]
        rc = work / "mbsyncrc"
        rc.write_text(textwrap.dedent(f"""
            IMAPAccount bench
            Host 127.0.0.1
            Port {server.imap_port}
            User {USER}
            Pass {PASSWORD}
            SSLType None
            AuthMechs LOGIN

            IMAPStore remote
            Account bench

            MaildirStore local
            Path {work}/mbsync/
            Inbox {work}/mbsync/INBOX
            SubFolders Verbatim

            Channel bench
            Far :remote:
            Near :local:
            Patterns {" ".join(FOLDERS)}
            Create Near
            Sync Pull
            SyncState *
            """))  # fmt: skip
        mbsync = ["mbsync", "-q", "-c", str(rc), "-a"]
        # Full syncs alternate, ours then mbsync's, each from scratch, `--repeat` times: disk
        # flushes make single runs vary (mbsync fsyncs every message), so each side is
        # judged on its best run.
        figures["full_sync_runs"], figures["mbsync_full_runs"] = [], []
        for _ in range(args.repeat):
            for leftover in work.glob("mm.db*"):
                leftover.unlink()
            wall, rss, out = measured([*cli, "--config", str(config), "sync", "--json"], env,
                                      work / "sync.out")  # fmt: skip
            report = json.loads(out)
            figures["full_sync_runs"].append(
                {"wall": wall, "rss_mb": rss, "engine": report["mailboxes"][0]["elapsed"],
                 "messages": report["totals"]["messages"],
                 "threads": report["totals"]["threads"]}
            )  # fmt: skip
            shutil.rmtree(work / "mbsync", ignore_errors=True)
            (work / "mbsync").mkdir()
            wall, rss, _ = measured(mbsync, env, work / "mb.out")
            figures["mbsync_full_runs"].append({"wall": wall, "rss_mb": rss})
        figures["full_sync"] = min(figures["full_sync_runs"], key=lambda r: r["wall"])
        figures["mbsync_full"] = min(figures["mbsync_full_runs"], key=lambda r: r["wall"])
        wall, rss, out = measured([*me, "--phase", "nochange", "--config", str(config)], env,
                                  work / "nochange.out")  # fmt: skip
        figures["nochange"] = {**json.loads(out), "wall": wall, "rss_mb": rss}
        wall, rss, _ = measured(mbsync, env, work / "mb.out")
        figures["mbsync_nochange"] = {"wall": wall, "rss_mb": rss}
        mb_files = sum(len(files) for d, _, files in os.walk(work / "mbsync")
                       if d.endswith(("/cur", "/new")))  # fmt: skip
        figures["mbsync_full"]["messages"] = mb_files
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    report_figures(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def report_figures(f: dict[str, Any]) -> None:
    n = f["n"]
    c, s, z = f["connector"], f["full_sync"], f["nochange"]
    mb, mbz = f["mbsync_full"], f["mbsync_nochange"]
    rate = {"connector": n / c["seconds"], "sync": n / s["wall"], "mbsync": n / mb["wall"]}
    print(f"N = {n} messages, {f['avg_kb']:.1f} KB average, folders {f['folders']}; "
          f"seeded in {f['seed_seconds']:.1f} s")  # fmt: skip
    rows = [
        ("connector alone, full fetch", c["seconds"], rate["connector"], c["rss_mb"]),
        ("our full sync (CLI, SQLite)", s["wall"], rate["sync"], s["rss_mb"]),
        ("  of which the sync engine", s["engine"], n / s["engine"], s["rss_mb"]),
        ("our no-change resync (in process)", z["seconds"], None, z["rss_mb"]),
        ("mbsync full", mb["wall"], rate["mbsync"], mb["rss_mb"]),
        ("mbsync no-change", mbz["wall"], None, mbz["rss_mb"]),
    ]
    print(f"{'':38}{'wall s':>9}{'msgs/s':>10}{'peak RSS MB':>13}")
    for name, secs, r, rss in rows:
        print(f"{name:38}{secs:9.2f}{(f'{r:.0f}' if r else '-'):>10}{rss:13.1f}")
    runs = ", ".join(f"{r['wall']:.2f}" for r in f.get("full_sync_runs", [s]))
    mb_runs = ", ".join(f"{r['wall']:.2f}" for r in f.get("mbsync_full_runs", [mb]))
    print(f"full syncs, wall s (best counts): ours {runs}; mbsync {mb_runs}")
    print(f"connector throughput: {c['mb_per_s']:.1f} MB/s; stored {s['messages']} messages "
          f"in {s['threads']} threads; mbsync wrote {mb['messages']} files")  # fmt: skip
    checks = [
        ("full sync >= 1.0x mbsync msgs/s", rate["sync"] / rate["mbsync"], 1.0, True),
        ("connector >= 1.0x mbsync msgs/s", rate["connector"] / rate["mbsync"], 1.0, True),
        ("no-change <= 2x mbsync no-op", z["seconds"] / mbz["wall"], 2.0, False),
    ]
    for label, ratio, target, higher in checks:
        ok = ratio >= target if higher else ratio <= target
        print(f"{label:38} ratio {ratio:6.2f}  {'PASS' if ok else 'MISS'}")
    peak = max(c["rss_mb"], z["rss_mb"], *(r["rss_mb"] for r in f.get("full_sync_runs", [s])))
    print(f"{'peak RSS <= 200 MB':38} {peak:6.1f} MB {'PASS' if peak <= 200 else 'MISS'}")


if __name__ == "__main__":
    main()
