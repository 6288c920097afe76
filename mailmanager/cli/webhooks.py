"""`mailmanager webhooks list|add|remove|test|deliveries|redeliver|deliver`.

    mailmanager webhooks add https://crm.example.com/hooks --event reminder.due
    mailmanager webhooks list
    mailmanager webhooks test ID           # queue a `webhook.test` event for it
    mailmanager webhooks deliveries [--subscription ID]
    mailmanager webhooks redeliver DELIVERY_ID
    mailmanager webhooks deliver           # one delivery pass now (the daemon does it too)
    mailmanager webhooks remove ID

`add` prints the signing secret once (it is stored encrypted under MAILMANAGER_SECRET_KEY).
"""

from __future__ import annotations

import dataclasses

import click

from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import store, tokens
from mailmanager.services import webhooks

ACTOR = "cli"


@click.group("webhooks")
def webhooks_group() -> None:
    """Add, list, test and remove webhook subscriptions; see their deliveries.

    Each event is POSTed to the subscription's URL, signed per Standard Webhooks
    (webhook-id, webhook-timestamp, webhook-signature), and retried with backoff."""


@webhooks_group.command("add")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    type=click.Choice(webhooks.EVENT_TYPES),
    help="An event type to send (repeatable).",
)
@click.option("--description", "-d", default="", help="What the receiver is.")
@click.pass_obj
def add(state: State, url: str, events: tuple[str, ...], description: str) -> None:
    """Subscribe URL to events; print its signing secret once."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            made = webhooks.create(s, state.config(), url, list(events), ACTOR, description)
        except webhooks.WebhookError as exc:
            fail(str(exc), EXIT_CONFIG)
    click.echo(f"webhook {made.subscription.id}: {safe(made.subscription.url)}")
    click.echo(made.secret)
    click.echo("Copy the signing secret now: it is not shown again.", err=True)


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_cmd(state: State, as_json: bool) -> None:
    """Each subscription: id, URL, event types, deliveries waiting and dead."""
    with database(state) as factory, store.session_scope(factory) as s:
        subs = webhooks.list_subscriptions(s)
    if as_json:
        emit_json([dataclasses.asdict(x) for x in subs])
        return
    for x in subs:
        click.echo(
            f"{x.id}\t{safe(x.url)}\t{' '.join(x.event_types)}\twaiting {x.pending}\tdead {x.dead}"
        )


@webhooks_group.command("remove")
@click.argument("subscription_id", type=int)
@click.pass_obj
def remove(state: State, subscription_id: int) -> None:
    """Remove a subscription and its deliveries."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            webhooks.delete(s, subscription_id, ACTOR)
        except webhooks.WebhookError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(f"removed webhook {subscription_id}")


@webhooks_group.command("test")
@click.argument("subscription_id", type=int)
@click.pass_obj
def test(state: State, subscription_id: int) -> None:
    """Queue a test event for one subscription (sent by the next delivery pass)."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            wid = webhooks.send_test(s, subscription_id, ACTOR)
        except webhooks.WebhookError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(f"queued test event {wid}")


@webhooks_group.command("deliveries")
@click.option("--subscription", type=int, help="Only this subscription's.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deliveries(state: State, subscription: int | None, limit: int, as_json: bool) -> None:
    """The last deliveries, newest first."""
    with database(state) as factory, store.session_scope(factory) as s:
        rows = webhooks.deliveries(s, subscription, limit)
    if as_json:
        emit_json([dataclasses.asdict(d) for d in rows])
        return
    for d in rows:
        click.echo(
            f"{d.id}\twebhook {d.subscription_id}\t{d.event_type}\t{d.status}\t"
            f"attempts {d.attempts}\t{d.last_status_code or '-'}\t{safe(d.last_error or '')}"
        )


@webhooks_group.command("redeliver")
@click.argument("delivery_id", type=int)
@click.pass_obj
def redeliver(state: State, delivery_id: int) -> None:
    """Queue a dead delivery again."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            webhooks.redeliver(s, delivery_id, ACTOR)
        except webhooks.WebhookError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(f"delivery {delivery_id} queued again")


@webhooks_group.command("deliver")
@click.pass_obj
def deliver(state: State) -> None:
    """Run one delivery pass now: send what is due."""
    from mailmanager.notify import webhooks as delivery

    with database(state) as factory:
        try:
            report = delivery.deliver(state.config(), factory)
        except tokens.SecretKeyError as exc:
            fail(str(exc), EXIT_CONFIG)
    click.echo(
        f"delivered {len(report.delivered)}, to retry {len(report.retried)}, "
        f"dead {len(report.dead)}, interrupted before {len(report.recovered)}"
    )
    if report.dead:
        raise SystemExit(EXIT_FAILED)
