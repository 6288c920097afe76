"""Setting up: `mailmanager init`, `mailmanager config check`, `mailmanager db upgrade`."""

from __future__ import annotations

from pathlib import Path

import click

from mailmanager import config as config_mod
from mailmanager import registry
from mailmanager.cli.app import EXIT_CONFIG, EXIT_DATABASE, EXIT_FAILED, State, database, fail
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
        target.write_text(config_mod.default_config_text(), encoding="utf-8")
    except config_mod.ConfigFileError as exc:
        fail(str(exc), EXIT_CONFIG)
    state.config_path = str(target)
    with database(state, create=True):
        pass
    click.echo(f"wrote {target}; edit it, then run `mailmanager --config {target} run --once`")


@click.group("config")
def config_group() -> None:
    """Inspect the configuration file."""


@config_group.command("check")
@click.pass_obj
def config_check(state: State) -> None:
    """Validate the file, resolve every secret reference, and report each problem with its fix."""
    cfg = state.config()
    try:
        cfg.check_secrets()
    except config_mod.ConfigFileError as exc:
        fail(f"configuration error in {state.config_file}:\n{exc}", EXIT_CONFIG)
    click.echo(
        f"{state.config_file}: OK ({len(cfg.users)} users, {len(cfg.mailboxes)} mailboxes, "
        f"connectors installed: {', '.join(registry.names())})"
    )


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
