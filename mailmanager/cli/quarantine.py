"""`mailmanager quarantine list|show`: the items a sync could not store as messages.

A group, so that `retry` and `drop` (issue #16) join `list` and `show` as sub-commands.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from mailmanager.cli.app import EXIT_FAILED, State, database, emit_json, fail
from mailmanager.db import store
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
        click.echo(f"{i.id:>6}  {i.mailbox} / {i.folder}  {i.provider_id}  ({i.size} bytes)")
        click.echo(f"        {i.explanation}")
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
@click.pass_obj
def quarantine_show(
    state: State, item_id: int, raw: bool, output: Path | None, as_json: bool
) -> None:
    """One quarantined item: where it came from, why, and (--raw) its bytes."""
    if output is not None and not raw:
        fail("--output goes with --raw (it saves the item's bytes)", EXIT_FAILED)
    with database(state) as factory, store.session_scope(factory) as s:
        item = quarantine_svc.get_item(s, item_id)
        data = quarantine_svc.raw_bytes(s, item_id) if raw and item is not None else None
    if item is None:
        fail(f"no quarantined item {item_id}; see `mailmanager quarantine list`", EXIT_FAILED)
    if raw:
        if data is None:
            fail(f"the bytes of quarantined item {item_id} were not kept", EXIT_FAILED)
        if output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            output.write_bytes(data)
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
        click.echo(f"{label:>12}: {value}")
