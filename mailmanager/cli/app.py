"""The `mailmanager` command line.

Exit codes (stable, for scripts):
  0  success
  1  the work ran but something failed (a mailbox could not be synced, a check failed)
  2  usage or configuration error (the message names the key and the fix)
  3  database error (unreachable, or the schema needs `mailmanager db upgrade`)
  130 interrupted (Ctrl-C / SIGINT)
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import __version__, daemon, logs, registry, spi
from mailmanager import config as config_mod
from mailmanager.db import lookup, store, tokens
from mailmanager.errors import MailmanagerError
from mailmanager.services import queries
from mailmanager.sync import engine as sync

EXIT_FAILED, EXIT_CONFIG, EXIT_DATABASE, EXIT_INTERRUPTED = 1, 2, 3, 130


class State:
    def __init__(self, config_path: str | None, verbose: int, quiet: bool) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self.quiet = quiet
        self._config: config_mod.Config | None = None
        self.log_level: str | None = "WARNING"

    @property
    def config_file(self) -> str:
        return self.config_path or os.environ.get("MAILMANAGER_CONFIG") or "mailmanager.toml"

    def config(self) -> config_mod.Config:
        if self._config is None:
            try:
                self._config = config_mod.load(self.config_file)
            except (config_mod.ConfigErrors, spi.ConfigError) as exc:
                fail(f"configuration error in {self.config_file}:\n{exc}", EXIT_CONFIG)
            # One-shot commands print their own results: only warnings go to the log
            # unless -v; the daemon (`run`) logs at the configured level.
            level = "DEBUG" if self.verbose else ("WARNING" if self.quiet else self.log_level)
            logs.setup(level or self._config.logging.level, self._config.logging.format)
        return self._config

    def config_hint(self) -> str:
        return f" --config {self.config_path}" if self.config_path else ""


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def database(state: State, create: bool = False) -> Iterator[sessionmaker[Session]]:
    """Open the configured database; a brand-new empty one gets its schema when `create`."""
    cfg = state.config()
    try:
        engine = store.make_engine(cfg.database.url_with_secret())
    except config_mod.ConfigErrors as exc:
        fail(f"configuration error:\n{exc}", EXIT_CONFIG)
    try:
        _check_or_create(engine, state, create)
        yield store.session_factory(engine)
    except store.SchemaError as exc:
        fail(str(exc), EXIT_DATABASE)
    except store.DatabaseError as exc:
        fail(f"{exc} (check [database] url in {state.config_file})", EXIT_DATABASE)
    finally:
        engine.dispose()


def _check_or_create(engine: Engine, state: State, create: bool) -> None:
    if create and store.current_revision(engine) is None:
        import sqlalchemy as sa

        if not sa.inspect(engine).get_table_names():
            store.create_schema(engine)
            return
    store.check_schema(engine, state.config_hint())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    "config_path",
    metavar="FILE",
    help="Configuration file (default: $MAILMANAGER_CONFIG, else ./mailmanager.toml).",
)
@click.option("-v", "--verbose", count=True, help="Log debug details to stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only log warnings and errors.")
@click.version_option(__version__, prog_name="mailmanager")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int, quiet: bool) -> None:
    """mailmanager syncs your team's mailboxes, threads every message, links it to
    contacts, companies and opportunities, and reminds salespeople about unanswered threads.

    Start with `mailmanager init`, edit the file it writes, then `mailmanager run`.
    Exit codes: 0 ok, 1 something failed, 2 configuration error, 3 database error.
    """
    ctx.obj = State(config_path, verbose, quiet)


@main.command()
@click.argument("path", default="mailmanager.toml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: State, path: str, force: bool) -> None:
    """Write a starter configuration file at PATH and create its database."""
    target = Path(path)
    if target.exists() and not force:
        fail(f"{target} exists; pass --force to overwrite it", EXIT_FAILED)
    try:
        target.write_text(config_mod.default_config_text(), encoding="utf-8")
    except config_mod.ConfigErrors as exc:
        fail(str(exc), EXIT_CONFIG)
    state.config_path = str(target)
    with database(state, create=True):
        pass
    click.echo(f"wrote {target}; edit it, then run `mailmanager --config {target} run --once`")


# --- config -----------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Inspect the configuration file."""


@config_group.command("check")
@click.pass_obj
def config_check(state: State) -> None:
    """Validate the file, resolve every secret reference, and report each problem with its fix."""
    cfg = state.config()
    try:
        cfg.check_secrets()
    except config_mod.ConfigErrors as exc:
        fail(f"configuration error in {state.config_file}:\n{exc}", EXIT_CONFIG)
    click.echo(
        f"{state.config_file}: OK ({len(cfg.users)} users, {len(cfg.mailboxes)} mailboxes, "
        f"connectors installed: {', '.join(registry.names())})"
    )


# --- db ---------------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(state: State) -> None:
    """Create the schema or migrate it to this version's revision."""
    cfg = state.config()
    engine = store.make_engine(cfg.database.url_with_secret())
    try:
        before, after = store.upgrade(engine)
    except store.DatabaseError as exc:
        fail(str(exc), EXIT_DATABASE)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


# --- sync and run -----------------------------------------------------------------------------


def _progress(enabled: bool) -> tuple[Callable[[str, int], None] | None, Callable[[], None]]:
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
        except (config_mod.ConfigErrors, spi.ConfigError) as exc:
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


@main.command("sync")
@click.option("--mailbox", "-m", metavar="NAME", help="Sync only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report (counts, elapsed).")
@click.pass_obj
def sync_cmd(state: State, mailbox: str | None, as_json: bool) -> None:
    """Sync mailboxes once: fetch what changed, parse, store and thread it."""
    reports = _run_pass(state, mailbox, as_json)
    if any(r.status == "error" for r in reports):
        sys.exit(EXIT_FAILED)


@main.command("run")
@click.option("--once", is_flag=True, help="Do one full pass of every job, then exit.")
@click.pass_obj
def run_cmd(state: State, once: bool) -> None:
    """Run the daemon: sync every mailbox on its schedule until SIGTERM/SIGINT.

    With --once, one pass and exit (for cron, first runs and demos).
    """
    if once:
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
        return
    state.log_level = None
    cfg = state.config()
    with database(state, create=True) as factory:
        click.echo(
            f"mailmanager daemon: {len(cfg.mailboxes)} mailboxes, every {cfg.sync.interval} s; "
            "Ctrl-C to stop",
            err=True,
        )
        daemon.run_forever(cfg, factory)


# --- status, threads, messages ----------------------------------------------------------------


@main.command()
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


@main.group("threads")
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


@main.group("messages")
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


# --- mailbox ----------------------------------------------------------------------------------


@main.group("mailbox")
def mailbox_group() -> None:
    """Check mailbox connections."""


@mailbox_group.command("test")
@click.argument("name")
@click.pass_obj
def mailbox_test(state: State, name: str) -> None:
    """Connect to mailbox NAME step by step (reach, TLS, login, folders) and diagnose failures."""
    cfg = state.config()
    with database(state) as factory:
        try:
            mb = cfg.mailbox(name)
            cls = registry.load(mb.connector)
            connector = cls(tokens.connector_config(cfg, mb, factory))
        except (spi.ConfigError, config_mod.ConfigErrors) as exc:
            fail(str(exc), EXIT_CONFIG)
        try:
            steps = list(connector.check())
            if all(s.ok for s in steps):
                steps += _cursor_steps(connector, factory, mb.name)
        except spi.ConfigError as exc:  # e.g. a token store without its secret key
            fail(str(exc), EXIT_CONFIG)
        finally:
            connector.close()
    for step in steps:
        mark = "ok  " if step.ok else "FAIL"
        click.echo(f"[{mark}] {step.step}" + (f": {step.detail}" if step.detail else ""))
    if not all(s.ok for s in steps):
        sys.exit(EXIT_FAILED)


def _cursor_steps(
    connector: spi.Connector, factory: sessionmaker[Session], mailbox: str
) -> list[spi.CheckStep]:
    """Try each folder's stored cursor once (at most one message read, nothing saved)."""
    import sqlalchemy as sa

    from mailmanager.db.models import Folder, Mailbox

    with store.session_scope(factory) as s:
        rows = s.execute(
            sa.select(Folder.remote_id, Folder.name, Folder.role, Folder.cursor)
            .join(Mailbox, Mailbox.id == Folder.mailbox_id)
            .where(Mailbox.name == mailbox, Folder.present, Folder.cursor.is_not(None))
        ).all()
    steps = []
    for remote_id, folder_name, role, cursor in rows:
        remote = spi.RemoteFolder(remote_id, folder_name, spi.FolderRole(role))
        try:
            connector.fetch_changes(remote, cursor, 1)
            steps.append(spi.CheckStep(f"cursor {folder_name}", True, "still valid"))
        except spi.CursorExpiredError as exc:
            detail = f"expired ({exc}); the next sync rescans this folder, keeping links"
            steps.append(spi.CheckStep(f"cursor {folder_name}", True, detail))
        except spi.ConnectorError as exc:
            steps.append(spi.CheckStep(f"cursor {folder_name}", False, str(exc)))
    return steps


def run() -> None:  # pragma: no cover - console entry for `python -m mailmanager`
    try:
        main()
    except MailmanagerError as exc:
        fail(str(exc), EXIT_FAILED)


# The command modules import this one for its helpers, so they are registered once it is defined.
from mailmanager.cli import auth, crm, matching, notify, reminders, timeline  # noqa: E402

for _area in (crm, matching, timeline, reminders, notify, auth):
    _area.register(main)
