"""The outbox: reminder emails queued in the database and sent over SMTP exactly once.

A row's life: `pending` → `sending` (claimed under a lease) → `sent`, or back to `pending`
with exponential backoff after a failure, or `dead` after `[notifications] max_attempts`
(or at once on a permanent 5xx). `mailmanager outbox retry ID` revives a dead row.

- **Enqueue** (`enqueue`) runs in the caller's transaction, the one that marks the
  reminders sent; the idempotency key is unique and the Message-ID is assigned then, so
  every attempt sends the same bytes under the same Message-ID.
- **Claim** (`claim_one`) is one UPDATE of a due `pending` row to `sending` with a lease
  (`lease_owner` = "host:pid:nonce", `lease_until`); on PostgreSQL the row is chosen with
  `FOR UPDATE SKIP LOCKED`, so concurrent workers never take the same row. SQLite ignores
  row locks (SQLAlchemy drops `FOR UPDATE`): it is single-worker, and the UPDATE's own
  WHERE clause still keeps two claims apart.
- **Send, then mark sent** in a new short transaction right after the server's 250,
  guarded by `status = 'sending' AND lease_owner = me`. No session is open during SMTP.

**The crash window.** SMTP is not transactional: a worker killed after the 250 and before
its commit leaves a `sending` row although the email went out. `recover` handles such
rows once their lease has expired or their owner process is gone: it looks for the row's
Message-ID among synced messages (the digest is addressed to the user, whose mailboxes the
daemon syncs). Found → marked sent, nothing is re-sent. Not found while none of the
recipient's mailboxes has synced past the attempt (plus a delivery margin) → wait, up to
`[notifications] reconcile_wait` seconds. Still not found after that, or the recipient
has no synced mailbox → the row is re-queued with `possible_duplicate = true` and an
`outbox_possible_duplicate` warning: we prefer a rare duplicate (same Message-ID, which
many servers and clients collapse) to a lost reminder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import leases, models, store
from mailmanager.db.models import OutboxEmail
from mailmanager.errors import MailmanagerError
from mailmanager.notify import smtp

log = logging.getLogger(__name__)

DELIVERY_MARGIN = timedelta(minutes=2)
PAUSE_ENV = "MAILMANAGER_TEST_PAUSE_AT"


class OutboxError(MailmanagerError):
    """Raised by `retry` when the row does not exist or cannot be retried (sent, in flight)."""


def test_pause(point: str) -> None:
    """Test hook: block forever at `point` when $MAILMANAGER_TEST_PAUSE_AT names it.

    The crash tests run the CLI with it, wait for "PAUSED <point>" on stderr and kill -9
    the process there (e.g. `before_commit`, `after_smtp`). A no-op otherwise.
    """
    if os.environ.get(PAUSE_ENV) == point:
        import sys
        import time

        print(f"PAUSED {point}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def message_id(key: str, sender: str) -> str:
    """A stable Message-ID for idempotency key `key`, in the domain of the `From` address."""
    domain = smtp.address_of(sender).rpartition("@")[2] or "localhost"
    return f"<mailmanager.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def enqueue(
    session: Session,
    *,
    key: str,
    message_id_header: str,
    recipient: str,
    recipient_name: str,
    subject: str,
    body_text: str,
    body_html: str,
    now: datetime,
) -> OutboxEmail:
    """Add one email to the outbox in the caller's transaction (flushed, so it has an id).

    A second email with the same `key` makes the flush (or commit) raise IntegrityError.
    """
    row = OutboxEmail(
        idempotency_key=key,
        message_id_header=message_id_header,
        recipient=recipient,
        recipient_name=smtp.sanitize(recipient_name, 100),
        subject=smtp.sanitize(subject),
        body_text=body_text,
        body_html=body_html,
        status="pending",
        attempts=0,
        next_attempt_at=None,  # due at once, whatever clock the flush runs on
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def backoff(cfg: config_mod.NotificationsConfig, attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base × 2^(n-1), capped."""
    return timedelta(seconds=min(cfg.retry_max, cfg.retry_base * 2 ** max(0, attempts - 1)))


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def claim_one(session: Session, owner: str, now: datetime, lease: timedelta) -> OutboxEmail | None:
    """Take the oldest due `pending` row under a lease; None when there is none."""
    t = store.table(OutboxEmail)
    due = sa.and_(
        t.c.status == "pending",
        sa.or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
    )
    pick = sa.select(t.c.id).where(due).order_by(t.c.id).limit(1)
    if _pg(session):
        pick = pick.with_for_update(skip_locked=True)
    row_id = session.execute(
        sa.update(t)
        # `id = (subquery)` is an InitPlan evaluated once; `id IN (subquery)` may be a semi
        # join that re-runs the LIMIT 1 per outer row and so claims several rows.
        .where(t.c.id == pick.scalar_subquery(), due)
        .values(
            status="sending",
            lease_owner=owner,
            lease_until=now + lease,
            attempts=t.c.attempts + 1,
            last_attempt_at=now,
        )
        .returning(t.c.id)
    ).scalar()
    return session.get(OutboxEmail, row_id) if row_id is not None else None


@dataclass
class FlushReport:
    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    reconciled: list[int] = field(default_factory=list)
    possible_duplicates: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    error: str | None = None
    # After the flush: pending emails whose next attempt is later, the first one's time
    # and its last error (so "0 sent" never hides an email waiting for its retry).
    retry_later: int = 0
    next_retry_at: datetime | None = None
    next_retry_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["next_retry_at"] = self.next_retry_at.isoformat() if self.next_retry_at else None
        return out


def _found_in_synced_mail(session: Session, message_id_header: str) -> bool:
    wanted = message_id_header.strip().strip("<>")
    m = models.Message
    return session.scalar(sa.select(m.id).where(m.message_id == wanted).limit(1)) is not None


def _recipient_synced_since(session: Session, recipient: str, since: datetime) -> bool | None:
    """Whether a mailbox of `recipient` was synced past `since`; None if they have none."""
    watermarks = session.scalars(
        sa.select(models.Mailbox.synced_until)
        .join(models.User, models.User.id == models.Mailbox.owner_id)
        .where(models.User.email == recipient, models.Mailbox.enabled)
    ).all()
    if not watermarks:
        return None
    return any(w is not None and w >= since + DELIVERY_MARGIN for w in watermarks)


def recover(
    session: Session, cfg: config_mod.NotificationsConfig, now: datetime, report: FlushReport
) -> None:
    """Settle `sending` rows whose worker died or whose lease expired (see module doc)."""
    t = store.table(OutboxEmail)
    store.write_first(session)
    stmt = sa.select(OutboxEmail).where(OutboxEmail.status == "sending").order_by(OutboxEmail.id)
    if _pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    for row in session.scalars(stmt).all():
        expired = row.lease_until is None or row.lease_until < now
        if not expired and not leases.owner_is_dead(row.lease_owner):
            continue
        owner = t.c.lease_owner
        same = owner.is_(None) if row.lease_owner is None else owner == row.lease_owner
        update = sa.update(t).where(t.c.id == row.id, t.c.status == "sending", same)
        attempt = row.last_attempt_at or row.created_at
        free = {"lease_owner": None, "lease_until": None}
        if _found_in_synced_mail(session, row.message_id_header):
            found = "sent before a crash: found in synced mail"
            session.execute(update.values(status="sent", sent_at=attempt, last_error=found, **free))
            report.reconciled.append(row.id)
            log.info(
                "outbox email found in synced mail: marked sent",
                extra={"action": "outbox_reconciled", "outbox_id": row.id},
            )
            continue
        synced = _recipient_synced_since(session, row.recipient, attempt)
        if synced is False and now - attempt < timedelta(seconds=cfg.reconcile_wait):
            # No owner, no lease: every flush looks again (one query) until the mailbox
            # has synced past the attempt or `reconcile_wait` is over.
            waiting = "interrupted after it may have reached the server: waiting for a sync"
            session.execute(update.values(last_error=waiting, **free))
            report.waiting.append(row.id)
            continue
        note = "an attempt was interrupted after it may have reached the server"
        session.execute(
            update.values(
                status="pending", possible_duplicate=True, next_attempt_at=None, last_error=note,
                **free,
            )
        )  # fmt: skip
        report.possible_duplicates.append(row.id)
        log.warning(
            "outbox email may be sent twice: resending",
            extra={"action": "outbox_possible_duplicate", "outbox_id": row.id},
        )


def _fail(
    factory: sessionmaker[Session],
    cfg: config_mod.NotificationsConfig,
    row_id: int,
    attempts: int,
    owner: str,
    exc: MailmanagerError,
    permanent: bool,
    now: datetime,
    report: FlushReport,
) -> None:
    t = store.table(OutboxEmail)
    dead = permanent or attempts >= cfg.max_attempts
    with store.session_scope(factory) as s:
        s.execute(
            sa.update(t)
            .where(t.c.id == row_id, t.c.status == "sending", t.c.lease_owner == owner)
            .values(
                status="dead" if dead else "pending",
                lease_owner=None,
                lease_until=None,
                next_attempt_at=None if dead else now + backoff(cfg, attempts),
                last_error=smtp.one_line(str(exc), 500),
            )
        )
    (report.dead if dead else report.retried).append(row_id)
    log.log(
        logging.ERROR if dead else logging.WARNING,
        "outbox email %s",
        "dead" if dead else "will be retried",
        extra={
            "action": "outbox_dead" if dead else "outbox_retry",
            "outbox_id": row_id,
            "attempts": attempts,
            "error": str(exc),
        },
    )


def flush(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    clock: Callable[[], datetime] = models.utcnow,
    limit: int = 1000,
    stop: threading.Event | None = None,
) -> FlushReport:
    """Send what is due: recover interrupted rows, then claim, send and mark one at a time.

    Stops early when the server cannot be reached (the rows keep their schedule). SMTP
    problems are recorded on the rows and in the report, not raised; `ConfigFileError` is
    raised (before any row is touched) when an SMTP secret cannot be read.
    """
    ncfg = cfg.notifications
    cfg.smtp.secrets()  # a missing secret is a config error: raise it before claiming rows
    report = FlushReport()
    with store.session_scope(factory) as s:
        recover(s, ncfg, clock(), report)
    owner = f"{leases.HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease = timedelta(seconds=cfg.smtp.timeout * 4 + 60)
    sender = cfg.smtp.from_ or default_sender(cfg)
    with smtp.Connection(cfg.smtp) as conn:
        while len(report.sent) + len(report.retried) + len(report.dead) < limit:
            if stop is not None and stop.is_set():  # SIGTERM: finish this email, then stop
                break
            now = clock()
            with store.session_scope(factory) as s:
                row = claim_one(s, owner, now, lease)
                if row is None:
                    break
                row_id, attempts = row.id, row.attempts
                out = smtp.Outgoing(
                    message_id=row.message_id_header,
                    sender=sender,
                    recipient=row.recipient,
                    recipient_name=row.recipient_name,
                    subject=row.subject,
                    text=row.body_text,
                    html=row.body_html,
                    date=row.created_at,
                )
            try:
                data = smtp.build_message(out)
                reply = conn.send(smtp.address_of(sender), out.recipient, data)
            except smtp.HeaderError as exc:
                _fail(factory, ncfg, row_id, attempts, owner, exc, True, clock(), report)
                continue
            except smtp.SendError as exc:
                _fail(factory, ncfg, row_id, attempts, owner, exc, exc.permanent, clock(), report)
                if exc.connection:
                    report.error = str(exc)
                    break
                continue
            test_pause("after_smtp")
            _mark_sent(factory, row_id, owner, clock(), reply)
            report.sent.append(row_id)
    with store.session_scope(factory) as s:
        _count_later(s, clock(), report)
    return report


def _count_later(session: Session, now: datetime, report: FlushReport) -> None:
    o = OutboxEmail
    later = sa.and_(o.status == "pending", o.next_attempt_at > now)
    report.retry_later = int(session.scalar(sa.select(sa.func.count()).where(later)) or 0)
    first = session.execute(
        sa.select(o.next_attempt_at, o.last_error).where(later).order_by(o.next_attempt_at)
    ).first()
    if first is not None:
        report.next_retry_at, report.next_retry_error = first[0], first[1]


def _mark_sent(
    factory: sessionmaker[Session], row_id: int, owner: str, now: datetime, reply: str
) -> None:
    t = store.table(OutboxEmail)
    with store.session_scope(factory) as s:
        done = s.execute(
            sa.update(t)
            .where(t.c.id == row_id, t.c.status == "sending", t.c.lease_owner == owner)
            .values(status="sent", sent_at=now, lease_owner=None, lease_until=None, last_error=None)
        ).rowcount  # type: ignore[attr-defined]
    extra = {"action": "outbox_sent", "outbox_id": row_id, "reply": reply}
    if done:
        log.info("outbox email sent", extra=extra)
    else:  # our lease expired mid-send and another worker took the row over
        log.warning(
            "outbox email sent after losing its lease",
            extra=extra | {"action": "outbox_lease_lost"},
        )


def default_sender(cfg: config_mod.Config) -> str:
    """`[smtp] from`, else mailmanager@ the first organization domain."""
    domain = cfg.organization.domains[0] if cfg.organization.domains else "localhost"
    return cfg.smtp.from_ or f"mailmanager@{domain}"


def retry(session: Session, row_id: int, now: datetime) -> None:
    """Queue a `dead` (or waiting `pending`) row for an immediate new attempt.

    Raises `OutboxError` when there is no such row, or it is sent or being sent.
    """
    row = session.get(OutboxEmail, row_id)
    if row is None:
        raise OutboxError(f"no outbox email {row_id}")
    if row.status not in ("dead", "pending"):
        raise OutboxError(f"outbox email {row_id} is {row.status}: it cannot be retried")
    row.status, row.attempts, row.next_attempt_at, row.lease_until = "pending", 0, now, None
