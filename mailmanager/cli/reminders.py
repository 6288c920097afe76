"""`mailmanager reminders ...`: list reminders, snooze / dismiss / done, the per-thread
"expects a reply" override, and `scan` (an evaluation pass at a given time, for admins and
tests; `--dry-run` shows what it would do and writes nothing).

`reminders preview` (the notifier's digest preview) is defined with the notifier's other
commands in `cli/notify.py`; this group names it, and imports it when it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from mailmanager.cli import app as cli
from mailmanager.cli.lazy import Lazy, LazyGroup
from mailmanager.cli.terminal import safe
from mailmanager.db import configrows, models, store
from mailmanager.reminders import actions as reminder_actions
from mailmanager.reminders import evaluation as reminders
from mailmanager.reminders.actions import ReminderActionError


def _now(value: str | None) -> datetime:
    if value is None:
        return models.utcnow()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-11-05T09:00:00+01:00)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _iso(t: datetime | None) -> str:
    return t.astimezone(UTC).isoformat(timespec="minutes") if t else "-"


@click.group(
    "reminders",
    cls=LazyGroup,
    lazy_commands={
        "preview": Lazy(
            "mailmanager.cli.notify:preview",
            "Print the digest USER would get now (plain text by default).",
        )
    },
)
def reminders_group() -> None:
    """Follow-up reminders (relances): list, snooze, dismiss, done, expect, scan."""


@reminders_group.command("list")
@click.option("--user", "-u", metavar="EMAIL", help="Only this user's reminders.")
@click.option(
    "--status",
    "-s",
    type=click.Choice(reminder_actions.STATUSES),
    help="Only reminders with this status.",
)
@click.option("--limit", default=200, show_default=True, help="How many reminders at most.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_cmd(
    state: cli.State, user: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List reminders, soonest due first."""
    with cli.database(state) as factory, store.session_scope(factory) as s:
        lines = reminder_actions.list_reminders(s, user, status, limit)
    if as_json:
        cli.emit_json([line.__dict__ for line in lines])
        return
    if not lines:
        click.echo("no reminders")
    for r in lines:
        where = f"thread {r.thread_id}" if r.thread_id else (r.target or "-")
        esc = f" (about {r.escalated_from})" if r.escalated_from else ""
        click.echo(
            f"#{r.id:<5} {r.status:<9} {r.kind:<26} due {_iso(r.due_at)}  {r.user}{esc}  "
            f"{safe(where)}  {safe(r.subject or r.reason)}"
        )
        about = [
            f"{label}: {value}"
            for label, value in (
                ("contact", r.contact or r.contact_email),
                ("company", r.company),
                ("opportunity", r.opportunity),
            )
            if value
        ]
        if about:
            click.echo(f"       {safe('  '.join(about))}")


def _act(state: cli.State, action: Any) -> Any:
    try:
        with cli.database(state) as factory, store.session_scope(factory) as s:
            return action(s)
    except ReminderActionError as exc:
        cli.fail(str(exc), cli.EXIT_FAILED)


@reminders_group.command("snooze")
@click.argument("reminder_id", type=int)
@click.argument("duration")
@click.pass_obj
def snooze_cmd(state: cli.State, reminder_id: int, duration: str) -> None:
    """Snooze reminder REMINDER_ID for DURATION: 3h (hours), 2d (days), 3bd (business days)."""
    cfg = state.config()
    until = _act(
        state, lambda s: reminder_actions.snooze(s, cfg, reminder_id, duration, models.utcnow())
    )
    click.echo(f"reminder #{reminder_id} snoozed until {_iso(until)}")


@reminders_group.command("dismiss")
@click.argument("reminder_id", type=int)
@click.pass_obj
def dismiss_cmd(state: cli.State, reminder_id: int) -> None:
    """Dismiss a reminder: no reply is expected (a new message starts a new one)."""
    _act(state, lambda s: reminder_actions.close(s, reminder_id, "dismissed"))
    click.echo(f"reminder #{reminder_id} dismissed")


@reminders_group.command("done")
@click.argument("reminder_id", type=int)
@click.pass_obj
def done_cmd(state: cli.State, reminder_id: int) -> None:
    """Mark a reminder done: it was handled (by phone, in person...)."""
    _act(state, lambda s: reminder_actions.close(s, reminder_id, "done"))
    click.echo(f"reminder #{reminder_id} done")


@reminders_group.command("expect")
@click.argument("thread_id", type=int)
@click.argument("value", type=click.Choice(reminder_actions.EXPECT))
@click.pass_obj
def expect_cmd(state: cli.State, thread_id: int, value: str) -> None:
    """Say whether our last message on THREAD_ID expects a reply: always, never, or auto
    (the heuristic: a question or a request, not a thank-you)."""
    cfg = state.config()
    report = _act(
        state,
        lambda s: reminder_actions.set_expect(s, cfg, thread_id, value, models.utcnow()),
    )
    changes = ", ".join(f"{n} {k}" for k, n in report.counts.items()) or "no change"
    click.echo(f"thread {thread_id}: expects a reply = {value}; {changes}")


@reminders_group.command("scan")
@click.option("--now", "now_text", metavar="ISO8601", help="Evaluate as of this time.")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.pass_obj
def scan_cmd(state: cli.State, now_text: str | None, dry_run: bool, as_json: bool) -> None:
    """Run one evaluation pass: create, move, repeat, escalate and cancel reminders."""
    now = _now(now_text)
    cfg = state.config()
    with cli.database(state) as factory:
        s = factory()
        try:
            configrows.ensure_config_rows(s, cfg)
            s.flush()
            report = reminders.evaluate(s, cfg, now)
            if dry_run:
                s.rollback()
            else:
                s.commit()
        finally:
            s.close()
    if as_json:
        cli.emit_json(report.as_dict() | {"dry_run": dry_run})
        return
    verb = "would change" if dry_run else "changed"
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items())) or "nothing"
    click.echo(
        f"evaluated {report.threads} threads and {report.targets} opportunities/clients "
        f"as of {_iso(now)} in {report.elapsed:.2f}s; {verb}: {counts}"
    )
    for a in report.actions:
        where = f"thread {a.thread_id}" if a.thread_id else a.target
        click.echo(f"  {a.action:<9} {a.kind:<26} {a.user}  {where}  due {_iso(a.due_at)}")
