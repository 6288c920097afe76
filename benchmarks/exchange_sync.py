"""Benchmark: syncing N messages from the loopback EWS fake through exchangelib.

    python benchmarks/exchange_sync.py [--n 20000] [--connections 2] [--json out.json]

The fake (`mailmanager.testing.fakes.ews_server`) runs in its own process, seeded with the
mail of `mailmanager.testing.bulkmail.generate` (2-200 KB, ~15 KB on average; Inbox / Sent
Items / Archive). Then, each in its own child process so peak RSS is per measurement:

1. the fake alone: raw HTTP POSTs of SyncFolderItems (512 changes a page) and GetItem
   (100 ids, MimeContent; `--connections` of them in parallel, like the connector), no
   exchangelib, no parsing beyond finding the ids: the ceiling the server allows;
2. the connector alone: a full fetch of every folder in batches of 200 (the core's default
   `batch_size`);
3. a full sync through the sync engine into SQLite (fetch + parse + store + thread).

Target (issue 6): >= 1,000 msgs/s for the connector, with the fake well above that.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from mailmanager.testing import bench

EMAIL = "alice@example.com"
FOLDERS = {"INBOX": "inbox", "Sent": "sentitems", "Archive": "Archive"}
_ID = re.compile(rb'<t:ItemId Id="([^"]+)"')


def phase_server(n: int, ready: Path) -> None:
    """Child: seed the fake, write its URL to `ready`, serve until SIGTERM."""
    from mailmanager.testing import bulkmail
    from mailmanager.testing.fakes import ews_server

    server = ews_server.EwsServer(auth="basic", username="alice", password="pw")
    mailbox = server.add_mailbox(EMAIL)
    target = {**FOLDERS, "Archive": mailbox.add_folder("Archive")}
    total = 0
    for folder, raw in bulkmail.generate(n):
        mailbox.append(target[folder], raw, is_read=folder != "INBOX")
        total += len(raw)
    for _, item in server.items.values():  # MimeContent encoded up front, as a store holds it
        item.b64 = base64.b64encode(item.mime).decode()
    server.start()
    ready.write_text(json.dumps({"url": server.url, "bytes": total}))
    signal.sigwait({signal.SIGTERM})
    server.stop()


def _post(session: Any, url: str, body: str) -> bytes:
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope '
        'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    r = session.post(url, data=envelope.encode(), auth=("alice", "pw"),
                     headers={"Content-Type": "text/xml; charset=utf-8"})  # fmt: skip
    r.raise_for_status()
    return bytes(r.content)


def _get_mime(sessions: Any, url: str, ids: list[bytes]) -> bytes:
    if not hasattr(sessions, "s"):
        import requests

        sessions.s = requests.Session()
    items = "".join(f'<t:ItemId Id="{x.decode()}"/>' for x in ids)
    return _post(sessions.s, url, "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
                 '<t:AdditionalProperties><t:FieldURI FieldURI="item:MimeContent"/>'
                 f"</t:AdditionalProperties></m:ItemShape><m:ItemIds>{items}</m:ItemIds>"
                 "</m:GetItem>")  # fmt: skip


def phase_fake(url: str, connections: int) -> None:
    """Child: the fake alone, driven by raw HTTP with as many parallel GetItems."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    session = requests.Session()
    sessions = threading.local()
    pool = ThreadPoolExecutor(connections)
    folder_ids = []
    refs = "".join(
        f'<t:DistinguishedFolderId Id="{d}"><t:Mailbox><t:EmailAddress>{EMAIL}</t:EmailAddress>'
        "</t:Mailbox></t:DistinguishedFolderId>"
        for d in ("inbox", "sentitems", "msgfolderroot")
    )
    answer = _post(session, url, f"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>"
                   f"</m:FolderShape><m:FolderIds>{refs}</m:FolderIds></m:GetFolder>")  # fmt: skip
    folder_ids = re.findall(rb'<t:FolderId Id="([^"]+)"', answer)
    root = folder_ids.pop()
    answer = _post(session, url, '<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>'
                   "IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="
                   '"folder:DisplayName"/></t:AdditionalProperties></m:FolderShape>'
                   f'<m:ParentFolderIds><t:FolderId Id="{root.decode()}"/></m:ParentFolderIds>'
                   "</m:FindFolder>")  # fmt: skip
    for fid, name in re.findall(rb'<t:FolderId Id="([^"]+)"[^>]*/>.*?<t:DisplayName>([^<]*)',
                                answer):  # fmt: skip
        if name == b"Archive":
            folder_ids.append(fid)
    count = size = 0
    started = time.perf_counter()
    for fid in folder_ids:
        state = ""
        while True:
            answer = _post(session, url, "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly"
                           "</t:BaseShape></m:ItemShape><m:SyncFolderId>"
                           f'<t:FolderId Id="{fid.decode()}"/></m:SyncFolderId>{state}'
                           "<m:MaxChangesReturned>512</m:MaxChangesReturned>"
                           "</m:SyncFolderItems>")  # fmt: skip
            ids = _ID.findall(answer)
            chunks = [ids[i : i + 100] for i in range(0, len(ids), 100)]
            for got in pool.map(lambda chunk: _get_mime(sessions, url, chunk), chunks):
                count += got.count(b"<t:MimeContent")
                size += len(got)
            found = re.search(rb"<m:SyncState>([^<]*)</m:SyncState>", answer)
            state = f"<m:SyncState>{found.group(1).decode()}</m:SyncState>" if found else ""
            if b"<m:IncludesLastItemInRange>true" in answer:
                break
    seconds = time.perf_counter() - started
    print(json.dumps({"messages": count, "bytes": size, "seconds": seconds}))


def _connector(url: str, connections: int) -> Any:
    from connectors.exchange.connector import ExchangeConnector
    from mailmanager import spi

    values = {o.name: o.default for o in ExchangeConnector.options}
    values.update(email=EMAIL, service_endpoint=url, auth_type="basic", username="alice",
                  password="pw", version="15.1.2.3", connections=connections)  # fmt: skip
    return ExchangeConnector(spi.ConnectorConfig("alice", values))


def phase_connector(url: str, connections: int) -> None:
    """Child: the connector alone, full fetch of every folder."""
    conn = _connector(url, connections)
    print(json.dumps(bench.full_fetch(conn)))


def phase_sync(config: str) -> None:
    """Child: a full sync through the sync engine (the class registered as the entry point
    `exchange` would be), timed around Syncer.sync()."""
    from connectors.exchange.connector import ExchangeConnector
    from mailmanager import config as config_mod
    from mailmanager import registry
    from mailmanager.db import store
    from mailmanager.sync import engine as sync

    registry.register("exchange", ExchangeConnector)
    cfg = config_mod.load(config)
    engine = store.make_engine(cfg.database.url_with_secret())
    store.upgrade(engine)
    syncer = sync.Syncer(cfg, store.session_factory(engine))
    started = time.perf_counter()
    report = syncer.sync("alice")
    seconds = time.perf_counter() - started
    engine.dispose()
    print(json.dumps({"seconds": seconds, "new": report.total("new_messages"),
                      "status": report.status, "error": report.error}))  # fmt: skip


def measured(cmd: list[str], out: Path) -> tuple[float, float, dict[str, Any]]:
    """Run cmd; (wall seconds, peak RSS MB, its JSON output)."""
    env = {**os.environ, "ALICE_EWS_PASSWORD": "pw"}
    with out.open("wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{cmd[2:4]} failed: {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="messages to seed (default 20000)")
    ap.add_argument("--connections", type=int, default=2, help="parallel GetItem requests")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--no-sync", action="store_true", help="skip the full sync into SQLite")
    ap.add_argument("--phase", choices=["server", "fake", "connector", "sync"],
                    help=argparse.SUPPRESS)  # fmt: skip
    ap.add_argument("--arg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase == "server":
        return phase_server(args.n, Path(args.arg))
    if args.phase == "fake":
        return phase_fake(args.arg, args.connections)
    if args.phase == "connector":
        return phase_connector(args.arg, args.connections)
    if args.phase == "sync":
        return phase_sync(args.arg)

    work = Path(tempfile.mkdtemp(prefix="mm-ews-bench-"))
    me = [sys.executable, str(Path(__file__).resolve())]
    ready = work / "ready.json"
    t0 = time.perf_counter()
    server = subprocess.Popen([*me, "--phase", "server", "--n", str(args.n), "--arg", str(ready)])
    figures: dict[str, Any] = {"n": args.n, "connections": args.connections}
    try:
        while not ready.exists():
            if server.poll() is not None:
                raise RuntimeError("the fake server died while seeding")
            time.sleep(0.2)
        time.sleep(0.1)
        info = json.loads(ready.read_text())
        url = info["url"]
        figures["seed_seconds"] = time.perf_counter() - t0
        figures["avg_kb"] = info["bytes"] / args.n / 1024
        for key, cmd in (
            ("fake", [*me, "--phase", "fake", "--arg", url,
                      "--connections", str(args.connections)]),
            ("connector", [*me, "--phase", "connector", "--arg", url,
                           "--connections", str(args.connections)]),
        ):  # fmt: skip
            wall, rss, got = measured(cmd, work / f"{key}.out")
            figures[key] = {**got, "wall": wall, "rss_mb": rss}
        if not args.no_sync:
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
                name = "alice"
                connector = "exchange"
                owner = "alice@example.com"
                email = "{EMAIL}"
                service_endpoint = "{url}"
                auth_type = "basic"
                username = "alice"
                password_env = "ALICE_EWS_PASSWORD"
                version = "15.1.2.3"
                connections = {args.connections}
                """))  # fmt: skip
            wall, rss, got = measured([*me, "--phase", "sync", "--arg", str(config)],
                                      work / "sync.out")  # fmt: skip
            figures["sync"] = {**got, "wall": wall, "rss_mb": rss}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def report(f: dict[str, Any]) -> None:
    n = f["n"]
    print(f"N = {n} messages, {f['avg_kb']:.1f} KB average; fake seeded in "
          f"{f['seed_seconds']:.1f} s; connections = {f['connections']}")  # fmt: skip
    print(f"{'':36}{'seconds':>9}{'msgs/s':>10}{'MB/s':>8}{'peak RSS MB':>13}")
    for key, label in (("fake", "fake alone (raw HTTP)"), ("connector", "connector, full fetch")):
        c = f[key]
        print(f"{label:36}{c['seconds']:9.2f}{c['messages'] / c['seconds']:10.0f}"
              f"{c['bytes'] / c['seconds'] / 1e6:8.1f}{c['rss_mb']:13.1f}")  # fmt: skip
    if "sync" in f:
        s = f["sync"]
        label, rate_s = "full sync into SQLite (engine)", s["new"] / s["seconds"]
        print(
            f"{label:36}{s['seconds']:9.2f}{rate_s:10.0f}{'':>8}{s['rss_mb']:13.1f}  {s['status']}"
        )
    rate = f["connector"]["messages"] / f["connector"]["seconds"]
    fake = f["fake"]["messages"] / f["fake"]["seconds"]
    print(f"connector >= 1,000 msgs/s: {rate:.0f} {'PASS' if rate >= 1000 else 'MISS'}; "
          f"fake / connector = {fake / rate:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
