"""Benchmark: syncing N messages from the loopback Microsoft Graph fake (issue 6).

    python benchmarks/graph_sync.py [--n 20000] [--json out.json] [--keep]

Generates realistic mail (`mailmanager.testing.bulkmail.generate`: 2-200 KB, ~15 KB on
average, threads, attachments; Inbox / Sent Items / Archive), serves it from the Graph fake
(`mailmanager.testing.fakes.graph_server`, HTTPS, in its own process so it never shares our
GIL), then measures, each in its own child process so peak RSS is per measurement:

1. the fake alone: a minimal client (http.client, keep-alive, 4 threads like the connector)
   pages the delta query and GETs every `$value`; this is the ceiling the server allows;
2. the graph connector alone: list_folders + fetch_changes in batches of 200 (the core's
   default `batch_size`) until every folder is caught up;
3. a full sync through the sync engine into SQLite (fetch + parse + store + thread), the
   code path of `mailmanager sync`; the class is registered in the child because pyproject
   does not declare the `graph` entry point yet;
4. a no-change resync (one delta request per folder);
5. for reference, the same engine and mail fed by the in-memory connector: the engine's
   own ceiling on this machine, so (3) can be read as "what Graph costs a full sync".

Target (issue 6): connector >= 1,000 msgs/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailmanager.testing import bench

FOLDERS = {"INBOX": "inbox", "Sent": "sentitems", "Archive": "archive"}
USER = "bench"


def _client_options(info: dict[str, Any]) -> str:
    return textwrap.dedent(f"""
        connector = "graph"
        tenant_id = "{info['tenant_id']}"
        client_id = "{info['client_id']}"
        client_secret_env = "BENCH_GRAPH_SECRET"
        user = "{info['user']}"
        authority_url = "{info['authority_url']}"
        graph_url = "{info['graph_url']}"
        ssl_ca_file = "{info['ca_file']}"
        """)  # fmt: skip


# ------------------------------------------------------------------------- child phases
def phase_generate(n: int, path: Path) -> None:
    """Child: write n messages for the fake (`graph_server.write_messages`)."""
    from mailmanager.testing import bulkmail
    from mailmanager.testing.fakes import graph_server

    items = [(FOLDERS[folder], raw) for folder, raw in bulkmail.generate(n)]
    graph_server.write_messages(path, items)
    print(json.dumps({"avg_kb": sum(len(r) for _, r in items) / len(items) / 1024}))


def phase_fake(info: dict[str, Any]) -> None:
    """Child: the fake alone, through a bare http.client with 4 keep-alive connections."""
    import msal  # type: ignore[import-untyped]
    import requests

    session = requests.Session()
    session.verify, session.trust_env = info["ca_file"], False  # REQUESTS_CA_BUNDLE would win
    app = msal.ConfidentialClientApplication(
        info["client_id"], client_credential=info["client_secret"], http_client=session,
        authority=f"{info['authority_url']}/{info['tenant_id']}", instance_discovery=False,
    )  # fmt: skip
    origin = urlsplit(info["graph_url"])
    token = app.acquire_token_for_client([f"https://{origin.netloc}/.default"])["access_token"]
    ctx = ssl.create_default_context(cafile=info["ca_file"])
    base = origin.path
    headers = {
        "Authorization": f"Bearer {token}",
        "Prefer": 'IdType="ImmutableId", odata.maxpagesize=1000',
    }

    def connect() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(origin.hostname, origin.port, context=ctx)

    started = time.perf_counter()
    conn, ids = connect(), []
    for folder in FOLDERS.values():
        url = f"{base}/users/{info['user']}/mailFolders/{folder}/messages/delta?$select=id"
        while url:
            conn.request("GET", url, headers=headers)
            page = json.loads(conn.getresponse().read())
            ids += [e["id"] for e in page["value"]]
            url = page.get("@odata.nextLink", "").replace(f"https://{origin.netloc}", "")
    listed = time.perf_counter() - started
    size = [0] * 4

    def worker(k: int) -> None:
        c = connect()
        for pid in ids[k::4]:
            c.request("GET", f"{base}/users/{info['user']}/messages/{pid}/$value", headers=headers)
            size[k] += len(c.getresponse().read())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    print(json.dumps({"messages": len(ids), "bytes": sum(size), "seconds": seconds,
                      "listing_seconds": listed}))  # fmt: skip


def _register() -> None:
    from connectors.graph.connector import GraphConnector
    from mailmanager import registry

    registry.register("graph", GraphConnector)


def phase_connector(config: str) -> None:
    """Child: the connector alone, full fetch of every folder."""
    _register()
    from mailmanager import config as config_mod
    from mailmanager import registry

    cfg = config_mod.load(config)
    box = cfg.mailbox(USER)
    conn = registry.load(box.connector)(box.connector_config(cfg.base_dir))
    print(json.dumps(bench.full_fetch(conn)))


def phase_sync(config: str) -> None:
    """Child: one sync through the engine (first run: full; second run: no change)."""
    _register()
    from mailmanager import config as config_mod
    from mailmanager.db import store
    from mailmanager.sync import engine as sync

    cfg = config_mod.load(config)
    engine = store.make_engine(cfg.database.url_with_secret())
    store.upgrade(engine)
    syncer = sync.Syncer(cfg, store.session_factory(engine))
    started = time.perf_counter()
    report = syncer.sync(USER)
    seconds = time.perf_counter() - started
    engine.dispose()
    print(json.dumps({"seconds": seconds, "new": report.total("new_messages"),
                      "status": report.status, "error": report.error}))  # fmt: skip


def phase_memory(config: str, messages: str) -> None:
    """Child: the same engine and mail, fed by the in-memory connector (the engine's own
    ceiling, to tell what the Graph connector costs a full sync)."""
    from connectors.memory import MemoryConnector
    from mailmanager import config as config_mod
    from mailmanager import spi
    from mailmanager.db import store
    from mailmanager.sync import engine as sync
    from mailmanager.testing.fakes import graph_server

    account = MemoryConnector.account("bench")
    roles = {"inbox": spi.FolderRole.INBOX, "sentitems": spi.FolderRole.SENT,
             "archive": spi.FolderRole.ARCHIVE}  # fmt: skip
    for name, role in roles.items():
        account.add_folder(name, role)
    for folder, raw in graph_server.read_messages(Path(messages)):
        account.append(folder, raw)
    cfg = config_mod.load(config)
    engine = store.make_engine(cfg.database.url_with_secret())
    store.upgrade(engine)
    started = time.perf_counter()
    report = sync.Syncer(cfg, store.session_factory(engine)).sync(USER)
    seconds = time.perf_counter() - started
    engine.dispose()
    print(json.dumps({"seconds": seconds, "new": report.total("new_messages"),
                      "status": report.status, "error": report.error}))  # fmt: skip


def measured(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float, str]:
    """Run cmd; (wall seconds, peak RSS MB, stdout)."""
    with out.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[2:4]} failed: {out.read_text()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out.read_text().strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="messages to serve (default 20000)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--phase", choices=["generate", "fake", "connector", "sync", "memory"],
                    help=argparse.SUPPRESS)  # fmt: skip
    ap.add_argument("--arg", help=argparse.SUPPRESS)
    ap.add_argument("--messages", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "memory":
        return phase_memory(args.arg, args.messages)
    if args.phase == "generate":
        return phase_generate(args.n, Path(args.arg))
    if args.phase == "fake":
        return phase_fake(json.loads(Path(args.arg).read_text()))
    if args.phase == "connector":
        return phase_connector(args.arg)
    if args.phase == "sync":
        return phase_sync(args.arg)

    work = Path(tempfile.mkdtemp(prefix="mm-graph-bench-"))
    figures: dict[str, Any] = {"n": args.n}
    server: subprocess.Popen[bytes] | None = None
    try:
        env = {**os.environ, "BENCH_GRAPH_SECRET": "bench-secret"}
        # Generated in a child: a big parent would lend its peak RSS to every later child
        # (Linux keeps ru_maxrss across fork + exec).
        gen = [sys.executable, str(Path(__file__).resolve()), "--n", str(args.n)]
        _, _, out = measured([*gen, "--phase", "generate", "--arg", str(work / "messages.bin")],
                             env, work / "generate.out")  # fmt: skip
        figures["avg_kb"] = json.loads(out)["avg_kb"]
        info_path = work / "fake.json"
        server = subprocess.Popen(
            [sys.executable, "-m", "mailmanager.testing.fakes.graph_server", "--messages",
             str(work / "messages.bin"), "--info", str(info_path)], env=env,
        )  # fmt: skip
        deadline = time.time() + 300
        while not info_path.exists():
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError("the Graph fake did not start")
            time.sleep(0.2)
        info = json.loads(info_path.read_text())
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
            owner = "alice@example.com"
            """) + _client_options(info))  # fmt: skip
        me = [sys.executable, str(Path(__file__).resolve()), "--phase"]
        phases = [("fake", "fake", info_path), ("connector", "connector", config),
                  ("full_sync", "sync", config), ("nochange", "sync", config)]  # fmt: skip
        for key, phase, arg in phases:
            wall, rss, out = measured([*me, phase, "--arg", str(arg)], env, work / f"{key}.out")
            figures[key] = {**json.loads(out), "wall": wall, "rss_mb": rss}
        memory_cfg = work / "memory.toml"
        head = config.read_text().split("[[mailboxes]]")[0].replace("mm.db", "mem.db")
        box = f'name = "{USER}"\nowner = "alice@example.com"\nconnector = "memory"\n'
        memory_cfg.write_text(f'{head}[[mailboxes]]\n{box}store = "bench"\n')
        cmd = [*me, "memory", "--arg", str(memory_cfg), "--messages", str(work / "messages.bin")]
        wall, rss, out = measured(cmd, env, work / "memory.out")
        figures["engine_memory"] = {**json.loads(out), "wall": wall, "rss_mb": rss}
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def report(f: dict[str, Any]) -> None:
    n = f["n"]
    fake, conn, full, none = f["fake"], f["connector"], f["full_sync"], f["nochange"]
    print(f"N = {n} messages, {f['avg_kb']:.1f} KB average (Inbox / Sent Items / Archive)")
    print(f"{'':40}{'seconds':>9}{'msgs/s':>10}{'MB/s':>8}{'peak RSS MB':>13}")
    rows = [
        ("fake alone (http.client, 4 conns)", fake["seconds"], fake["messages"], fake["bytes"],
         fake["rss_mb"]),
        ("graph connector, full fetch", conn["seconds"], conn["messages"], conn["bytes"],
         conn["rss_mb"]),
        ("full sync (engine, SQLite)", full["seconds"], full["new"], None, full["rss_mb"]),
        ("no-change resync", none["seconds"], None, None, none["rss_mb"]),
        ("same engine fed by the memory connector", f["engine_memory"]["seconds"],
         f["engine_memory"]["new"], None, f["engine_memory"]["rss_mb"]),
    ]  # fmt: skip
    for name, secs, count, size, rss in rows:
        rate = f"{count / secs:.0f}" if count else "-"
        mbs = f"{size / secs / 1e6:.1f}" if size else "-"
        print(f"{name:40}{secs:9.2f}{rate:>10}{mbs:>8}{rss:13.1f}")
    rate = conn["messages"] / conn["seconds"]
    print(f"{'connector >= 1,000 msgs/s':40} {rate:8.0f}  {'PASS' if rate >= 1000 else 'MISS'}")
    cpu, load = conn["cpu_us"], os.getloadavg()[0]
    print(
        f"connector CPU: {cpu:.0f} us per message (one core: {1e6 / cpu:.0f} msgs/s ceiling); "
        f"load average at the end: {load:.1f} on {os.cpu_count()} cores"
    )
    if full.get("status") != "ok" or full["new"] != n:
        print(f"full sync: status {full.get('status')}, {full['new']} new: {full.get('error')}")


if __name__ == "__main__":
    main()
