"""`mailmanager quarantine list|show|retry|drop`: the items a sync could not store as
messages.

    mailmanager quarantine retry ID | --all [--mailbox NAME]   # once the cause is fixed
    mailmanager quarantine drop ID [--yes]                     # for good, audited

`show --raw --output FILE` writes the item's bytes to a file readable by its owner only
(0600): they are someone's mail.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from mailmanager.cli import privacy as cli_privacy
from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import store
from mailmanager.services import privacy as privacy_svc
from mailmanager.services import quarantine as quarantine_svc


@click.group("quarantine")
def quarantine_group() -> None:
    """List and show the items a sync kept aside because they are not e-mail messages."""


@quarantine_group.command("list")
@click.option("--mailbox", "-m", metavar="NAME", help="Only the items of this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def quarantine_list(state: State, mailbox: str | None, as_json: bool) -> None:
    """Each quarantined item: id, mailbox, folder, provider id and the reason."""
    with database(state) as factory, store.session_scope(factory) as s:
        items = quarantine_svc.list_items(s, mailbox)
    if as_json:
        emit_json([dataclasses.asdict(i) for i in items])
        return
    if not items:
        click.echo("nothing is quarantined")
        return
    for i in items:
        where = f"{safe(i.mailbox)} / {safe(i.folder)}  {safe(i.provider_id)}"
        click.echo(f"{i.id:>6}  {where}  ({i.size} bytes)")
        click.echo(f"        {safe(i.explanation)}")
    click.echo(
        f"{len(items)} quarantined; `mailmanager quarantine show ID --raw --output FILE` "
        "saves an item's bytes"
    )


@quarantine_group.command("show")
@click.argument("item_id", metavar="ID", type=int)
@click.option("--raw", is_flag=True, help="Write the item's bytes as fetched, not its details.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --raw: write to FILE instead of standard output.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@cli_privacy.actor_option
@click.pass_obj
def quarantine_show(
    state: State, item_id: int, raw: bool, output: Path | None, as_json: bool, actor: str | None
) -> None:
    """One quarantined item: where it came from, why, and (--raw) its bytes."""
    if output is not None and not raw:
        fail("--output goes with --raw (it saves the item's bytes)", EXIT_FAILED)
    with database(state) as factory, store.session_scope(factory) as s:
        item = quarantine_svc.get_item(s, item_id)
        data = quarantine_svc.raw_bytes(s, item_id) if raw and item is not None else None
        if data is not None:  # its bytes are mail content: audited
            who = cli_privacy.actor_of(actor)
            privacy_svc.record_read(s, who, "quarantine.read_raw", f"quarantine:{item_id}")
    if item is None:
        fail(f"no quarantined item {item_id}; see `mailmanager quarantine list`", EXIT_FAILED)
    if raw:
        if data is None:
            fail(f"the bytes of quarantined item {item_id} were not kept", EXIT_FAILED)
        if output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            write_private(output, data)
            click.echo(f"{len(data)} bytes written to {output}", err=True)
        return
    if as_json:
        emit_json(dataclasses.asdict(item))
        return
    for label, value in (
        ("id", item.id),
        ("mailbox", item.mailbox),
        ("folder", item.folder),
        ("provider id", item.provider_id),
        ("reason", f"{item.explanation} [{item.reason}]"),
        ("size", f"{item.size} bytes"),
        ("sha256", item.sha256),
        ("kept since", item.quarantined_at or "-"),
    ):
        click.echo(f"{label:>12}: {safe(value)}")


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, readable by its owner only (0600), also when it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
    finally:
        os.close(fd)


@quarantine_group.command("retry")
@click.argument("item_id", metavar="ID", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Retry every quarantined item.")
@click.option("--mailbox", "-m", metavar="NAME", help="With --all: only this mailbox's items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@cli_privacy.actor_option
@click.pass_obj
def quarantine_retry(
    state: State,
    item_id: int | None,
    every: bool,
    mailbox: str | None,
    as_json: bool,
    actor: str | None,
) -> None:
    """Store quarantined items again, through the sync's own path, once the cause is fixed
    (a parser bug fixed by an upgrade, a database limit raised). An item stored leaves the
    quarantine; one that fails again stays, with the new reason."""
    if (item_id is None) == (not every):
        fail("give an ID or --all (one of them)", EXIT_CONFIG)
    if mailbox is not None and not every:
        fail("--mailbox goes with --all", EXIT_CONFIG)
    cfg = state.config()
    who = cli_privacy.actor_of(actor)
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            if item_id is not None:
                outcomes = [quarantine_svc.retry(s, cfg, item_id, who)]
            else:
                outcomes = quarantine_svc.retry_many(s, cfg, who, mailbox)
        except LookupError:
            outcomes = None
    if outcomes is None:
        fail(f"no quarantined item {item_id}; see `mailmanager quarantine list`", EXIT_FAILED)
    if as_json:
        emit_json([dataclasses.asdict(o) for o in outcomes])
    else:
        for o in outcomes:
            if o.stored:
                click.echo(f"{o.id:>6}  stored (message {o.message_id})")
            else:
                explanation = quarantine_svc.describe_reason(o.reason)
                click.echo(f"{o.id:>6}  still quarantined: {safe(explanation)}")
        stored = sum(o.stored for o in outcomes)
        click.echo(f"{stored} stored, {len(outcomes) - stored} still quarantined")
    if item_id is not None and not outcomes[0].stored:
        sys.exit(EXIT_FAILED)


@quarantine_group.command("drop")
@click.argument("item_id", metavar="ID", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@cli_privacy.actor_option
@click.pass_obj
def quarantine_drop(state: State, item_id: int, yes: bool, actor: str | None) -> None:
    """Delete a quarantined item and its bytes for good (recorded in the audit log)."""
    with database(state) as factory:
        with store.session_scope(factory) as s:
            item = quarantine_svc.get_item(s, item_id)
        if item is None:
            fail(f"no quarantined item {item_id}; see `mailmanager quarantine list`", EXIT_FAILED)
        if not yes:
            what = f"{safe(item.mailbox)} / {safe(item.folder)} {safe(item.provider_id)}"
            if not sys.stdin.isatty():
                fail(f"drop item {item_id} ({what}): confirm with --yes", EXIT_FAILED)
            click.confirm(f"Delete quarantined item {item_id} ({what}) for good?", abort=True)
        with store.session_scope(factory) as s:
            try:
                quarantine_svc.drop(s, item_id, cli_privacy.actor_of(actor))
            except LookupError:
                fail(f"no quarantined item {item_id} (dropped meanwhile?)", EXIT_FAILED)
    click.echo(f"quarantined item {item_id} dropped")
