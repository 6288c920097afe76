"""Setting up: `mailmanager init`, `mailmanager config check`, `mailmanager db upgrade`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from mailmanager import config as config_mod
from mailmanager import registry, spi
from mailmanager.cli import auth
from mailmanager.cli.app import EXIT_CONFIG, EXIT_DATABASE, EXIT_FAILED, State, database, fail
from mailmanager.config import filemodes
from mailmanager.config import workers as workers_config
from mailmanager.db import store


@click.command()
@click.argument("path", default="mailmanager.toml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: State, path: str, force: bool) -> None:
    """Write a starter configuration file at PATH and create its database."""
    target = Path(path)
    if target.exists() and not force:
        fail(f"{target} exists; pass --force to overwrite it", EXIT_FAILED)
    try:
        text = config_mod.starter_config_text()
    except config_mod.ConfigFileError as exc:
        fail(str(exc), EXIT_CONFIG)
    created = not target.parent.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(
            f"cannot write {target}: {exc.strerror or exc}; choose another path, or create "
            f"{target.parent} with write permission for you",
            EXIT_CONFIG,
        )
    if created:
        click.echo(f"created the folder {target.parent}")
    state.config_path = str(target)
    with database(state, create=True):
        pass
    hint = state.config_hint()
    if config_mod.PLACEHOLDER_PATH in text:
        click.echo(
            f'wrote {target}; set `path` of the mailbox "alice-archive" to a Maildir folder or '
            f"an mbox file, check with `mailmanager{hint} config check`, then run "
            f"`mailmanager{hint} run --once`"
        )
    else:
        click.echo(
            f"wrote {target} (it reads the sample mailbox {config_mod.SAMPLE_MAILBOX}); try it: "
            f"`mailmanager{hint} run --once`, then edit it for your own mailboxes"
        )


@click.group("config")
def config_group() -> None:
    """Inspect the configuration file."""


def _database_mode(cfg: config_mod.Config) -> str:
    url = make_url(cfg.database.url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        return f"{shown} (SQLite: one worker at a time)"
    return f"{shown} (PostgreSQL: several `mailmanager run` workers may share it)"


def _run_mode(cfg: config_mod.Config) -> str:
    """What `mailmanager run` will start, as `[workers] engine` decides."""
    mode = workers_config.engine_for(cfg.workers, cfg.database.url)
    why = "[workers] engine = " + repr(cfg.workers.engine)
    if mode == "procrastinate":
        return f"procrastinate worker, one of a cluster on PostgreSQL ({why})"
    return f"embedded daemon, one process with its own timers ({why})"


@config_group.command("check")
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to each enabled mailbox (as `mailbox test`) and to the SMTP server "
    "(log in, send nothing).",
)
@click.pass_obj
def config_check(state: State, connect: bool) -> None:
    """Validate the file as `run` would, resolve every secret reference, and report each
    problem with its fix; with --connect, also try every connection."""
    cfg = state.config()
    try:
        cfg.check_run()
    except config_mod.ConfigFileError as exc:
        fail(f"configuration error in {state.config_file}:\n{exc}", EXIT_CONFIG)
    enabled = [mb for mb in cfg.mailboxes if mb.enabled]
    disabled = len(cfg.mailboxes) - len(enabled)
    click.echo(
        f"{state.config_file}: OK ({len(cfg.users)} users, {len(enabled)} mailboxes to sync"
        + (f", {disabled} disabled (not checked)" if disabled else "")
        + f"; connectors installed: {', '.join(registry.names())})"
    )
    click.echo(f"database: {_database_mode(cfg)}")
    click.echo(f"run: {_run_mode(cfg)}")
    mailbox_options = [(mb.name, dict(mb.options)) for mb in cfg.mailboxes]
    for loose in filemodes.loose_files(
        cfg.database.url, cfg.base_dir, cfg.database.password_file, mailbox_options
    ):
        click.echo(loose.warning())
    if not connect:
        return
    failed = False
    with auth.database_if_any(state) as (factory, note):
        click.echo(f"  schema: {note or 'current'}")
        for mb in enabled:
            click.echo(f"mailbox {mb.name} ({mb.connector}):")
            try:
                steps = auth.connection_steps(cfg, mb, factory, note)
            except (spi.ConfigError, config_mod.ConfigFileError) as exc:
                steps = [spi.CheckStep("configuration", False, str(exc))]
            for step in steps:
                click.echo(auth.format_step(step, "  "))
            failed = failed or not all(s.ok for s in steps)
    smtp_step = _smtp_step(cfg)
    click.echo(f"smtp {cfg.smtp.host}:{cfg.smtp.effective_port} ({cfg.smtp.security}):")
    click.echo(auth.format_step(smtp_step, "  "))
    if failed or not smtp_step.ok:
        sys.exit(EXIT_FAILED)


def _smtp_step(cfg: config_mod.Config) -> spi.CheckStep:
    """Connect, EHLO, STARTTLS and log in as sending reminders does; send nothing."""
    from mailmanager.notify import smtp

    login = f"logged in as {cfg.smtp.username!r}" if cfg.smtp.username else "no login configured"
    try:
        with smtp.Connection(cfg.smtp) as conn:
            conn.open()
    except smtp.SendError as exc:
        return spi.CheckStep("connect, TLS, login", False, str(exc))
    return spi.CheckStep("connect, TLS, login", True, login)


@click.group("db")
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
