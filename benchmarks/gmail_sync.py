"""Benchmark: syncing a 20,000-message Gmail mailbox from the loopback Gmail API fake.

    python benchmarks/gmail_sync.py [--n 20000] [--size 15000] [--json out.json]

The fake (`mailmanager.testing.fakes.gmail_server`) runs in its own process, serving
synthetic messages (`mailmanager.testing.bulkmail.synthetic_message`: ~15 KB on average, 3
per Gmail thread, INBOX / SENT). Each measurement runs in a child process, so its peak RSS
is its own:

1. the fake alone, without the client library: raw keep-alive HTTP over http.client,
   first one `messages.get?format=raw` per message, then the same through the batch
   endpoint (50 gets per multipart POST, as the connector sends them);
2. the Gmail connector alone: a full scan of All Mail (`fetch_changes`, batches of 200,
   the core's default `batch_size`), through google-api-python-client and google-auth;
3. a full sync into a fresh SQLite database through the sync engine (fetch + parse +
   store + thread), timed around `Syncer.sync()`.

Wall-clock rates depend on what else the machine runs, so each phase also reports CPU time
per message: the connector's (its fetch loop) and the fake's (read from /proc), whose sum
gives the rate the pair reaches on otherwise idle cores.

Target (issue 6): >= 1,000 msgs/s for the connector, with the fake faster than that.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from mailmanager.testing import bench


# ------------------------------------------------------------------------- measurement
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(cmd: list[str], env: dict[str, str], server: int) -> dict[str, Any]:
    """Run a child phase; its JSON line, its peak RSS (MB) and the fake's CPU meanwhile."""
    fake_cpu = cpu_seconds(server)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[2:4]} failed: {out[-2000:]!r}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result.update(wall=time.perf_counter() - started, rss_mb=usage.ru_maxrss / 1024)
    result.update(cpu=usage.ru_utime + usage.ru_stime, fake_cpu=cpu_seconds(server) - fake_cpu)
    return result


def _token(creds: dict[str, Any]) -> str:
    client = json.loads(creds["client_json"])["installed"]
    form = {
        "grant_type": "refresh_token",
        "refresh_token": creds["refresh_token"],
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    url = urlsplit(creds["url"])
    conn = http.client.HTTPConnection(url.hostname, url.port)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", "/token", urlencode(form), headers)
    return str(json.loads(conn.getresponse().read())["access_token"])


def phase_fake(creds: dict[str, Any]) -> None:
    """Child: the fake alone, over raw keep-alive HTTP (no client library)."""
    pid = int(creds["pid"])
    url = urlsplit(creds["url"])
    auth = {"Authorization": f"Bearer {_token(creds)}"}
    conn = http.client.HTTPConnection(url.hostname, url.port)
    ids: list[str] = []
    page = ""
    while True:
        conn.request("GET", f"/gmail/v1/users/me/messages?maxResults=500{page}", headers=auth)
        answer = json.loads(conn.getresponse().read())
        ids += [m["id"] for m in answer.get("messages", [])]
        if "nextPageToken" not in answer:
            break
        page = f"&pageToken={answer['nextPageToken']}"
    started, size, cpu = time.perf_counter(), 0, cpu_seconds(pid)
    for mid in ids:
        conn.request("GET", f"/gmail/v1/users/me/messages/{mid}?format=raw", headers=auth)
        size += len(conn.getresponse().read())
    single, single_cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    for at in range(0, len(ids), 50):
        parts = [
            f"--b\r\nContent-Type: application/http\r\nContent-ID: <x + {mid}>\r\n\r\n"
            f"GET /gmail/v1/users/me/messages/{mid}?format=raw&alt=json HTTP/1.1\r\n"
            f"Authorization: {auth['Authorization']}\r\n\r\n"
            for mid in ids[at : at + 50]
        ]
        body = ("".join(parts) + "--b--\r\n").encode()
        headers = {**auth, "Content-Type": 'multipart/mixed; boundary="b"'}
        conn.request("POST", "/batch/gmail/v1", body, headers)
        conn.getresponse().read()
    batched, batch_cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    print(
        json.dumps(
            {
                "messages": len(ids),
                "json_bytes": size,
                "single_seconds": single,
                "batch_seconds": batched,
                "single_fake_cpu": single_cpu,
                "batch_fake_cpu": batch_cpu,
            }
        )
    )


def _values(creds: dict[str, Any]) -> dict[str, object]:
    from connectors.gmail.connector import GmailConnector

    values: dict[str, object] = {o.name: o.default for o in GmailConnector.options}
    values.update(
        client_secret=creds["client_json"],
        refresh_token=creds["refresh_token"],
        api_endpoint=creds["url"],
    )
    return values


def phase_connector(creds: dict[str, Any]) -> None:
    """Child: the connector alone, a full scan of All Mail in batches of 200."""
    from connectors.gmail.connector import GmailConnector
    from mailmanager import spi

    conn = GmailConnector(spi.ConnectorConfig("bench", _values(creds)))
    print(json.dumps(bench.full_fetch(conn)))


def phase_sync(creds: dict[str, Any], workdir: str) -> None:
    """Child: a full sync into a fresh SQLite database through the sync engine."""
    from mailmanager import config
    from mailmanager.db import store
    from mailmanager.sync import engine as sync

    secret = Path(workdir) / "client.json"
    secret.write_text(creds["client_json"])
    secret.chmod(0o600)
    os.environ["BENCH_GMAIL_REFRESH"] = creds["refresh_token"]
    path = Path(workdir) / "bench.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{workdir}/bench.db"\n[organization]\n'
        'domains = ["example.com"]\n[[users]]\nemail = "alice@example.com"\nname = "Alice"\n'
        f'[[mailboxes]]\nname = "bench"\nconnector = "gmail"\nowner = "alice@example.com"\n'
        f'client_secret_file = "{secret}"\nrefresh_token_env = "BENCH_GMAIL_REFRESH"\n'
        f'api_endpoint = "{creds["url"]}"\n'
    )
    cfg = config.load(path)
    engine = store.make_engine(cfg.database.url_with_secret())
    store.upgrade(engine)
    started = time.perf_counter()
    report = sync.Syncer(cfg, store.session_factory(engine)).sync("bench")
    seconds = time.perf_counter() - started
    engine.dispose()
    print(
        json.dumps(
            {
                "messages": report.total("new_messages"),
                "seconds": seconds,
                "status": report.status,
                "error": report.error,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="messages in the mailbox")
    ap.add_argument("--size", type=int, default=15_000, help="average message size, bytes")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--creds", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        creds = json.loads(args.creds)
        if args.phase == "fake":
            phase_fake(creds)
        elif args.phase == "connector":
            phase_connector(creds)
        else:
            phase_sync(creds, args.workdir)
        return
    env = dict(os.environ)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailmanager.testing.fakes.gmail_server",
            "--bulk",
            str(args.n),
            "--size",
            str(args.size),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert server.stdout is not None and server.stdin is not None
    creds_line = json.dumps({**json.loads(server.stdout.readline()), "pid": server.pid})
    figures: dict[str, Any] = {"n": args.n, "avg_size": args.size}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            base = [sys.executable, __file__, "--creds", creds_line, "--workdir", workdir]
            for phase in ("fake", "connector", "sync"):
                figures[phase] = measured([*base, "--phase", phase], env, server.pid)
                print(f"{phase}: {json.dumps(figures[phase])}", file=sys.stderr)
    finally:
        server.stdin.close()
        server.wait(30)
    fake, conn, full = figures["fake"], figures["connector"], figures["sync"]
    n = conn["messages"]

    def ms(seconds: float, count: int) -> float:
        return 1000 * seconds / max(count, 1)

    figures["load_average"] = os.getloadavg()
    print(f"Gmail sync of {args.n} messages (~{args.size // 1000} KB each), loopback fake:")
    for mode in ("single", "batch"):
        rate = fake["messages"] / fake[f"{mode}_seconds"]
        cpu = ms(fake[f"{mode}_fake_cpu"], fake["messages"])
        print(f"  fake alone, {mode:6} GETs : {rate:6.0f} msgs/s wall; fake CPU {cpu:.2f} ms/msg")
    client, served = ms(conn["loop_cpu"], n), ms(conn["fake_cpu"], n)
    print(
        f"  connector full fetch    : {n / conn['seconds']:6.0f} msgs/s wall; CPU {client:.2f} "
        f"ms/msg (+ fake {served:.2f}) = {1000 / (client + served):.0f} msgs/s on idle cores; "
        f"peak RSS {conn['rss_mb']:.0f} MB"
    )
    engine = ms(full["cpu"], full["messages"])
    print(
        f"  sync engine into SQLite : {full['messages'] / full['seconds']:6.0f} msgs/s wall; "
        f"CPU {engine:.2f} ms/msg; peak RSS {full['rss_mb']:.0f} MB ({full['status']})"
    )
    print(f"  load average at the end : {figures['load_average'][0]:.1f} ({os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
