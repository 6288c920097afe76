"""Web workspace benchmark: time per page of a real `mailmanager web` process under N
concurrent clients, on SQLite and PostgreSQL (issue #14).

    python benchmarks/web.py                          # full scale, both backends
    python benchmarks/web.py --scale 0.05 --backend sqlite --seconds 3   # a quick run
    python benchmarks/web.py --workdir /var/tmp/mm-web   # databases kept there, reused

Two databases per backend, made by the other benchmarks' generators (cached: a database
is built once per --workdir, scale and backend; PostgreSQL ones are named after them and
dropped by --drop):

  crm        the matcher benchmark's world (`benchmarks/match.py`: 100,000 contacts, 20,000
             companies, 200,000 messages), all of it held in alice's mailbox "alice"; plus
             5,000 messages (1,000 threads) between alice and company 1, matched by the
             matcher (`match_threads`). Pages: /companies/1 (and ?page=2..6), the record
             pages of its contact p1@c1.com (2,500 of the messages) and of the opportunity
             the matcher links them to, /threads/{id} (company 1's),
             /search?q=... (when `mailmanager/web/search.py` exists), /admin (as admin),
             /dashboard as alice and as carol (manager of alice and bob: a team of 3).
  followups  the reminder benchmark's world (`benchmarks/reminders.py`: 1,000,000 threads,
             50 users, 100,000 pending reminders, 2,000 of them u00's). Page: /followups
             as u00.

Each server is a `mailmanager web` subprocess (uvicorn: one process, or --workers); sessions
are made in the database (`services.signin.start_session`) and sent as the session cookie.
For each page and each concurrency (--clients, default 1,4,16) httpx workers request the
page in a loop for --seconds; latency is the client's wall time per response on loopback
(the client runs on the same machine and takes CPU from the server: figures are
pessimistic). "cpu ms" is the server processes' CPU time per request (on PostgreSQL the
database's own work is in its server processes, not counted), which a busy shared machine
inflates much less than latency; "load" is the 1-minute load average after the run. Peak RSS
is the largest VmHWM of the server's processes. Targets: p95 < 150 ms per page (search < 300
ms), >= 200 pages/s at 16 clients, peak RSS < 300 MB. "client cpu" is the load client's
own CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import match as match_bench
import reminders as reminders_bench
import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store
from mailmanager.matching import run as linking
from mailmanager.services import signin

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
COMPANY = 1  # the company that gets the extra messages
SEARCH_WORDS = ("Projet 1234", "p1@c1.com", "Deal", "Company 77", "offre")


def _url(backend: str, name: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / (name + '.db')}"
    return sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(False)


def _exists(backend: str, name: str, workdir: Path) -> bool:
    """Whether a finished database is cached (its marker file is written last)."""
    return (workdir / f"{backend}-{name}.done").exists()


def _create(backend: str, name: str) -> None:
    if backend == "postgresql":
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()


def drop(backend: str, name: str, workdir: Path) -> None:
    (workdir / f"{backend}-{name}.done").unlink(missing_ok=True)
    if backend == "postgresql":
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        (workdir / f"{name}.db").unlink(missing_ok=True)


# --- the CRM world: the matcher benchmark's database, in alice's mailbox -----------------------


def _company_mail(conn: sa.Connection, n_companies: int, n_messages: int) -> list[int]:
    """`n_messages` messages in threads of 5 between alice and two contacts of COMPANY;
    returns the new thread ids."""
    rng = random.Random(3)
    mid0 = int(conn.scalar(sa.select(sa.func.max(models.Message.id))) or 0)
    tid0 = int(conn.scalar(sa.select(sa.func.max(models.Thread.id))) or 0)
    people = [f"p{COMPANY}@c{COMPANY}.com", f"p{COMPANY + n_companies}@c{COMPANY}.com"]
    now = models.utcnow()
    threads, messages, parts = [], [], []
    for t in range(n_messages // 5):
        tid = tid0 + t + 1
        start = match_bench.BASE - timedelta(days=rng.uniform(0, 700))
        who = people[t % 2]
        subject = f"Commande {t} pour Company {COMPANY}"
        threads.append(
            {
                "id": tid,
                "subject": subject,
                "subject_normalized": subject.lower(),
                "first_at": start,
                "last_at": start + timedelta(hours=20),
                "message_count": 5,
                "updated_at": now,
            }
        )
        for i in range(5):
            mid = mid0 + t * 5 + i + 1
            out = i % 2 == 0
            sender = "alice@example.com" if out else who
            messages.append(
                {
                    "id": mid,
                    "key": f"c{mid}@bench",
                    "message_id": f"c{mid}@bench",
                    "thread_id": tid,
                    "subject": ("RE: " if i else "") + subject,
                    "subject_normalized": subject.lower(),
                    "sent_at": start + timedelta(hours=5 * i),
                    "direction": "outbound" if out else "inbound",
                    "from_email": sender,
                    "sha256": f"{mid:064d}",
                    "snippet": "Bonjour, voici la commande et le devis mis à jour.",
                    "created_at": now,
                }
            )
            parts.append({"message_id": mid, "role": "from", "email": sender, "name": ""})
            to = who if out else "alice@example.com"
            parts.append({"message_id": mid, "role": "to", "email": to, "name": ""})
    match_bench._insert(conn, models.Thread, threads)
    match_bench._insert(conn, models.Message, messages)
    match_bench._insert(conn, models.Participant, parts)
    return [tid0 + t + 1 for t in range(len(threads))]


def build_crm(url: str, root: Path, scale: float) -> dict[str, Any]:
    n = {k: max(10, int(v * scale)) for k, v in match_bench.SIZES.items()}
    started = time.perf_counter()
    match_bench.generate(url, n)
    engine = store.make_engine(url)
    with engine.begin() as conn:
        new_threads = _company_mail(conn, n["companies"], max(50, int(5000 * scale)))
        mailbox = {"id": 1, "name": "alice", "connector": "maildir", "owner_id": 1}
        match_bench._insert(conn, models.Mailbox, [mailbox])
        match_bench._insert(
            conn, models.Folder, [{"id": 1, "mailbox_id": 1, "remote_id": "INBOX", "role": "inbox"}]
        )
        ids = conn.scalars(sa.select(models.Message.id)).all()
        match_bench._insert(
            conn,
            models.MessageLocation,
            [{"folder_id": 1, "provider_id": str(i), "message_id": i} for i in ids],
        )
    factory = store.session_factory(engine)
    cfg = match_bench._config(url, root)
    for part in store.chunks(new_threads, 200):
        with store.session_scope(factory) as s:
            linking.match_threads(s, cfg, set(part))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    engine.dispose()
    return {"build_s": round(time.perf_counter() - started, 1), **n}


REALISTIC = 3  # u02: the generator gives u02 no reminder; it gets REALISTIC_LOAD of them
REALISTIC_LOAD = 150


def realistic_user(url: str) -> None:
    """Give u02 a salesperson's load: REALISTIC_LOAD awaiting-reply reminders on their own
    threads, waiting 1 to 30 days (the generator's heavy users, u00, u10... have 20,000
    each, waiting up to 400 days). Idempotent."""
    rng = random.Random(9)
    now = reminders_bench.NOW
    engine = store.make_engine(url)
    with engine.begin() as conn:
        R = models.Reminder
        if conn.scalar(sa.select(sa.func.count()).where(R.user_id == REALISTIC)):
            return
        n_threads = int(conn.scalar(sa.select(sa.func.max(models.Thread.id))) or 0)
        rows = []
        for k in range(min(REALISTIC_LOAD, n_threads // 50)):
            t = 50 * k + REALISTIC - 1  # thread t belongs to user t % 50 + 1
            since = now - timedelta(days=rng.uniform(1, 30))
            rows.append(
                {
                    "thread_id": t,
                    "kind": "awaiting_reply",
                    "cycle": t,
                    "user_id": REALISTIC,
                    "due_at": since + timedelta(days=3),
                    "status": "pending",
                    "message_id": t,
                    "contact_email": f"x{t}@ext{t % 997}.test",
                    "waiting_since": since,
                }
            )
        reminders_bench._insert(conn, R, rows)
    engine.dispose()


def build_followups(url: str, scale: float) -> dict[str, Any]:
    engine = store.make_engine(url)
    store.upgrade(engine)
    engine.dispose()
    threads = max(1000, int(1_000_000 * scale))
    out = reminders_bench.generate(url, threads, 50)
    realistic_user(url)
    return {"build_s": out["generate_s"], "threads": threads}


# --- servers and sessions -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    config: Path

    def pids(self) -> list[int]:
        """The server's process and its descendants (uvicorn workers, `[web] workers`)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
        return found

    def peak_rss_mb(self) -> float:
        """The largest peak RSS of one of its processes (the target is per process)."""
        peak = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        return peak

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's processes so far (all their threads; a worker
        that ended is counted by its parent once reaped)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(stat[11]) + int(stat[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(world: str, url: str, root: Path, workers: int = 1) -> Server:
    port = _free_port()
    users = (
        '[[users]]\nemail = "alice@example.com"\nname = "Alice"\nmanager = "carol@example.com"\n'
        '[[users]]\nemail = "bob@example.com"\nname = "Bob"\nmanager = "carol@example.com"\n'
        '[[users]]\nemail = "carol@example.com"\nname = "Carol"\nrole = "manager"\n'
        '[[mailboxes]]\nname = "alice"\nconnector = "maildir"\n'
        f'path = "{root}"\nowner = "alice@example.com"\n'
        if world == "crm"
        else "".join(
            f'[[users]]\nemail = "u{i:02d}@example.com"\nname = "U{i}"\n' for i in range(50)
        )
    )
    path = root / f"web-{world}.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[organization]\ndomains = ["example.com"]\n{users}'
        '[[users]]\nemail = "admin@example.com"\nname = "Admin"\nrole = "admin"\n'
        f'[web]\nport = {port}\nbase_url = "http://127.0.0.1:{port}"\n'
        f'secret_file = "{root / "web.key"}"\nsign_in_links = "email"\nworkers = {workers}\n'
    )
    log = (root / f"web-{world}.out").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmanager", "-c", str(path), "web"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    server = Server(proc, f"http://127.0.0.1:{port}", path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((root / f"web-{world}.out").read_text()[-3000:])
        try:
            if httpx.get(f"{server.url}/signin", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop()
    raise SystemExit(f"mailmanager web did not answer on {server.url}")


def session_cookie(server: Server, email: str) -> dict[str, str]:
    """A session for `email`, made in the server's database."""
    cfg = config.load(server.config)
    engine = store.make_engine(cfg.database.url)
    with store.session_scope(store.session_factory(engine)) as s:
        token, _ = signin.start_session(s, cfg, email, datetime.now(UTC))  # wall clock: real server
    engine.dispose()
    return {"mm_session": token}


# --- load ---------------------------------------------------------------------------------------


async def load(
    base: str,
    cookies: dict[str, str],
    paths: list[str],
    clients: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`clients` concurrent clients GET `paths` in turn for `seconds` (after a warm-up):
    latency percentiles, requests/s and the non-200 answers (also `benchmarks/api.py`'s)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, cookies=cookies, headers=headers, limits=limits, timeout=60
    ) as c:
        for p in paths[:2]:  # warm up
            with contextlib.suppress(httpx.HTTPError):  # an error is counted below
                await c.get(p)
        end = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            i = k
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    r = await c.get(paths[i % len(paths)])
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if code != "200":
                    errors[code] = errors.get(code, 0) + 1
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1)

    return {
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "req_s": round(len(latencies) / wall, 1),
        "errors": errors,
    }


def pages(world: str, url: str) -> dict[str, tuple[str, list[str]]]:
    """Page name -> (who requests it, the paths it cycles through)."""
    if world == "followups":
        realistic_user(url)
        return {
            f"followups ({REALISTIC_LOAD})": ("u02@example.com", ["/followups"]),
            "followups (20k)": ("u00@example.com", ["/followups"]),
        }
    engine = store.make_engine(url)
    with engine.connect() as conn:
        L = models.Link
        tids = conn.scalars(
            sa.select(L.thread_id)
            .where(L.target_kind == "company", L.target_id == COMPANY, L.thread_id.is_not(None))
            .distinct()
            .limit(50)
        ).all()
        if not tids:
            M = models.Message
            tids = conn.scalars(
                sa.select(M.thread_id).where(M.key.like("c%@bench")).distinct().limit(50)
            ).all()
        # The record pages of the company's first contact (half its mail) and opportunity.
        contact = conn.scalar(
            sa.select(models.ContactEmail.contact_id).where(
                models.ContactEmail.email == f"p{COMPANY}@c{COMPANY}.com"
            )
        )
        opportunity = conn.scalar(
            sa.select(L.target_id).where(L.target_kind == "opportunity", L.thread_id.in_(tids))
        )
    engine.dispose()
    out = {
        "company (5,000 msgs)": ("alice@example.com", [f"/companies/{COMPANY}"]),
        "company pages 2-6": (
            "alice@example.com",
            [f"/companies/{COMPANY}?page={n}" for n in range(2, 7)],
        ),
        "contact (2,500 msgs)": ("alice@example.com", [f"/contacts/{contact}"]),
        "opportunity (5,000)": ("alice@example.com", [f"/opportunities/{opportunity}"]),
        "thread": ("alice@example.com", [f"/threads/{t}" for t in tids]),
        "admin": ("admin@example.com", ["/admin"]),
        "dashboard": ("alice@example.com", ["/dashboard"]),
        "dashboard (mgr of 3)": ("carol@example.com", ["/dashboard"]),
    }
    if (REPO / "mailmanager" / "web" / "search.py").exists():
        out["search"] = ("alice@example.com", [f"/search?q={w}" for w in SEARCH_WORDS])
    return out


def run_world(
    backend: str,
    world: str,
    url: str,
    root: Path,
    clients: list[int],
    seconds: float,
    only: str = "",
    workers: int = 1,
) -> tuple[list[dict[str, Any]], float]:
    engine = store.make_engine(url)
    store.upgrade(engine)  # a cached database built before a newer migration landed
    engine.dispose()
    server = start_server(world, url, root, workers)
    rows: list[dict[str, Any]] = []
    try:
        for page, (who, paths) in pages(world, url).items():
            if only and not any(word in page for word in only.split(",")):
                continue
            cookies = session_cookie(server, who)
            for n in clients:
                cpu, mine = server.cpu_seconds(), time.process_time()
                r = asyncio.run(load(server.url, cookies, paths, n, seconds))
                r["cpu_ms"] = round((server.cpu_seconds() - cpu) * 1000 / max(1, r["requests"]), 1)
                # the load client's own CPU per request: with the server's, what bounds
                # pages/s on this machine (2 cores: 2,000 ms of CPU a second in all)
                spent = time.process_time() - mine
                r["client_cpu_ms"] = round(spent * 1000 / max(1, r["requests"]), 1)
                r["load"] = round(os.getloadavg()[0], 1)
                rows.append({"backend": backend, "page": page, **r})
                print(_line(rows[-1]), flush=True)
        return rows, server.peak_rss_mb()
    finally:
        server.stop()


def _line(r: dict[str, Any]) -> str:
    err = ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"
    return (
        f"{r['backend']:<10} {r['page']:<20} {r['clients']:>3} {r['requests']:>6} "
        f"{r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} {r['req_s']:>8} "
        f"{r['cpu_ms']:>7} {r['load']:>5}  {err}  (client cpu {r.get('client_cpu_ms', '?')} ms)"
    )


HEADER = (
    f"{'backend':<10} {'page':<20} {'cli':>3} {'reqs':>6} {'p50 ms':>8} {'p95 ms':>8} "
    f"{'p99 ms':>8} {'req/s':>8} {'cpu ms':>7} {'load':>5}  errors"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--world", choices=["crm", "followups", "both"], default="both")
    ap.add_argument("--clients", default="1,4,16", help="concurrencies, comma-separated")
    ap.add_argument("--seconds", type=float, default=8.0, help="load time per page and concurrency")
    ap.add_argument("--workdir", help="keep (and reuse) the databases here (default: a temp dir)")
    ap.add_argument("--build-only", action="store_true", help="build the databases, no load")
    ap.add_argument("--drop", action="store_true", help="drop the cached databases and exit")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--pages", default="", help="only the pages whose name has one of these words")
    ap.add_argument("--workers", type=int, default=1, help="server processes ([web] workers)")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="mm-web-bench-") as tmp:
        workdir = Path(args.workdir or tmp).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        tag = f"{args.scale:g}".replace(".", "_")
        results: dict[str, Any] = {"scale": args.scale, "rows": [], "peak_rss_mb": {}, "build": {}}
        for backend in backends:
            for world in ("crm", "followups") if args.world == "both" else (args.world,):
                # the workdir in the name: two runs with different workdirs never share a
                # PostgreSQL database (building one drops it)
                name = f"mm_webbench_{world}_{tag}_{zlib.crc32(str(workdir).encode()):08x}"
                url = _url(backend, name, workdir)
                if args.drop:
                    drop(backend, name, workdir)
                    continue
                if not _exists(backend, name, workdir):
                    _create(backend, name)
                    if backend == "sqlite":
                        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                    print(f"building {world} on {backend} (scale {args.scale:g})...", flush=True)
                    built = (
                        build_crm(url, workdir, args.scale)
                        if world == "crm"
                        else build_followups(url, args.scale)
                    )
                    results["build"][f"{backend}/{world}"] = built
                    print(f"  {built}", flush=True)
                    (workdir / f"{backend}-{name}.done").write_text(json.dumps(built))
                if args.build_only:
                    continue
                if not results["rows"]:
                    print(HEADER, flush=True)
                rows, rss = run_world(
                    backend, world, url, workdir, clients, args.seconds, args.pages, args.workers
                )
                results["rows"] += rows
                results["peak_rss_mb"][f"{backend}/{world}"] = round(rss, 1)
                print(f"{backend}/{world}: peak RSS of the web process {rss:.0f} MB", flush=True)
        if args.drop or args.build_only:
            return
        print(f"\nscale {args.scale:g}; {HEADER}")
        for r in results["rows"]:
            print(_line(r))
        _targets(results, max(clients))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))


def _targets(results: dict[str, Any], most: int) -> None:
    for r in results["rows"]:
        limit = 300 if r["page"] == "search" else 150
        if r["p95_ms"] >= limit:
            print(f"MISSED p95 < {limit} ms: {r['backend']} {r['page']} x{r['clients']}")
        if r["clients"] == most == 16 and r["req_s"] < 200:
            print(f"MISSED >= 200 req/s at 16 clients: {r['backend']} {r['page']} {r['req_s']}")
    for key, rss in results["peak_rss_mb"].items():
        print(f"peak RSS {key}: {rss:.0f} MB ({'ok' if rss < 300 else 'MISSED'} < 300 MB)")


if __name__ == "__main__":
    main()
