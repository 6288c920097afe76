"""`mailmanager tokens create|list|revoke`: the bearer tokens of the REST API (`/api/v1`).

    mailmanager tokens create --user alice@example.com --name "Our CRM" --scope read
    mailmanager tokens list [--user EMAIL]
    mailmanager tokens revoke ID

`create` prints the token once: only its SHA-256 is stored, so it cannot be shown again
(create another and revoke the lost one). `list` never prints a token.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import click

from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import models, store
from mailmanager.services import apitokens


@click.group("tokens")
def tokens_group() -> None:
    """Create, list and revoke the bearer tokens of the REST API (/api/v1).

    A token acts as its user, with the same visibility rules as the web workspace, within
    its scopes: read, write, admin (admin for users whose role is admin only). Clients
    send it as `Authorization: Bearer mm_...`."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@tokens_group.command("create")
@click.option("--user", "-u", required=True, metavar="EMAIL", help="The user the token acts as.")
@click.option("--name", "-n", required=True, help="What the token is for (e.g. the CRM's name).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(apitokens.SCOPES),
    help="A scope the token holds (repeatable; default: read).",
)
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    metavar="D",
    help="Refuse the token D days from now (default: never expires; revoke it instead).",
)
@click.pass_obj
def tokens_create(
    state: State, user: str, name: str, scopes: tuple[str, ...], expires_days: int | None
) -> None:
    """Create a token for a user and print it once (only its hash is stored)."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            info, token = apitokens.create(
                s, state.config(), user, name, scopes, models.utcnow(), expires_days
            )
        except apitokens.TokenError as exc:
            fail(str(exc), EXIT_CONFIG)
    click.echo(
        f"token {info.id} for {info.user} ({' '.join(info.scopes)}), expires: "
        f"{_when(info.expires_at)}"
    )
    click.echo(token)
    click.echo("Copy it now: it is not stored and cannot be shown again.", err=True)


@tokens_group.command("list")
@click.option("--user", "-u", metavar="EMAIL", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def tokens_list(state: State, user: str | None, as_json: bool) -> None:
    """Each token: id, user, name, scopes, state, creation, expiry and last use (never the
    token itself)."""
    with database(state) as factory, store.session_scope(factory) as s:
        found = apitokens.list_tokens(s, user)
    now = models.utcnow()
    if as_json:
        emit_json([{**dataclasses.asdict(t), "state": t.state(now)} for t in found])
        return
    if not found:
        click.echo("no API tokens")
        return
    for t in found:
        click.echo(
            f"{t.id:>5}  {safe(t.user)}  {safe(t.name)!r}  {' '.join(t.scopes)}  "
            f"{t.state(now)}  created {_when(t.created_at)}  expires {_when(t.expires_at)}  "
            f"last used {_when(t.last_used_at)}"
        )


@tokens_group.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@click.pass_obj
def tokens_revoke(state: State, token_id: int) -> None:
    """Revoke token ID (see `tokens list`): the API refuses it from now on."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            info = apitokens.revoke(s, token_id, models.utcnow())
        except apitokens.TokenError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(f"token {info.id} ({safe(info.name)}, {info.user}) is revoked")
