"""Webhook delivery: the database outbox of `webhook_deliveries`, posted at least once.

A delivery's life (as the e-mail outbox's, `notify.outbox`): `pending` → `sending` (claimed
under a lease) → `delivered` on the receiver's 2xx, or back to `pending` with exponential
backoff (`[webhooks] retry_base` × 2^(n-1), at most `retry_max`) after a failure, or `dead`
after `max_attempts` (or at once when the target is refused, or answers 410 Gone).
`services.webhooks.redeliver` revives a dead one.

- **Claim** (`claim`): due rows are picked (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
  workers never share a row), at most half of `concurrency` in flight per subscription,
  then moved to `sending` in one UPDATE guarded by the due condition, with `attempts + 1`
  and a lease. New rows are claimed as slots free up (a pipeline, not batch by batch).
- **Send**: each claimed row is posted from a thread pool (`concurrency` requests at once)
  with no database session open; the body is the event's stored bytes, signed per Standard
  Webhooks (`standardwebhooks.Webhook.sign`: `webhook-id` = the event's id, the same at
  every attempt; `webhook-timestamp` = now; `webhook-signature` = `v1,<base64 HMAC-SHA256>`).
  The target is checked again before each request (`webhooktargets.check`) and the request
  goes to the checked address; redirects are not followed; TLS is verified.
- **Mark** right after the answer, guarded by `status = 'sending' AND lease_owner = me`:
  the outcomes that came back together are written in one short transaction, with the
  claim of the next rows (a group commit; on PostgreSQL without waiting for the WAL flush,
  see `_no_commit_wait`).

**Isolation.** A subscription that fails (an error, a timeout, a non-2xx) is left out of
the rest of the pass, and one subscription never holds more than half of the request slots,
so a dead or slow receiver neither stops nor stalls the others; its rows keep their backoff.

**The crash window.** HTTP is not transactional: a worker killed after the receiver's 2xx
and before the commit leaves a `sending` row. `recover` re-queues such rows once their lease
has expired or their process is gone, marked `possible_duplicate`, and the event is sent
again under the same `webhook-id`: receivers deduplicate by it (the specification's
idempotency rule). Nothing is ever lost; a duplicate is possible only in that window.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
import standardwebhooks
from cryptography.fernet import InvalidToken, MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.config.webhooks import WebhooksConfig
from mailmanager.db import leases, models, store, tokens
from mailmanager.db.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from mailmanager.notify import outbox, webhooktargets

log = logging.getLogger(__name__)

USER_AGENT = "mailmanager-webhooks/1"
MAX_ANSWER = 64 * 1024


@dataclass(frozen=True)
class Job:
    """One claimed delivery, with what sending it needs."""

    id: int
    attempts: int
    subscription_id: int
    url: str
    secret: bytes  # the subscription's encrypted secret
    event_id: str
    payload: str
    event_at: datetime


@dataclass
class DeliveryReport:
    delivered: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False


def backoff(cfg: WebhooksConfig, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base × 2^(n-1), capped."""
    return timedelta(seconds=min(cfg.retry_max, cfg.retry_base * 2 ** max(0, attempts - 1)))


def _due(now: datetime) -> sa.ColumnElement[bool]:
    d = store.table(WebhookDelivery).c
    # `'pending'` written in the SQL, not bound: a planner can use the partial index
    # `ix_webhook_deliveries_pending` only for a condition it sees when planning.
    pending = d.status == sa.literal_column("'pending'")
    return sa.and_(pending, sa.or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now))


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def recover(session: Session, now: datetime, report: DeliveryReport) -> None:
    """Re-queue `sending` rows whose lease expired or whose worker is gone (see module doc)."""
    d = store.table(WebhookDelivery)
    stmt = sa.select(d.c.id, d.c.lease_owner, d.c.lease_until).where(d.c.status == "sending")
    if _pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    for rid, owner, until in session.execute(stmt.order_by(d.c.id)).all():
        if until is not None and until >= now and not leases.owner_is_dead(owner):
            continue
        same = d.c.lease_owner.is_(None) if owner is None else d.c.lease_owner == owner
        session.execute(
            sa.update(d)
            .where(d.c.id == rid, d.c.status == "sending", same)
            .values(
                status="pending", lease_owner=None, lease_until=None, next_attempt_at=None,
                possible_duplicate=True,
                last_error="an attempt was interrupted after it may have reached the receiver",
            )
        )  # fmt: skip
        report.recovered.append(rid)
        log.warning(
            "webhook delivery interrupted: sending again under the same webhook-id",
            extra={"action": "webhook_possible_duplicate", "delivery_id": rid},
        )


def claim(
    session: Session,
    owner: str,
    now: datetime,
    lease: timedelta,
    size: int,
    per_subscription: int,
    exclude: set[int],
    busy: dict[int, int] | None = None,
) -> list[Job]:
    """Take up to `size` due rows (none of `exclude`; of each subscription, at most
    `per_subscription` less its `busy` rows in flight) under a lease; return them with their
    event and subscription."""
    d = store.table(WebhookDelivery)
    pick = sa.select(d.c.id, d.c.subscription_id).where(_due(now))
    if exclude:
        pick = pick.where(d.c.subscription_id.not_in(sorted(exclude)))
    pick = pick.order_by(d.c.id).limit(size * 4)
    if _pg(session):
        pick = pick.with_for_update(skip_locked=True)
    taken: dict[int, int] = dict(busy or {})
    ids: list[int] = []
    for rid, sid in session.execute(pick).all():
        if taken.get(sid, 0) < per_subscription and len(ids) < size:
            taken[sid] = taken.get(sid, 0) + 1
            ids.append(rid)
    if not ids:
        return []
    session.execute(
        sa.update(d)
        .where(d.c.id.in_(ids), _due(now))
        .values(status="sending", lease_owner=owner, lease_until=now + lease,
                attempts=d.c.attempts + 1, last_attempt_at=now)
    )  # fmt: skip
    w, e, s = WebhookDelivery, WebhookEvent, WebhookSubscription
    rows = session.execute(
        sa.select(w.id, w.attempts, s.id, s.url, s.secret_ciphertext, e.event_id, e.payload,
                  e.created_at)
        .join(e, e.id == w.event_id)
        .join(s, s.id == w.subscription_id)
        .where(w.id.in_(ids), w.lease_owner == owner, w.status == "sending")
        .order_by(w.id)
    ).all()  # fmt: skip
    return [Job(*row) for row in rows]


class Clients:
    """One HTTP client per receiver host (name and port): a connection is reused only for
    the host whose certificate it verified, even when several names share an address."""

    def __init__(self, cfg: WebhooksConfig, transport: httpx.BaseTransport | None) -> None:
        self.cfg, self.transport = cfg, transport
        self.lock = threading.Lock()
        self.clients: dict[str, httpx.Client] = {}
        self.verify: ssl.SSLContext | bool = True  # httpx's: certifi's authorities
        if cfg.ssl_ca_file:  # the system's authorities and the file's, as SMTP's
            self.verify = ssl.create_default_context()
            self.verify.load_verify_locations(cafile=cfg.ssl_ca_file)

    def __call__(self, host: str) -> httpx.Client:
        with self.lock:
            if host not in self.clients:
                self.clients[host] = httpx.Client(
                    timeout=httpx.Timeout(self.cfg.timeout), follow_redirects=False,
                    trust_env=False, transport=self.transport, verify=self.verify,
                )  # fmt: skip
            return self.clients[host]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def post(
    clients: Callable[[str], httpx.Client],
    cfg: WebhooksConfig,
    url: str,
    secret: str,
    event_id: str,
    payload: str,
) -> Outcome:
    """Check the target again, sign and POST one event; what came of it (never raises for
    the receiver's or the network's faults). At most `MAX_ANSWER` bytes of the answer are
    read (only its status counts; reading a short body lets the connection be reused)."""
    try:
        target = webhooktargets.check(url, cfg.allow_private)
    except webhooktargets.TargetError as exc:
        return Outcome(False, error=f"target refused: {exc}", permanent=exc.permanent)
    data = payload.encode()
    now = models.utcnow()
    signature = standardwebhooks.Webhook(secret).sign(event_id, now, data)
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    extensions = {"sni_hostname": target.server_name} if target.server_name else None
    try:
        with clients(target.host_header).stream(
            "POST", target.url, content=data, headers=headers, extensions=extensions
        ) as response:
            code, size, until = response.status_code, 0, time.monotonic() + cfg.timeout
            for chunk in response.iter_raw():  # a trickling answer is cut after `timeout`
                size += len(chunk)
                if size > MAX_ANSWER or time.monotonic() > until:
                    break
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= code < 300:
        return Outcome(True, code)
    if 300 <= code < 400:
        return Outcome(False, code, f"HTTP {code}: redirects are not followed")
    return Outcome(False, code, f"HTTP {code}", permanent=code == 410)


def _mark(
    session: Session,
    cfg: WebhooksConfig,
    results: list[tuple[Job, Outcome]],
    owner: str,
    now: datetime,
    report: DeliveryReport,
) -> None:
    """Record the outcomes of finished attempts in the caller's transaction (one
    executemany per kind of outcome)."""
    t = store.table(WebhookDelivery)
    delivered, failed = [], []
    for job, outcome in results:
        if outcome.ok:
            latency = max(0, int((now - job.event_at).total_seconds() * 1000))
            delivered.append({"rid": job.id, "code": outcome.status_code, "latency": latency})
            report.delivered.append(job.id)
            continue
        dead = outcome.permanent or job.attempts >= cfg.max_attempts
        failed.append({"rid": job.id, "code": outcome.status_code, "error": outcome.error,
                       "status": "dead" if dead else "pending",
                       "next": None if dead else now + backoff(cfg, job.attempts)})  # fmt: skip
        (report.dead if dead else report.retried).append(job.id)
        log.log(
            logging.ERROR if dead else logging.WARNING,
            "webhook delivery %s",
            "dead" if dead else "will be retried",
            extra={"action": "webhook_dead" if dead else "webhook_retry", "delivery_id": job.id,
                   "subscription_id": job.subscription_id, "attempts": job.attempts,
                   "error": outcome.error},
        )  # fmt: skip
    mine = sa.update(t).where(
        t.c.id == sa.bindparam("rid"), t.c.status == "sending", t.c.lease_owner == owner
    )
    free: dict[str, Any] = {
        "lease_owner": None, "lease_until": None, "last_status_code": sa.bindparam("code")
    }  # fmt: skip
    if delivered:
        session.execute(
            mine.values(status="delivered", delivered_at=now, last_error=None,
                        latency_ms=sa.bindparam("latency"), **free),
            delivered,
        )  # fmt: skip
    if failed:
        session.execute(
            mine.values(status=sa.bindparam("status"), last_error=sa.bindparam("error"),
                        next_attempt_at=sa.bindparam("next", type_=models.UTCDateTime()),
                        **free),
            failed,
        )  # fmt: skip


def _no_commit_wait(session: Session) -> None:
    """PostgreSQL: this transaction's commit does not wait for its WAL flush
    (https://www.postgresql.org/docs/current/wal-async-commit.html). Only a crash of the
    database server itself (not of this worker) can lose such a commit, and then the rows
    are found `pending` or `sending` again and resent under the same `webhook-id`: still at
    least once, as the worker crash window already allows."""
    if _pg(session):
        session.execute(sa.text("SET LOCAL synchronous_commit = off"))


def _anything_to_do(session: Session, now: datetime) -> bool:
    d = store.table(WebhookDelivery).c
    work = sa.or_(_due(now), d.status == "sending")
    return session.scalar(sa.select(d.id).where(work).limit(1)) is not None


def deliver(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    clock: Callable[[], datetime] = models.utcnow,
    limit: int = 100_000,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
) -> DeliveryReport:
    """One delivery pass: recover interrupted rows, then claim, post and mark until nothing
    is due (or `limit` rows were tried). Raises `tokens.SecretKeyError` (before any row is
    claimed) when there is work but no secret key to decrypt the signing secrets."""
    wcfg = cfg.webhooks
    report = DeliveryReport()
    with store.session_scope(factory) as s:
        if not _anything_to_do(s, clock()):  # a read alone: the common case costs no lock
            return report
    with store.session_scope(factory) as s:
        store.write_first(s)
        recover(s, clock(), report)
    multi = tokens.cipher()
    owner = leases.new_owner()
    size, cap = wcfg.concurrency * 2, max(1, wcfg.concurrency // 2)
    lease = timedelta(seconds=wcfg.timeout * 4 + 60)
    failing: set[int] = set()
    secrets: dict[bytes, str | None] = {}
    in_flight: dict[Future[Outcome], Job] = {}
    clients = Clients(wcfg, transport)
    with (
        contextlib.closing(clients),
        ThreadPoolExecutor(wcfg.concurrency, thread_name_prefix="webhook") as pool,
    ):

        def attempt(job: Job) -> Outcome:
            secret = _secret(multi, secrets, job.secret)
            if secret is None:
                return Outcome(False, error="the signing secret cannot be decrypted")
            outcome = post(clients, wcfg, job.url, secret, job.event_id, job.payload)
            if outcome.ok:
                outbox.test_pause("webhook_after_2xx")
            return outcome

        tried, drained = 0, False
        results: list[tuple[Job, Outcome]] = []
        while True:
            stopping = stop is not None and stop.is_set()
            more = not (drained or stopping) and tried < limit and len(in_flight) <= size // 2
            jobs: list[Job] = []
            if results or more:  # the finished outcomes and the next claim: one commit
                busy = Counter(job.subscription_id for job in in_flight.values())
                with store.session_scope(factory) as s:
                    store.write_first(s)
                    _no_commit_wait(s)
                    _mark(s, wcfg, results, owner, clock(), report)
                    if more:
                        jobs = claim(s, owner, clock(), lease, min(size - len(in_flight),
                                     limit - tried), cap, failing, busy)  # fmt: skip
                results = []
                drained = more and not jobs and not in_flight
                tried += len(jobs)
                in_flight.update((pool.submit(attempt, job), job) for job in jobs)
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            results = [(in_flight.pop(f), f.result()) for f in done]
            failing.update(job.subscription_id for job, outcome in results if not outcome.ok)
    return report


def _secret(multi: MultiFernet, cache: dict[bytes, str | None], ciphertext: bytes) -> str | None:
    if ciphertext not in cache:
        try:
            cache[ciphertext] = multi.decrypt(ciphertext).decode()
        except InvalidToken:
            log.error(
                "a webhook signing secret cannot be decrypted with the configured keys",
                extra={"action": "webhook_secret_unreadable"},
            )
            cache[ciphertext] = None
    return cache[ciphertext]
