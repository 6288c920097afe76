"""What the sync stored: `mailmanager status`, `threads list|show`, `messages show`."""

from __future__ import annotations

import sys
from datetime import tzinfo
from typing import Any

import click

from mailmanager.cli import privacy as cli_privacy
from mailmanager.cli import zones
from mailmanager.cli.app import EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import lookup, models, store
from mailmanager.services import access, cluster, queries
from mailmanager.services import privacy as privacy_svc


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(state: State, as_json: bool) -> None:
    """Show each mailbox's last sync and error, database counts, reminders and the outbox."""
    with database(state) as factory, store.session_scope(factory) as s:
        data: dict[str, Any] = {
            "mailboxes": _with_config(state, queries.mailbox_status(s)),
            "totals": queries.totals(s),
            "reminders": queries.reminder_counts(s),
            "outbox": queries.outbox_backlog(s),
            "cluster": cluster.cluster_status(
                s, models.utcnow(), state.config().workers.stalled_seconds
            ),
        }
    if as_json:
        emit_json(data)
        return
    for mb in data["mailboxes"]:
        state_ = (
            "error" if mb["last_error"] else ("never synced" if not mb["last_sync_at"] else "ok")
        )
        if not mb["enabled"]:
            state_ = f"disabled (not synced; enabled = false); {state_}"
        click.echo(
            f"{mb['name']} ({mb['connector']}): {state_}; last sync {mb['last_sync_at'] or '-'}; "
            f"{mb['messages']} messages in {mb['folders']} folders"
        )
        if mb["last_error"]:
            click.echo(f"  last error: {safe(mb['last_error'])}")
        if mb.get("excluded"):
            click.echo(f"  not fetched (exclude_folders): {safe(', '.join(mb['excluded']))}")
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
    _echo_cluster(data["cluster"])


def _echo_cluster(c: dict[str, Any]) -> None:
    """The workers part of `status` (see `services.cluster`)."""
    for run in c["running"]:
        click.echo(
            f"syncing {run['mailbox']}: worker {run['worker'] or '?'} since {run['started_at']}"
        )
    for held in c["holders"]:
        click.echo(f"lease {held['mailbox']}: held by {held['owner']} until {held['until']}")
    if c["workers"] is None:
        return
    for w in c["workers"]:
        where = (
            f"host {w['host']}, pid {w['pid']}, started {w['started_at']}, "
            f"queues {','.join(w['queues'])}"
            if w["host"] is not None
            else "host unknown"  # not started by `mailmanager run`
        )
        click.echo(
            f"worker {w['id']} {safe(w['name'] or '')} ({safe(where)}): {w['state']}, last "
            f"heartbeat {w['last_heartbeat'] or '-'}; "
            f"running: {safe(', '.join(w['running'])) or 'nothing'}"
        )
    j = c["jobs"]
    click.echo(
        f"jobs: {j['queued']} queued, {j['running']} running, {j['stalled']} stalled, "
        f"{j['failed']} failed"
    )


def _with_config(state: State, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored mailboxes, each `enabled` as the configuration says now (the stored flag
    is only updated by a sync), and the configured mailboxes never synced yet."""
    configured = {mb.name: mb for mb in state.config().mailboxes}
    for row in rows:
        if row["name"] in configured:
            row["enabled"] = configured[row["name"]].enabled
            row["excluded"] = list(configured[row["name"]].exclude_folders)
    stored = {row["name"] for row in rows}
    for name, mb in configured.items():
        if name not in stored:
            rows.append(
                {
                    "name": name,
                    "connector": mb.connector,
                    "enabled": mb.enabled,
                    "last_sync_at": None,
                    "last_success_at": None,
                    "synced_until": None,
                    "last_error": None,
                    "folders": 0,
                    "messages": 0,
                    "quarantined": 0,
                }
            )
    return sorted(rows, key=lambda row: str(row["name"]))


@click.group("threads")
def threads_group() -> None:
    """List and show conversations."""


@threads_group.command("list")
@click.option("--limit", default=30, show_default=True, help="How many threads.")
@click.option("--mailbox", "-m", metavar="NAME", help="Only threads with mail in this mailbox.")
@click.option("--search", "-s", metavar="TEXT", help="Only subjects containing TEXT.")
@click.option("--user", metavar="EMAIL", help="Show threads private to this user (their owner).")
@zones.tz_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def threads_list(
    state: State,
    limit: int,
    mailbox: str | None,
    search: str | None,
    user: str | None,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """The most recently active threads first; a thread private to another user than
    --user shows as "(private)", without its subject."""
    with database(state) as factory, store.session_scope(factory) as s:
        rows = queries.list_threads(s, limit=limit, mailbox=mailbox, search=search)
        hidden = privacy_svc.hidden_from(s, user, [r.id for r in rows])
    if as_json:
        mask = {"subject": privacy_svc.PRIVATE, "private": True}
        emit_json([{**r.__dict__, **(mask if r.id in hidden else {})} for r in rows])
        return
    tz = zones.for_mailboxes(state.config(), [mailbox] if mailbox else [], tz_name)
    for r in rows:
        last = zones.show(r.last_at, tz)
        click.echo(
            f"{r.id:>6}  {last:<22}  {r.message_count:>3} msg  "
            f"{r.last_direction or '-':<8}  "
            f"{privacy_svc.PRIVATE if r.id in hidden else safe(r.subject)[:60]}"
        )


@threads_group.command("show")
@click.argument("thread_id", type=int)
@click.option("--user", metavar="EMAIL", help="Show threads private to this user (their owner).")
@cli_privacy.actor_option
@zones.tz_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def threads_show(
    state: State,
    thread_id: int,
    user: str | None,
    actor: str | None,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """One thread and its messages in order, each with its id (for `explain MESSAGE`).
    A thread private to another user than --user shows as "(private)". Audited."""
    with database(state) as factory, store.session_scope(factory) as s:
        data = queries.thread_detail(s, thread_id)
        mailboxes = queries.thread_mailboxes(s, thread_id) if data is not None else []
        private = data is not None and access.thread_is_private_for(s, user, thread_id)
        if data is not None and not private:
            target = f"thread:{thread_id}"
            privacy_svc.record_read(s, cli_privacy.actor_of(actor), "thread.read", target)
    if data is None:
        fail(f"no thread {thread_id}; see `mailmanager threads list`", EXIT_FAILED)
    if private:
        if as_json:
            emit_json({"id": thread_id, "private": True, "message_count": data["message_count"]})
        else:
            click.echo(
                f"thread {thread_id}: {privacy_svc.PRIVATE} ({data['message_count']} messages)"
            )
        return
    if as_json:
        emit_json(data)
        return
    tz = zones.for_mailboxes(state.config(), mailboxes, tz_name)
    click.echo(f"thread {data['id']}: {safe(data['subject'])} ({data['message_count']} messages)")
    same_id: dict[str, list[int]] = {}  # a reused or forged Message-ID: kept apart, shown
    for m in data["messages"]:
        same_id.setdefault(m["message_id"], []).append(m["id"])
    for m in data["messages"]:
        labels = list(m["classification"])
        others = [f"#{i}" for i in same_id[m["message_id"]] if i != m["id"]]
        if others:
            labels.append(f"same Message-ID as {' '.join(others)}")
        tags = f" [{', '.join(labels)}]" if labels else ""
        click.echo(
            f"  #{m['id']:<6} {zones.show(m['sent_at'], tz)}  {m['direction']:<8} "
            f"{safe(m['from'])}{tags}"
        )
        click.echo(f"          {safe(m['subject'])[:70]}")
        if m["snippet"]:
            click.echo(f"          {safe(m['snippet'])[:100]}")


@click.group("messages")
def messages_group() -> None:
    """Inspect stored messages."""


@messages_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--raw", is_flag=True, help="Print the raw RFC 822 bytes as stored.")
@click.option("--user", metavar="EMAIL", help="Show threads private to this user (their owner).")
@cli_privacy.actor_option
@zones.tz_option
@click.pass_obj
def messages_show(
    state: State,
    ref: str,
    as_json: bool,
    raw: bool,
    user: str | None,
    actor: str | None,
    tz_name: str | None,
) -> None:
    """A message by database id or Message-ID: headers, participants, where it lives.
    Audited; a message of a thread private to another user than --user is not shown."""
    with database(state) as factory, store.session_scope(factory) as s:
        message = lookup.find_message(s, ref)
        if message is None:
            fail(f"no message {ref!r} (give a database id or a Message-ID)", EXIT_FAILED)
        if message.thread_id and access.thread_is_private_for(s, user, message.thread_id):
            fail(
                f"message {message.id} is in thread {message.thread_id}, private to its owner "
                "(pass --user OWNER to see it as them)",
                EXIT_FAILED,
            )
        action = "message.read_raw" if raw else "message.read"
        privacy_svc.record_read(s, cli_privacy.actor_of(actor), action, f"message:{message.id}")
        s.commit()  # the audit entry stays even when the bytes cannot be shown
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
    mailboxes = [loc["mailbox"] for loc in detail["locations"]]
    _print_message(detail, zones.for_mailboxes(state.config(), mailboxes, tz_name))


def _print_message(detail: dict[str, Any], tz: tzinfo) -> None:
    for key in ("id", "message_id", "thread_id", "sent_at", "direction", "from", "subject"):
        value = zones.show(detail[key], tz) if key == "sent_at" else detail[key]
        click.echo(f"{key:>12}: {safe(value)}")
    for p in detail["participants"]:
        click.echo(
            f"{p['role']:>12}: {safe(p['name'])} <{safe(p['email'])}>"
            if p["name"]
            else f"{p['role']:>12}: {safe(p['email'])}"
        )
    if detail["classification"]:
        click.echo(f"{'class':>12}: {', '.join(detail['classification'])}")
    for loc in detail["locations"]:
        click.echo(
            f"{'location':>12}: {loc['mailbox']} / {safe(loc['folder'])} "
            f"({safe(loc['provider_id'])})"
        )
    if detail["attachments"]:
        for name, ctype, size in detail["attachments"]:
            click.echo(f"{'attachment':>12}: {safe(name)} ({safe(ctype)}, {size} bytes)")
    if detail["defects"]:
        click.echo(f"{'defects':>12}: {' '.join(detail['defects'])}")
    for other in detail["same_message_id"]:
        click.echo(
            f"{'warning':>12}: another message with the same Message-ID exists: #{other} "
            f"(compare them: one may be forged)"
        )
    click.echo(f"{'snippet':>12}: {safe(detail['snippet'])}")


@threads_group.command("private")
@click.argument("thread_id", metavar="ID", type=int)
@click.option("--user", required=True, metavar="EMAIL", help="The owner marking it (a user).")
@click.option("--off", is_flag=True, help="Make the thread visible again.")
@cli_privacy.actor_option
@click.pass_obj
def threads_private(state: State, thread_id: int, user: str, off: bool, actor: str | None) -> None:
    """Mark a thread private: only USER, the owner of a mailbox holding it, sees it
    (elsewhere it shows as "(private)"); --off makes it visible again. Audited."""
    cfg = state.config()
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            privacy_svc.set_private(s, cfg, thread_id, user, not off, cli_privacy.actor_of(actor))
        except privacy_svc.PrivacyError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(f"thread {thread_id} is {'visible again' if off else 'private to ' + user}")
