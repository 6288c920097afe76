"""Webhook fan-out benchmark (issue #18): --events events (10,000) to --receivers receivers
(3) on 127.0.0.1, delivered by `notify.webhooks.deliver` as the daemon runs it.

    python benchmarks/api_webhooks.py                       # 10,000 events x 3, both backends
    python benchmarks/api_webhooks.py --events 2000 --backend sqlite    # a quick run
    python benchmarks/api_webhooks.py --rate 100 --events 3000          # steady-state latency

The receivers are real HTTP servers in a separate process (they do not share this process's
interpreter lock), each answering 204 and counting requests by `webhook-id`; the first one
checks every signature with `standardwebhooks`. The events are recorded in batches of 500,
as the matcher or the sync records them (one transaction each: the event rows and a delivery
row per receiver), then one delivery pass sends everything (burst: the latency is mostly the
queue's wait). With --rate, events are recorded at that rate while delivery passes run back
to back, as the daemon's would: the latency of a system keeping up. Reported: events recorded/s,
deliveries/s, p50/p95 latency from event to delivery (`latency_ms`: the event's creation to
the receiver's 2xx, so it includes the queue's wait), duplicates and misses seen by the
receivers, and the delivering process's peak RSS.

`run(ctx)` is the section `benchmarks/api.py` calls (its `Context`: the database URL and
backend); it removes its subscriptions and events afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager import config
from mailmanager.db import models, store, tokens, webhookevents
from mailmanager.notify import webhooks as delivery
from mailmanager.services import webhooks

BATCH = 500
TYPE = "reminder.due"


def serve(count: int, secret_file: Path) -> None:
    """The receivers' process: `count` servers; prints their ports; GET /counts answers
    {webhook-id: 2xx answers} and the bad signatures."""
    import standardwebhooks

    lock = threading.Lock()
    seen: list[Counter[str]] = [Counter() for _ in range(count)]
    bad = [0]
    verifier: list[Any] = [None]

    def handler(index: int) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = 204
                if index == 0:
                    if verifier[0] is None and secret_file.exists():
                        verifier[0] = standardwebhooks.Webhook(secret_file.read_text().strip())
                    try:
                        verifier[0].verify(data, dict(self.headers.items()))
                    except Exception:
                        code = 400
                with lock:
                    if code == 204:
                        seen[index][self.headers["webhook-id"]] += 1
                    else:
                        bad[0] += 1
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                with lock:
                    body = json.dumps({"counts": [dict(c) for c in seen], "bad": bad[0]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler(i)) for i in range(count)]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(json.dumps([srv.server_address[1] for srv in servers]), flush=True)
    sys.stdin.read()  # until the parent closes our stdin


def _config(url: str, root: Path) -> config.Config:
    path = root / "webhooks-bench.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[organization]\ndomains = ["example.com"]\n'
        '[[users]]\nemail = "admin@example.com"\nname = "Admin"\nrole = "admin"\n'
        '[webhooks]\nallow_private = ["127.0.0.0/8"]\nconcurrency = 8\ntimeout = 10\n'
    )
    return config.load(path)


def _record(factory: Any, first: int, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(first, first + count, BATCH):
        with store.session_scope(factory) as s:
            store.write_first(s)  # as the stages that record events do (SQLite)
            batch = [
                webhookevents.NewEvent(TYPE, {"reminder": n, "thread_id": n})
                for n in range(start, min(first + count, start + BATCH))
            ]
            ids += webhookevents.record(s, batch)
    return ids


def _paced(
    cfg: config.Config, factory: Any, events: int, rate: float, receivers: int
) -> tuple[list[str], float, float, int]:
    """Record events at `rate` per second (a tenth of a second's worth at a time) while a
    delivery loop runs as the daemon's would; wait until everything is delivered."""
    stop, delivered = threading.Event(), [0]

    def loop() -> None:
        while not stop.is_set():
            done = len(delivery.deliver(cfg, factory).delivered)
            delivered[0] += done
            if not done:
                time.sleep(0.05)

    worker = threading.Thread(target=loop)
    worker.start()
    started = time.perf_counter()
    ids: list[str] = []
    step = max(1, round(rate / 10))
    try:
        while len(ids) < events:
            ids += _record(factory, len(ids), min(step, events - len(ids)))
            time.sleep(max(0.0, started + len(ids) / rate - time.perf_counter()))
        recorded = time.perf_counter() - started
        deadline = time.monotonic() + 900
        while delivered[0] < events * receivers and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
    return ids, recorded, time.perf_counter() - started, delivered[0]


def measure(
    url: str, events: int = 10_000, receivers: int = 3, rate: float = 0.0
) -> dict[str, Any]:
    """Fan `events` out to `receivers` over the database at `url` (its schema made):
    all queued at once (`rate` 0), or recorded at `rate` events/s while delivering."""
    os.environ.setdefault(tokens.ENV_KEY, tokens.new_key())
    with tempfile.TemporaryDirectory(prefix="mm-webhooks-bench-") as tmp:
        root = Path(tmp)
        cfg = _config(url, root)
        engine = store.make_engine(url)
        factory = store.session_factory(engine)
        secret_file = root / "secret"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(receivers), "--secret-file",
             str(secret_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        ports = json.loads(proc.stdout.readline())
        sub_ids: list[int] = []
        try:
            with store.session_scope(factory) as s:
                for i, port in enumerate(ports):
                    made = webhooks.create(
                        s, cfg, f"http://127.0.0.1:{port}/in", [TYPE], "bench", f"bench {i}"
                    )
                    sub_ids.append(made.subscription.id)
                    if i == 0:
                        secret_file.write_text(made.secret)
            if rate > 0:
                ids, recorded, elapsed, delivered = _paced(cfg, factory, events, rate, receivers)
            else:
                started = time.perf_counter()
                ids = _record(factory, 0, events)
                recorded = time.perf_counter() - started
                started = time.perf_counter()
                delivered = len(delivery.deliver(cfg, factory).delivered)
                elapsed = time.perf_counter() - started
            with store.session_scope(factory) as s:
                d = models.WebhookDelivery
                latencies = sorted(
                    int(x or 0)
                    for x in s.scalars(
                        sa.select(d.latency_ms).where(d.subscription_id.in_(sub_ids))
                    )
                )
                statuses = Counter(
                    s.scalars(sa.select(d.status).where(d.subscription_id.in_(sub_ids)))
                )
            with contextlib.closing(
                urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/")
            ) as answer:
                seen = json.loads(answer.read())
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)
            with store.session_scope(factory) as s:
                for sid in sub_ids:
                    webhooks.delete(s, sid, "bench")
                e = models.WebhookEvent
                s.execute(sa.delete(e).where(e.type == TYPE, e.dedup_key.is_(None)))
            engine.dispose()
    counts = seen["counts"]
    total = len(ids) * receivers
    return {
        "events": len(ids),
        "receivers": receivers,
        "events_recorded_per_s": round(len(ids) / recorded),
        "mode": f"paced at {rate:g} events/s" if rate > 0 else "burst (all queued at once)",
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / elapsed),
        "elapsed_s": round(elapsed, 1),
        "latency_p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "latency_p95_ms": latencies[int(len(latencies) * 0.95)] if latencies else None,
        "latency_mean_ms": round(statistics.fmean(latencies)) if latencies else None,
        "statuses": dict(statuses),
        "missed": total - sum(len(c) for c in counts),
        "duplicates": sum(n - 1 for c in counts for n in c.values() if n > 1),
        "bad_signatures": seen["bad"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run(ctx: Any) -> dict[str, Any]:
    """The section of `benchmarks/api.py`: the fan-out over its database."""
    events = getattr(ctx.args, "webhook_events", 10_000)
    out = measure(ctx.url, events)
    print(f"{ctx.backend:<10} webhooks {json.dumps(out)}", flush=True)
    return out


def _pg_url(name: str) -> str:
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1/postgres",
                             isolation_level="AUTOCOMMIT")  # fmt: skip
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1/{name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000, help="events to fan out")
    ap.add_argument("--receivers", type=int, default=3, help="receivers (subscriptions)")
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument(
        "--rate", type=float, default=0.0,
        help="record events at this rate (events/s) while delivering, for the steady-state "
        "latency; 0 (default): all queued at once, for the throughput",
    )  # fmt: skip
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--secret-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.secret_file)
        return
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="mm-webhooks-db-") as tmp:
            if backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            else:
                url = _pg_url("mm_bench_webhooks")
            engine = store.make_engine(url)
            store.create_schema(engine)
            engine.dispose()
            out = measure(url, args.events, args.receivers, args.rate)
            print(f"{backend:<10} {json.dumps(out)}", flush=True)


if __name__ == "__main__":
    main()
