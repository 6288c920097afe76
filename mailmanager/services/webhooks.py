"""Webhook subscriptions (issue #18): what the admin page, the API and the CLI call.

A subscription is a receiver URL and the event types it wants (`db.webhookevents.
EVENT_TYPES`). Its URL is checked against the SSRF rules when it is made
(`notify.webhooktargets`; again at each delivery). Its signing secret ("whsec_" + 24 random
bytes in base64, the Standard Webhooks form) is returned once, at creation, and stored
Fernet-encrypted under MAILMANAGER_SECRET_KEY (`db.tokens.cipher`): the server needs it back
to sign, so it cannot be hashed as API tokens are. Every change is audited (never the secret).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.db import audit, models, store, tokens, webhookevents
from mailmanager.db.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from mailmanager.errors import MailmanagerError
from mailmanager.notify import webhooktargets

EVENT_TYPES = webhookevents.EVENT_TYPES
STATUSES = ("pending", "sending", "delivered", "dead")


class WebhookError(MailmanagerError):
    """Raised for a refused subscription (bad URL, refused target, unknown event type, no
    secret key) or a missing one (`not_found`), or a delivery that cannot be redelivered."""

    def __init__(self, message: str, reason: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.reason, self.not_found = reason, not_found


@dataclass(frozen=True)
class Subscription:
    id: int
    url: str
    event_types: list[str]
    description: str
    created_by: str
    created_at: datetime
    pending: int
    dead: int


@dataclass(frozen=True)
class Created:
    """A new subscription and its signing secret (shown this once)."""

    subscription: Subscription
    secret: str


@dataclass(frozen=True)
class Delivery:
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    latency_ms: int | None
    possible_duplicate: bool
    created_at: datetime
    delivered_at: datetime | None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _types(event_types: list[str]) -> list[str]:
    wanted = sorted({t.strip() for t in event_types if t.strip()}, key=_order)
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown:
        raise WebhookError(
            f"unknown event type {unknown[0]!r}: use some of {', '.join(EVENT_TYPES)}", "types"
        )
    if not wanted:
        raise WebhookError(f"choose at least one event type: {', '.join(EVENT_TYPES)}", "types")
    return wanted


def _order(t: str) -> int:
    return EVENT_TYPES.index(t) if t in EVENT_TYPES else len(EVENT_TYPES)


def _counts(session: Session) -> dict[tuple[int, str], int]:
    d = WebhookDelivery
    rows = session.execute(
        sa.select(d.subscription_id, d.status, sa.func.count())
        .where(d.status.in_(("pending", "sending", "dead")))
        .group_by(d.subscription_id, d.status)
    ).all()
    return {(sid, status): int(n) for sid, status, n in rows}


def _view(row: WebhookSubscription, counts: dict[tuple[int, str], int]) -> Subscription:
    return Subscription(
        id=row.id,
        url=row.url,
        event_types=row.event_types.split(),
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        pending=counts.get((row.id, "pending"), 0) + counts.get((row.id, "sending"), 0),
        dead=counts.get((row.id, "dead"), 0),
    )


def list_subscriptions(session: Session) -> list[Subscription]:
    counts = _counts(session)
    rows = session.scalars(sa.select(WebhookSubscription).order_by(WebhookSubscription.id))
    return [_view(r, counts) for r in rows]


def get(session: Session, subscription_id: int) -> WebhookSubscription:
    row = session.get(WebhookSubscription, subscription_id)
    if row is None:
        raise WebhookError(f"no webhook subscription {subscription_id}", "missing", True)
    return row


def create(
    session: Session,
    cfg: config_mod.Config,
    url: str,
    event_types: list[str],
    by: str,
    description: str = "",
    now: datetime | None = None,
) -> Created:
    """Add a subscription; returns it with its secret. Raises WebhookError (the URL is
    refused, an event type unknown, no secret key configured)."""
    store.write_first(session)  # read, then write: take SQLite's write lock first
    types = _types(event_types)
    url = url.strip()
    if len(url) > 2000:
        raise WebhookError("the URL is longer than 2000 characters", "target")
    try:
        webhooktargets.check(url, cfg.webhooks.allow_private)
    except webhooktargets.TargetError as exc:
        raise WebhookError(str(exc), "target") from None
    secret = new_secret()
    try:
        ciphertext = tokens.cipher().encrypt(secret.encode())
    except tokens.SecretKeyError as exc:
        raise WebhookError(
            "no secret key is configured to keep the signing secret: generate one with "
            f"`mailmanager secrets new-key` and export {tokens.ENV_KEY}",
            "key",
        ) from exc
    row = WebhookSubscription(
        url=url,
        event_types=" ".join(types),
        secret_ciphertext=ciphertext,
        description=description.strip()[:500],
        created_by=by,
        created_at=now or models.utcnow(),
    )
    session.add(row)
    session.flush()
    webhookevents.forget(session)
    audit.record(session, by, "webhook_add", f"webhook:{row.id}", {"url": url, "events": types})
    return Created(_view(row, {}), secret)


def delete(session: Session, subscription_id: int, by: str) -> None:
    """Remove a subscription and its deliveries. Raises WebhookError when missing."""
    store.write_first(session)
    row = get(session, subscription_id)
    session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.subscription_id == row.id))
    audit.record(session, by, "webhook_remove", f"webhook:{row.id}", {"url": row.url})
    session.delete(row)
    session.flush()
    webhookevents.forget(session)


def send_test(session: Session, subscription_id: int, by: str) -> str:
    """Queue a `webhook.test` event for this subscription alone; its `webhook-id`."""
    store.write_first(session)
    row = get(session, subscription_id)
    data = {"subscription_id": row.id, "requested_by": by}
    ids = webhookevents.record(
        session, [webhookevents.NewEvent(webhookevents.TEST_EVENT, data)], only=[row.id]
    )
    audit.record(session, by, "webhook_test", f"webhook:{row.id}", {"event": ids[0]})
    return ids[0]


def deliveries(
    session: Session, subscription_id: int | None = None, limit: int = 50
) -> list[Delivery]:
    """The last deliveries (newest first), of one subscription or all."""
    d, e = WebhookDelivery, WebhookEvent
    stmt = (
        sa.select(d, e.event_id, e.type)
        .join(e, e.id == d.event_id)
        .order_by(d.id.desc())
        .limit(limit)
    )
    if subscription_id is not None:
        stmt = stmt.where(d.subscription_id == subscription_id)
    return [
        Delivery(
            id=row.id,
            subscription_id=row.subscription_id,
            event_id=eid,
            event_type=etype,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            latency_ms=row.latency_ms,
            possible_duplicate=row.possible_duplicate,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )
        for row, eid, etype in session.execute(stmt).all()
    ]


def redeliver(session: Session, delivery_id: int, by: str) -> None:
    """Queue a dead delivery for a new round of attempts (same `webhook-id`, same body).
    Raises WebhookError when it does not exist or is not dead."""
    store.write_first(session)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise WebhookError(f"no webhook delivery {delivery_id}", "missing", True)
    if row.status != "dead":
        raise WebhookError(
            f"delivery {delivery_id} is {row.status}: only a dead one is redelivered", "state"
        )
    row.status, row.attempts, row.next_attempt_at = "pending", 0, None
    row.lease_owner = row.lease_until = None
    audit.record(session, by, "webhook_redeliver", f"webhook_delivery:{row.id}", {})


def prune(session: Session, now: datetime, keep_days: int) -> int:
    """Delete the events older than `keep_days` none of whose deliveries is still to do
    (their deliveries go with them); how many. One cheap read first when there is none."""
    e, d = WebhookEvent, WebhookDelivery
    cutoff = now - timedelta(days=keep_days)
    if session.scalar(sa.select(e.id).where(e.created_at < cutoff).limit(1)) is None:
        return 0
    store.write_first(session)
    open_ = sa.select(d.id).where(d.event_id == e.id, d.status.in_(("pending", "sending")))
    old = sa.select(e.id).where(e.created_at < cutoff, ~open_.exists()).limit(5000)
    ids = list(session.scalars(old))
    for chunk in store.chunks(ids):
        session.execute(sa.delete(d).where(d.event_id.in_(chunk)))
        session.execute(sa.delete(e).where(e.id.in_(chunk)))
    return len(ids)
