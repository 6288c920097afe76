"""Notification commands: `reminders preview`, `digest send`, `outbox list|flush|retry`.

`preview` is a command of the `reminders` group (`cli/reminders.py` names it); `digest`
and `outbox` are groups of `mailmanager` itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime

import click
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.cli import zones
from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import models, store
from mailmanager.notify import notifier as notify
from mailmanager.notify import outbox
from mailmanager.services import queries

STATUSES = ("pending", "sending", "sent", "dead")


def _clock(now: str | None) -> Callable[[], datetime]:
    if now is None:
        return models.utcnow
    try:
        at = datetime.fromisoformat(now)
    except ValueError:
        fail(f"--now {now!r} is not an ISO date-time (e.g. 2026-11-03T08:30:00+01:00)", 2)
    fixed = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return lambda: fixed


@click.command("preview")
@click.option("--user", "-u", "user", required=True, metavar="EMAIL", help="Whose digest.")
@click.option("--now", metavar="ISO", help="Pretend it is this time (UTC unless an offset).")
@click.option("--html", "as_html", is_flag=True, help="Print the HTML part, not the text.")
@click.pass_obj
def preview(state: State, user: str, now: str | None, as_html: bool) -> None:
    """Print the digest USER would get now (plain text by default). Writes nothing."""
    cfg = state.config()
    with database(state) as factory:
        try:
            rendered = notify.preview(cfg, factory, user, _clock(now)())
        except notify.UnknownUserError as exc:
            fail(str(exc), EXIT_CONFIG)
    if rendered is None:
        click.echo(f"nothing due for {user}", err=True)
        return
    click.echo(f"Subject: {safe(rendered.subject)}\n")
    click.echo(safe(rendered.html if as_html else rendered.text, lines=True), nl=False)


@click.group("digest")
def digest_group() -> None:
    """Send reminder digests now (for cron users; the daemon does it on its own)."""


def _flush(state: State, factory: sessionmaker[Session], now: str | None) -> outbox.FlushReport:
    cfg = state.config()
    try:
        return outbox.flush(cfg, factory, clock=_clock(now))
    except config_mod.ConfigFileError as exc:
        fail(f"configuration error:\n{exc}", EXIT_CONFIG)


def _print_flush(state: State, report: outbox.FlushReport) -> None:
    counts = [f"{len(report.sent)} sent"]
    for ids, what in (
        (report.dead, "dead"),
        (report.reconciled, "found already sent"),
        (report.possible_duplicates, "possible duplicates"),
        (report.waiting, "waiting for a sync to tell whether they went out"),
    ):
        if ids:
            counts.append(f"{len(ids)} {what}")
    line = "outbox: " + ", ".join(counts)
    if report.retry_later:
        tz = zones.for_mailboxes(state.config(), [], None)
        line += (
            f"; {report.retry_later} waiting for retry at {zones.show(report.next_retry_at, tz)}"
            + (f" (last error: {report.next_retry_error})" if report.next_retry_error else "")
        )
    click.echo(line)
    if report.error:
        click.echo(f"  server unreachable: {report.error}")


@digest_group.command("send")
@click.option("--user", "-u", "users", multiple=True, metavar="EMAIL", help="Only this user.")
@click.option("--now", metavar="ISO", help="Choose the slot as if it were this time.")
@click.option("--force", is_flag=True, help="Send now even if no digest slot is open.")
@click.option("--no-flush", is_flag=True, help="Queue the digests, do not send them.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.pass_obj
def digest_send(
    state: State,
    users: tuple[str, ...],
    now: str | None,
    force: bool,
    no_flush: bool,
    as_json: bool,
) -> None:
    """Queue the digest of the slot open now (per user schedule), then send the outbox.

    Exit code 1 when an email could not be sent (it stays queued and is retried later).
    """
    cfg = state.config()
    clock = _clock(now)
    with database(state, create=True) as factory:
        try:
            report = notify.run(cfg, factory, clock(), users=users, force=force)
        except notify.UnknownUserError as exc:
            fail(str(exc), EXIT_CONFIG)
        flushed = None if no_flush else _flush(state, factory, None)  # real clock
    if as_json:
        emit_json({"notify": report.as_dict(), "outbox": flushed.as_dict() if flushed else None})
    else:
        for d in report.digests + report.immediate:
            click.echo(f"{d['user']}: {d['items']} reminders queued ({d['slot']})")
        for why in report.skipped:
            click.echo(f"skipped {why}")
        if flushed is not None:
            _print_flush(state, flushed)
    if flushed is not None and (flushed.retried or flushed.dead or flushed.error):
        sys.exit(EXIT_FAILED)


@click.group("outbox")
def outbox_group() -> None:
    """Inspect and send the queue of reminder emails."""


@outbox_group.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--limit", default=50, show_default=True, help="How many rows, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def outbox_list(state: State, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """The newest outbox emails with their status, attempts and last error."""
    with database(state) as factory, store.session_scope(factory) as s:
        rows = queries.outbox_rows(s, statuses, limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        flag = " (possible duplicate)" if r["possible_duplicate"] else ""
        when = r["sent_at"] or r["next_attempt_at"] or "-"
        click.echo(
            f"{r['id']:>6}  {r['status']:<8} {r['attempts']:>2}x  {when[:19]:<19}  "
            f"{r['recipient']:<28} {safe(r['subject'])[:50]}{flag}"
        )
        if r["last_error"] and r["status"] != "sent":
            click.echo(f"        last error: {r['last_error']}")


@outbox_group.command("flush")
@click.option("--now", metavar="ISO", help="Pretend it is this time (UTC unless an offset).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.pass_obj
def outbox_flush(state: State, now: str | None, as_json: bool) -> None:
    """Send every due email now. Exit code 1 when one could not be sent."""
    with database(state) as factory:
        report = _flush(state, factory, now)
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_flush(state, report)
    if report.retried or report.dead or report.error:
        sys.exit(EXIT_FAILED)


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.pass_obj
def outbox_retry(state: State, ids: tuple[int, ...]) -> None:
    """Queue dead (or waiting) emails IDS for a new attempt at the next flush."""
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            for row_id in ids:
                outbox.retry(s, row_id, models.utcnow())
        except outbox.OutboxError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(f"queued {len(ids)} email(s); `mailmanager outbox flush` sends them now")
