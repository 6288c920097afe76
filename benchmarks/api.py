"""REST API benchmark (issue #18): bulk upsert of contacts and the list endpoints, over HTTP
against a real `mailmanager web` process, on SQLite and PostgreSQL.

    python benchmarks/api.py                                  # 100,000 contacts, both backends
    python benchmarks/api.py --contacts 20000 --backend sqlite --seconds 3   # a quick run
    python benchmarks/api.py --workdir /var/tmp/mm-api        # databases kept there, reused

The database is the matcher benchmark's world as `benchmarks/web.py` builds it (100,000
contacts, 20,000 companies, 200,000 messages in alice's mailbox; cached per --workdir,
scale and backend). Sections:

  upsert   --contacts new contacts pushed to `POST /api/v1/contacts/bulk` in requests of
           --batch (1,000) items, one client, as a nightly CRM push would: each with an
           external id of source "apibench", a company by id, an owner; the first ones have
           the addresses of people at customer domains who wrote already (the generator's
           "unknown people"), so retro-linking has mail to link. Reported: records/s with
           retro-linking, and without it (the server's `Server-Timing: relink` time taken
           out), the relink share, p50/p95 per request; then the same payload again
           (nothing changes: "unchanged"). The contacts of an earlier run are deleted first
           (untimed).
  lists    `GET /contacts`, `/companies`, `/reminders`, `/threads` (when the server has it):
           the first page and following cursor pages, at each --clients concurrency for
           --seconds: p50/p95 latency and requests/s (client wall time on loopback: the
           client shares the 2 cores with the server). The client is wrk when installed
           (Debian's package `wrk`; --client httpx for the Python one); its CPU per
           request is printed, with the server's and the cores the server used. The
           server runs --workers processes of --threads threads (`[web] workers`,
           `[web] threads`; with several processes, the kernel hands each new connection
           to one of them: "cores" shows when one got them all).
  webhooks added by `benchmarks/api_webhooks.py` when present: its `run(ctx)` gets the
           running server, a write token and the database URL (see `Context`) and
           returns rows to print.

Peak RSS is the largest VmHWM of the server's processes. Targets: >= 5,000 records/s
(retro-linking included); lists p95 < 50 ms and >= 500 requests/s at 32 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import web as web_bench

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.services import apitokens, crmbulk

try:  # the webhooks fan-out section, written separately
    import api_webhooks  # type: ignore[import-not-found]
except ImportError:
    api_webhooks = None

SOURCE = "apibench"  # not "bench": the matcher world's contacts have that source


@dataclass
class Context:
    """What a section gets: the server, a read+write token of alice, the database."""

    backend: str
    url: str  # the database URL
    base: str  # the server's base URL, e.g. http://127.0.0.1:8123
    token: str
    server: web_bench.Server
    args: argparse.Namespace


def start_server(url: str, root: Path, workers: int = 1, threads: int = 4) -> web_bench.Server:
    """`mailmanager web` over `url`, with no per-token rate limit, `workers` processes of
    `threads` threads (`[web] workers`, `[web] threads`)."""
    port = web_bench._free_port()
    path = root / "api-bench.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[organization]\ndomains = ["example.com"]\n'
        '[[users]]\nemail = "alice@example.com"\nname = "Alice"\nmanager = "carol@example.com"\n'
        '[[users]]\nemail = "bob@example.com"\nname = "Bob"\nmanager = "carol@example.com"\n'
        '[[users]]\nemail = "carol@example.com"\nname = "Carol"\nrole = "manager"\n'
        '[[users]]\nemail = "admin@example.com"\nname = "Admin"\nrole = "admin"\n'
        f'[[mailboxes]]\nname = "alice"\nconnector = "maildir"\npath = "{root}"\n'
        'owner = "alice@example.com"\n'
        f'[web]\nport = {port}\nbase_url = "http://127.0.0.1:{port}"\n'
        f'secret_file = "{root / "web.key"}"\nsign_in_links = "email"\n'
        f"workers = {workers}\nthreads = {threads}\n"
        "[api]\nrequests_per_minute = 100000000\n"
    )
    log = (root / "api-bench.out").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "-c", str(path), "web"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=web_bench.REPO,
        env=env,
    )
    server = web_bench.Server(proc, f"http://127.0.0.1:{port}", path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((root / "api-bench.out").read_text()[-3000:])
        try:
            if httpx.get(f"{server.url}/signin", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop()
    raise SystemExit(f"mailmanager web did not answer on {server.url}")


def make_token(server: web_bench.Server) -> str:
    cfg = config.load(server.config)
    engine = store.make_engine(cfg.database.url)
    with store.session_scope(store.session_factory(engine)) as s:
        now = models.utcnow()
        _, token = apitokens.create(s, cfg, "alice@example.com", "bench", ["read", "write"], now)
    engine.dispose()
    return token


def forget_earlier_run(url: str) -> None:
    """Delete the contacts an earlier run pushed (untimed), and what points to them; on
    PostgreSQL, move the id sequences past the generator's explicit ids."""
    engine = store.make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in ("companies", "contacts", "contact_emails", "opportunities", "links"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
    # What points to these contacts is removed below; the foreign-key checks are off
    # for this cleanup (participants.contact_id has no index: each check would scan it).
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection  # outside any transaction
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            C, L, P = models.Contact, models.Link, models.Participant
            ids = list(conn.scalars(sa.select(C.id).where(C.source == SOURCE)))
            for part in store.chunks(ids, 5000):
                conn.execute(sa.delete(L).where(L.target_kind == "contact", L.target_id.in_(part)))
                conn.execute(sa.update(P).where(P.contact_id.in_(part)).values(contact_id=None))
                for model in (models.ContactEmail, models.OpportunityContact):
                    conn.execute(sa.delete(model).where(model.contact_id.in_(part)))
                conn.execute(sa.delete(C).where(C.id.in_(part)))
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA foreign_keys=ON")
    engine.dispose()


def items(url: str, count: int) -> list[dict[str, Any]]:
    """`count` contacts: first the people at customer domains who wrote and are no contact
    (their mail gets linked), then new addresses."""
    engine = store.make_engine(url)
    P = models.Participant
    with engine.connect() as conn:
        known = list(
            conn.scalars(
                sa.select(P.email)
                .where(P.contact_id.is_(None), P.email.like("x%@c%.com"))
                .distinct()
                .order_by(P.email)
                .limit(count)
            )
        )
        companies = int(conn.scalar(sa.select(sa.func.max(models.Company.id))) or 1)
    engine.dispose()
    out = []
    for n in range(count):
        address = known[n] if n < len(known) else f"api{n}@c{n % companies + 1}.com"
        out.append(
            {
                "source": SOURCE,
                "external_id": f"B{n}",
                "emails": [address],
                "first_name": f"First{n}",
                "last_name": f"Last{n}",
                "company_id": n % companies + 1,
                "owner": "bob@example.com" if n % 2 else "alice@example.com",
                "status": "client" if n % 5 == 0 else "prospect",
                "title": "Buyer",
            }
        )
    print(f"  {min(len(known), count)} of the contacts have mail already", flush=True)
    return out


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else 0.0


def upsert(ctx: Context, payload: list[dict[str, Any]], label: str) -> dict[str, Any]:
    batch = ctx.args.batch
    latencies, relink, counts = [], 0.0, {"created": 0, "updated": 0, "unchanged": 0}
    headers = auth(ctx.token)
    cpu = ctx.server.cpu_seconds()
    with httpx.Client(base_url=ctx.base + "/api/v1", headers=headers, timeout=600) as c:
        started = time.perf_counter()
        for i in range(0, len(payload), batch):
            t0 = time.perf_counter()
            r = c.post("/contacts/bulk", json={"items": payload[i : i + batch]})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"bulk upsert answered {r.status_code}: {r.text[:2000]}")
            for k in counts:
                counts[k] += r.json()[k]
            timing = dict(
                part.strip().split(";dur=") for part in r.headers["server-timing"].split(",")
            )
            relink += float(timing["relink"]) / 1000
        wall = time.perf_counter() - started
    n = len(payload)
    row = {
        "backend": ctx.backend,
        "run": label,
        "records": n,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "records_s": round(n / wall),
        "records_s_no_relink": round(n / max(1e-9, wall - relink)),
        "relink_s": round(relink, 2),
        # the server's own CPU (PostgreSQL's work is in its processes, not counted)
        "server_cpu_s": round(ctx.server.cpu_seconds() - cpu, 2),
        "p50_ms": _pct(latencies, 0.5),
        "p95_ms": _pct(latencies, 0.95),
        **counts,
    }
    print(
        f"{row['backend']:<10} upsert {label:<10} {n:>7} records in {row['seconds']:>7} s: "
        f"{row['records_s']:>6} rec/s ({row['records_s_no_relink']} without relink; relink "
        f"{row['relink_s']} s; server cpu {row['server_cpu_s']} s)  "
        f"p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms  {counts}",
        flush=True,
    )
    return row


def list_paths(ctx: Context, route: str, pages: int = 10) -> list[str]:
    """The first page of `route` and the next `pages` ones (by their cursors)."""
    headers = auth(ctx.token)
    paths = [f"/api/v1{route}?limit=50"]
    with httpx.Client(base_url=ctx.base, headers=headers, timeout=60) as c:
        for _ in range(pages):
            r = c.get(paths[-1])
            if r.status_code != 200:
                return [] if len(paths) == 1 else paths[:-1]
            nxt = r.json().get("next")
            if not nxt:
                break
            paths.append(f"/api/v1{route}?limit=50&cursor={nxt}")
    return paths


def lists(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for route in ("/contacts", "/companies", "/reminders", "/threads"):
        paths = list_paths(ctx, route)
        if not paths:
            print(f"{ctx.backend:<10} GET {route}: not answered with 200, skipped", flush=True)
            continue
        for n in ctx.args.clients:
            cpu = ctx.server.cpu_seconds()
            started = time.perf_counter()
            if ctx.args.client == "wrk":
                r = wrk_load(ctx, paths, n)
            else:
                mine = time.process_time()
                r = asyncio.run(
                    web_bench.load(ctx.base, {}, paths, n, ctx.args.seconds, auth(ctx.token))
                )
                r["client_cpu_s"] = time.process_time() - mine
            wall = time.perf_counter() - started
            used = ctx.server.cpu_seconds() - cpu
            per = max(1, r["requests"])
            r["cpu_ms"] = round(used * 1000 / per, 1)
            r["client_cpu_ms"] = round(r.pop("client_cpu_s") * 1000 / per, 2)
            r["server_cores"] = round(used / wall, 2)
            rows.append({"backend": ctx.backend, "route": route, "client": ctx.args.client, **r})
            err = ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"
            print(
                f"{ctx.backend:<10} GET {route:<14} {n:>3} clients {r['requests']:>6} reqs  "
                f"p50 {r['p50_ms']:>6} ms  p95 {r['p95_ms']:>6} ms  {r['req_s']:>7} req/s  "
                f"server cpu {r['cpu_ms']} ms/req on {r['server_cores']} cores  "
                f"client ({ctx.args.client}) cpu {r['client_cpu_ms']} ms/req  errors {err}",
                flush=True,
            )
    return rows


WRK_SCRIPT = """
local paths, i = {}, 0
for p in string.gmatch(os.getenv("MM_PATHS"), "[^\\n]+") do paths[#paths + 1] = p end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("MMRESULT %d %f %f %f %f %d %d\\n", summary.requests,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def wrk_load(ctx: Context, paths: list[str], clients: int) -> dict[str, Any]:
    """`load`'s figures from wrk (a load generator in C: it takes ~20 times less CPU per
    request than the httpx client, CPU the server then has), `clients` connections on one
    thread cycling through `paths`; its CPU time from the kernel's count for children."""
    script = Path(tempfile.gettempdir()) / "mm-api-bench.lua"
    script.write_text(WRK_SCRIPT)
    before = os.times()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, round(ctx.args.seconds))}s",
            "--timeout",
            "60s",
            "-H",
            f"Authorization: Bearer {ctx.token}",
            "-s",
            str(script),
            ctx.base,
        ],
        env={**os.environ, "MM_PATHS": "\n".join(paths)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = os.times()
    line = next(x for x in out.splitlines() if x.startswith("MMRESULT"))
    n, seconds, p50, p95, p99, failed, non2xx = line.split()[1:]
    errors = {k: int(v) for k, v in (("failed", failed), ("non-2xx", non2xx)) if int(v)}
    return {
        "clients": clients,
        "requests": int(n),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "req_s": round(int(n) / float(seconds), 1),
        "errors": errors,
        "client_cpu_s": (after.children_user - before.children_user)
        + (after.children_system - before.children_system),
    }


def run_backend(backend: str, url: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    engine = store.make_engine(url)
    store.upgrade(engine)
    engine.dispose()
    forget_earlier_run(url)
    payload = items(url, args.contacts)
    server = start_server(url, workdir, args.workers, args.threads)
    out: dict[str, Any] = {"backend": backend}
    try:
        ctx = Context(backend, url, server.url, make_token(server), server, args)
        if "upsert" in args.sections:
            out["upsert"] = [upsert(ctx, payload, "new"), upsert(ctx, payload, "unchanged")]
        if "lists" in args.sections:
            out["lists"] = lists(ctx)
        if "webhooks" in args.sections and api_webhooks is not None:
            out["webhooks"] = api_webhooks.run(ctx)
        out["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        print(f"{backend:<10} server peak RSS {out['peak_rss_mb']} MB", flush=True)
    finally:
        server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="the matcher world's size (web.py's)")
    ap.add_argument("--contacts", type=int, default=100_000, help="contacts to upsert")
    ap.add_argument("--batch", type=int, default=crmbulk.MAX_ITEMS, help="items per bulk request")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--clients", default="1,32", help="list concurrencies, comma-separated")
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="load time per route and concurrency"
    )
    ap.add_argument(
        "--sections",
        default="upsert,lists,webhooks",
        help="upsert, lists, webhooks (comma-separated)",
    )
    ap.add_argument("--workers", type=int, default=1, help="the server's [web] workers")
    ap.add_argument("--threads", type=int, default=4, help="the server's [web] threads")
    ap.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="the lists' load client: wrk (Debian package wrk; the default when installed) "
        "or the Python httpx client (the --clients connections in one asyncio loop)",
    )
    ap.add_argument("--workdir", help="keep (and reuse) the databases here (default: a temp dir)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.sections = set(args.sections.split(","))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {"contacts": args.contacts, "scale": args.scale, "runs": []}
    with tempfile.TemporaryDirectory(prefix="mm-api-bench-") as tmp:
        workdir = Path(args.workdir or tmp).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        tag = f"{args.scale:g}".replace(".", "_")
        for backend in backends:
            # the same database as benchmarks/web.py's "crm" world (shared when --workdir is)
            name = f"mm_webbench_crm_{tag}_{zlib.crc32(str(workdir).encode()):08x}"
            url = web_bench._url(backend, name, workdir)
            if not web_bench._exists(backend, name, workdir):
                web_bench._create(backend, name)
                if backend == "sqlite":
                    Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                print(
                    f"building the matcher world on {backend} (scale {args.scale:g})...", flush=True
                )
                built = web_bench.build_crm(url, workdir, args.scale)
                print(f"  {built}", flush=True)
                (workdir / f"{backend}-{name}.done").write_text(json.dumps(built))
            results["runs"].append(run_backend(backend, url, workdir, args))
            if not args.workdir and backend == "postgresql":
                web_bench.drop(backend, name, workdir)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
