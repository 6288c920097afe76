"""`mailmanager sync` (one pass over the mailboxes) and `mailmanager run` (the daemon)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from mailmanager import config as config_mod
from mailmanager import daemon, logs, spi
from mailmanager.cli.app import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    State,
    database,
    emit_json,
    fail,
)
from mailmanager.cli.terminal import safe
from mailmanager.config import workers as workers_config
from mailmanager.db import store
from mailmanager.services import queries
from mailmanager.sync import engine as sync


def _progress(enabled: bool) -> tuple[Callable[[str, int], None] | None, Callable[[], None]]:
    """A spinner per folder on stderr (and the function that stops it), when `enabled`."""
    if not enabled:
        return None, lambda: None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:>8,.0f} messages"),
        TimeElapsedColumn(),
        transient=True,
    )
    tasks: dict[str, Any] = {}
    bar.start()

    def update(folder: str, done: int) -> None:
        if folder not in tasks:
            tasks[folder] = bar.add_task(folder, total=None)
        bar.update(tasks[folder], completed=done)

    return update, bar.stop


def _run_pass(state: State, mailbox: str | None, as_json: bool) -> list[sync.SyncReport]:
    """Sync every mailbox (or `mailbox`) once and print the reports and the totals."""
    cfg = state.config()
    if mailbox is not None:
        try:
            cfg.mailbox(mailbox)
        except spi.ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
    update, done = _progress(not as_json and not state.quiet and sys.stderr.isatty())
    stop = threading.Event()
    with database(state, create=True) as factory:
        try:
            reports = daemon.run_once(cfg, factory, progress=update, stop=stop, only=mailbox)
        except KeyboardInterrupt:
            stop.set()
            done()
            fail("interrupted", EXIT_INTERRUPTED)
        except (config_mod.ConfigFileError, spi.ConfigError) as exc:
            done()
            fail(f"configuration error:\n{exc}", EXIT_CONFIG)
        finally:
            done()
        with store.session_scope(factory) as s:
            totals = queries.totals(s)
    if as_json:
        emit_json({"mailboxes": [r.as_dict() for r in reports], "totals": totals})
    else:
        _print_reports(reports, totals)
    return reports


def _print_reports(reports: list[sync.SyncReport], totals: dict[str, int]) -> None:
    for r in reports:
        head = f"{r.mailbox}: {r.status}"
        if r.error:
            head += f" — {r.error}"
        click.echo(head)
        for f in r.folders:
            extra = " (full rescan)" if f.rescanned else ""
            click.echo(
                f"  {f.folder:<30} {f.role:<8} fetched {f.fetched:>6}  new {f.new_messages:>6}"
                f"  removed {f.removed:>4}  quarantined {f.quarantined:>3}{extra}"
            )
        if r.excluded:
            click.echo(f"  not fetched (exclude_folders): {safe(', '.join(r.excluded))}")
        click.echo(
            f"  {r.total('new_messages')} new messages in {r.elapsed:.2f} s"
            f" ({r.total('fetched') / r.elapsed if r.elapsed else 0:.0f} fetched/s)"
        )
    click.echo(
        f"database: {totals['messages']} messages in {totals['threads']} threads "
        f"({totals['threads_with_replies']} with replies); {totals['auto_replies']} auto-replies, "
        f"{totals['bounces']} bounces, {totals['bulk']} list/bulk, "
        f"{totals['quarantined']} quarantined"
    )


@click.command("sync")
@click.option("--mailbox", "-m", metavar="NAME", help="Sync only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report (counts, elapsed).")
@click.pass_obj
def sync_cmd(state: State, mailbox: str | None, as_json: bool) -> None:
    """Sync mailboxes once: fetch what changed, parse, store and thread it."""
    reports = _run_pass(state, mailbox, as_json)
    if any(r.status == "error" for r in reports):
        sys.exit(EXIT_FAILED)


@click.command("run")
@click.option("--once", is_flag=True, help="Do one full pass of every job, then exit.")
@click.pass_obj
def run_cmd(state: State, once: bool) -> None:
    """Run the daemon: sync every mailbox on its schedule until SIGTERM/SIGINT.

    With --once, one pass and exit (for cron, first runs and demos).
    """
    if once:
        _run_once(state)
        return
    state.log_level = None
    cfg = state.config()
    enabled = sum(1 for mb in cfg.mailboxes if mb.enabled)
    disabled = len(cfg.mailboxes) - enabled
    mode = workers_config.engine_for(cfg.workers, cfg.database.url)
    with database(state, create=True) as factory:
        logs.announce(  # a JSON record with [logging] format = "json"
            f"mailmanager {'worker (procrastinate)' if mode == 'procrastinate' else 'daemon'}: "
            f"{enabled} mailboxes, every {cfg.sync.interval} s"
            + (f" ({disabled} disabled, not synced)" if disabled else "")
            + "; Ctrl-C to stop",
            action="start",
            engine=mode,
            mailboxes=enabled,
            disabled=disabled,
            interval=cfg.sync.interval,
        )
        try:
            if mode == "procrastinate":
                from mailmanager.workers import runner

                signum = runner.run_worker(cfg, factory)
            else:
                signum = daemon.run_forever(cfg, factory)
        except KeyboardInterrupt:  # Ctrl-C before the daemon's own handler was in place
            fail("interrupted", EXIT_INTERRUPTED)
    if signum == signal.SIGINT:
        sys.exit(EXIT_INTERRUPTED)  # as documented: 130 after Ctrl-C, 0 after SIGTERM


def _run_once(state: State) -> None:
    """`run --once`: a sync pass, then one pass of the follow-up jobs (reminders, digests)."""
    reports = _run_pass(state, None, as_json=False)
    with database(state) as factory:
        follow = daemon.follow_up_once(state.config(), factory, threading.Event())
        with store.session_scope(factory) as s:
            counts = queries.reminder_counts(s)
    changes = ", ".join(f"{k} {v}" for k, v in sorted(follow.reminder_changes.items()))
    click.echo(
        f"reminders: {follow.evaluated_threads} threads evaluated"
        + (f" ({changes})" if changes else "")
        + "; by status: "
        + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    )
    click.echo(
        f"digests queued {follow.digests}, immediate {follow.immediate}, "
        f"emails sent {follow.sent}"
        + (f" (outbox: {follow.outbox_error})" if follow.outbox_error else "")
    )
    if any(r.status == "error" for r in reports):
        sys.exit(EXIT_FAILED)
