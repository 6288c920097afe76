"""Webhook subscriptions (admin): create, list, delete, send a test event, last deliveries,
redeliver a dead one. See `services.webhooks` (SSRF checks, the secret shown once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from mailmanager.api import problems, v1
from mailmanager.services import webhooks

router = APIRouter(tags=["webhooks"])


class SubscriptionIn(BaseModel):
    url: str = Field(description="The receiver: https://... (http:// only for allowed hosts)")
    event_types: list[str] = Field(description=f"Some of: {', '.join(webhooks.EVENT_TYPES)}")
    description: str = ""


class SubscriptionCreated(BaseModel):
    """The new subscription and its signing secret: shown this once, store it now."""

    subscription: webhooks.Subscription
    secret: str


class SubscriptionList(BaseModel):
    items: list[webhooks.Subscription]


class DeliveryList(BaseModel):
    items: list[webhooks.Delivery]


class TestQueued(BaseModel):
    webhook_id: str


class Redelivered(BaseModel):
    id: int
    status: str


def _fail(exc: webhooks.WebhookError) -> HTTPException:
    return HTTPException(404 if exc.not_found else 422, str(exc))


def _who(who: v1.Admin) -> str:
    return f"api:{who.viewer.email}"


@router.get("/webhooks", summary="Webhook subscriptions")
def list_subscriptions(request: Request, who: v1.Admin) -> SubscriptionList:
    """Every subscription, with its pending and dead deliveries."""
    with v1.transaction(request) as s:
        return SubscriptionList(items=webhooks.list_subscriptions(s))


@router.post("/webhooks", status_code=201, summary="Add a webhook subscription")
def create(request: Request, who: v1.Admin, body: SubscriptionIn) -> SubscriptionCreated:
    """Subscribe a receiver URL to event types. The URL must not resolve to a private or
    loopback address (unless `[webhooks] allow_private` allows it). The answer holds the
    signing secret, never shown again."""
    state = v1.api(request)
    try:
        with v1.transaction(request) as s:
            made = webhooks.create(
                s, state.cfg, body.url, body.event_types, _who(who), body.description
            )
    except webhooks.WebhookError as exc:
        raise _fail(exc) from None
    return SubscriptionCreated(subscription=made.subscription, secret=made.secret)


@router.delete(
    "/webhooks/{subscription_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a subscription",
)
def delete(request: Request, who: v1.Admin, subscription_id: problems.Id) -> Response:
    """Remove the subscription and its deliveries (pending ones are not sent)."""
    try:
        with v1.transaction(request) as s:
            webhooks.delete(s, subscription_id, _who(who))
    except webhooks.WebhookError as exc:
        raise _fail(exc) from None
    return Response(status_code=204)


@router.post("/webhooks/{subscription_id}/test", status_code=202, summary="Send a test event")
def send_test(request: Request, who: v1.Admin, subscription_id: problems.Id) -> TestQueued:
    """Queue a `webhook.test` event for this subscription alone (delivered by the next
    delivery pass, as any event)."""
    try:
        with v1.transaction(request) as s:
            return TestQueued(webhook_id=webhooks.send_test(s, subscription_id, _who(who)))
    except webhooks.WebhookError as exc:
        raise _fail(exc) from None


@router.get("/webhooks/deliveries", summary="Last webhook deliveries")
def deliveries(
    request: Request,
    who: v1.Admin,
    subscription: Annotated[
        int | None, Query(ge=1, le=problems.MAX_ID, description="Only this subscription's.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=v1.MAX_LIMIT)] = 50,
) -> DeliveryList:
    """The newest deliveries first, with their status, attempts, last HTTP status, error
    and latency (event to delivery)."""
    with v1.transaction(request) as s:
        return DeliveryList(items=webhooks.deliveries(s, subscription, limit))


@router.post(
    "/webhooks/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Redeliver a dead delivery",
)
def redeliver(request: Request, who: v1.Admin, delivery_id: problems.Id) -> Redelivered:
    """Queue a dead delivery for a new round of attempts (same `webhook-id`, same body);
    422 when it is not dead."""
    try:
        with v1.transaction(request) as s:
            webhooks.redeliver(s, delivery_id, _who(who))
    except webhooks.WebhookError as exc:
        raise _fail(exc) from None
    return Redelivered(id=delivery_id, status="pending")
