"""What the sync stored: `mailmanager status`, `threads list|show`, `messages show`."""

from __future__ import annotations

import sys
from typing import Any

import click

from mailmanager.cli.app import EXIT_FAILED, State, database, emit_json, fail
from mailmanager.db import lookup, store
from mailmanager.services import queries


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(state: State, as_json: bool) -> None:
    """Show each mailbox's last sync and error, database counts, reminders and the outbox."""
    with database(state) as factory, store.session_scope(factory) as s:
        data: dict[str, Any] = {
            "mailboxes": queries.mailbox_status(s),
            "totals": queries.totals(s),
            "reminders": queries.reminder_counts(s),
            "outbox": queries.outbox_backlog(s),
        }
    if as_json:
        emit_json(data)
        return
    for mb in data["mailboxes"]:
        state_ = (
            "error" if mb["last_error"] else ("never synced" if not mb["last_sync_at"] else "ok")
        )
        click.echo(
            f"{mb['name']} ({mb['connector']}): {state_}; last sync {mb['last_sync_at'] or '-'}; "
            f"{mb['messages']} messages in {mb['folders']} folders"
        )
        if mb["last_error"]:
            click.echo(f"  last error: {mb['last_error']}")
    t = data["totals"]
    click.echo(
        f"total: {t['messages']} messages, {t['threads']} threads, {t['quarantined']} quarantined"
    )
    r, o = data["reminders"], data["outbox"]
    click.echo(f"reminders: {r['pending']} pending, {r['sent']} sent")
    click.echo(
        f"outbox: {o['pending'] + o['sending']} to send, {o['dead']} dead, {o['sent']} sent"
        + (f" (oldest unsent queued {o['oldest_unsent_at']})" if o["oldest_unsent_at"] else "")
    )


@click.group("threads")
def threads_group() -> None:
    """List and show conversations."""


@threads_group.command("list")
@click.option("--limit", default=30, show_default=True, help="How many threads.")
@click.option("--mailbox", "-m", metavar="NAME", help="Only threads with mail in this mailbox.")
@click.option("--search", "-s", metavar="TEXT", help="Only subjects containing TEXT.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def threads_list(
    state: State, limit: int, mailbox: str | None, search: str | None, as_json: bool
) -> None:
    """The most recently active threads first."""
    with database(state) as factory, store.session_scope(factory) as s:
        rows = queries.list_threads(s, limit=limit, mailbox=mailbox, search=search)
    if as_json:
        emit_json([r.__dict__ for r in rows])
        return
    for r in rows:
        last = (r.last_at or "-")[:16]
        click.echo(
            f"{r.id:>6}  {last:<16}  {r.message_count:>3} msg  "
            f"{r.last_direction or '-':<8}  {r.subject[:60]}"
        )


@threads_group.command("show")
@click.argument("thread_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def threads_show(state: State, thread_id: int, as_json: bool) -> None:
    """One thread and its messages in order."""
    with database(state) as factory, store.session_scope(factory) as s:
        data = queries.thread_detail(s, thread_id)
    if data is None:
        fail(f"no thread {thread_id}; see `mailmanager threads list`", EXIT_FAILED)
    if as_json:
        emit_json(data)
        return
    click.echo(f"thread {data['id']}: {data['subject']} ({data['message_count']} messages)")
    for m in data["messages"]:
        tags = f" [{', '.join(m['classification'])}]" if m["classification"] else ""
        click.echo(f"  {(m['sent_at'] or '-')[:16]}  {m['direction']:<8} {m['from']}{tags}")
        click.echo(f"      {m['subject'][:70]}")
        if m["snippet"]:
            click.echo(f"      {m['snippet'][:100]}")


@click.group("messages")
def messages_group() -> None:
    """Inspect stored messages."""


@messages_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--raw", is_flag=True, help="Print the raw RFC 822 bytes as stored.")
@click.pass_obj
def messages_show(state: State, ref: str, as_json: bool, raw: bool) -> None:
    """A message by database id or Message-ID: headers, participants, where it lives."""
    with database(state) as factory, store.session_scope(factory) as s:
        message = lookup.find_message(s, ref)
        if message is None:
            fail(f"no message {ref!r} (give a database id or a Message-ID)", EXIT_FAILED)
        if raw:
            data = queries.raw_bytes(s, message)
            if data is None:
                fail("the raw bytes of this message were not kept", EXIT_FAILED)
            sys.stdout.buffer.write(data)
            return
        detail = queries.message_detail(s, message)
    if as_json:
        emit_json(detail)
        return
    _print_message(detail)


def _print_message(detail: dict[str, Any]) -> None:
    for key in ("id", "message_id", "thread_id", "sent_at", "direction", "from", "subject"):
        click.echo(f"{key:>12}: {detail[key]}")
    for p in detail["participants"]:
        click.echo(
            f"{p['role']:>12}: {p['name']} <{p['email']}>"
            if p["name"]
            else f"{p['role']:>12}: {p['email']}"
        )
    if detail["classification"]:
        click.echo(f"{'class':>12}: {', '.join(detail['classification'])}")
    for loc in detail["locations"]:
        click.echo(f"{'location':>12}: {loc['mailbox']} / {loc['folder']} ({loc['provider_id']})")
    if detail["attachments"]:
        for name, ctype, size in detail["attachments"]:
            click.echo(f"{'attachment':>12}: {name} ({ctype}, {size} bytes)")
    if detail["defects"]:
        click.echo(f"{'defects':>12}: {' '.join(detail['defects'])}")
    click.echo(f"{'snippet':>12}: {detail['snippet']}")
