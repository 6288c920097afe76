"""A mailbox's access to its provider: `mailmanager auth MAILBOX` (OAuth consent),
`mailmanager mailbox test NAME` (connect step by step: `services.mailboxcheck`, which the
web admin page runs too) and `mailmanager secrets new-key|rotate`.

Tokens obtained by `auth` go to the encrypted token store (`mailmanager.db.tokens`), so a
secret key must be configured first; `auth` checks that before sending anyone to a
consent page.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager import spi
from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, fail
from mailmanager.db import store, tokens
from mailmanager.services import mailboxcheck

# The steps of `mailbox test`, also run by `config check --connect` (cli.admin) and the web.
connection_steps = mailboxcheck.connection_steps


@click.command("auth")
@click.argument("mailbox")
@click.pass_obj
def auth(state: State, mailbox: str) -> None:
    """Give mailbox MAILBOX access to its provider (OAuth consent); stores the token."""
    cfg = state.config()
    with database(state) as factory:
        try:
            mb = cfg.mailbox(mailbox)
            connector = tokens.build_connector(cfg, mb, factory)
        except (spi.ConfigError, config_mod.ConfigFileError) as exc:
            fail(str(exc), EXIT_CONFIG)
        try:
            if not isinstance(connector, spi.Authorizable):
                click.echo(
                    f"mailbox {mailbox!r} uses the {mb.connector!r} connector, which needs no "
                    "consent: its credentials come from the configuration file."
                )
                return
            tokens.cipher()  # fail now, not after the consent screen, when no key is set
            connector.authorize(click.echo)
        except spi.ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        except spi.ConnectorError as exc:
            fail(f"authorization failed: {exc}", EXIT_FAILED)
        finally:
            connector.close()


@click.group("mailbox")
def mailbox_group() -> None:
    """Check mailbox connections."""


@mailbox_group.command("test")
@click.argument("name")
@click.pass_obj
def mailbox_test(state: State, name: str) -> None:
    """Connect to mailbox NAME step by step (reach, TLS, login, folders) and diagnose failures."""
    cfg = state.config()
    try:
        mb = cfg.mailbox(name)
    except spi.ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    with database_if_any(state) as (factory, note):
        try:
            steps = connection_steps(cfg, mb, factory, note)
        except (spi.ConfigError, config_mod.ConfigFileError) as exc:
            fail(f"configuration error in {state.config_file}:\n{exc}", EXIT_CONFIG)
    for step in steps:
        click.echo(format_step(step))
    if not all(s.ok for s in steps):
        sys.exit(EXIT_FAILED)


def format_step(step: spi.CheckStep, indent: str = "") -> str:
    mark = "ok  " if step.ok else "FAIL"
    return f"{indent}[{mark}] {step.step}" + (f": {step.detail}" if step.detail else "")


@contextmanager
def database_if_any(state: State) -> Iterator[tuple[sessionmaker[Session] | None, str]]:
    """The database, for stored tokens and cursors, without requiring its schema to be
    current (testing a connection needs no migration): (factory, "") when it is current;
    (factory or None, why the cursor step is skipped) otherwise. The factory is None when
    the database cannot be opened or has no mailmanager tables at all."""
    cfg = state.config()
    try:
        url = cfg.database.url_with_secret()
    except config_mod.ConfigFileError as exc:
        fail(f"configuration error in {state.config_file}:\n{exc}", EXIT_CONFIG)
    engine = store.make_engine(url)
    factory: sessionmaker[Session] | None = store.session_factory(engine)
    note = ""
    try:
        try:
            store.check_schema(engine, state.config_hint())
        except store.SchemaError as exc:
            note = f"skipped: {exc}"
            if store.current_revision(engine) is None:
                factory = None
        except store.DatabaseError as exc:
            factory, note = None, f"skipped: {exc}"
        yield factory, note
    finally:
        engine.dispose()


@click.group("secrets")
def secrets_group() -> None:
    """Manage the key that encrypts stored OAuth tokens."""


@secrets_group.command("new-key")
def new_key() -> None:
    """Print a new secret key (Fernet) for MAILMANAGER_SECRET_KEY."""
    key = tokens.new_key()
    click.echo(key)
    click.echo(
        f"\nKeep it secret and out of the config file: export {tokens.ENV_KEY}={key}\n"
        f"or write it, one key per line, to a file of mode 600 named by {tokens.ENV_KEY_FILE}.\n"
        "To rotate: list the new key first and the old ones after it, run "
        "`mailmanager secrets rotate`, then drop the old keys.",
        err=True,
    )


@secrets_group.command("rotate")
@click.pass_obj
def rotate(state: State) -> None:
    """Re-encrypt every stored token under the newest key (the first one listed)."""
    with database(state) as factory:
        try:
            count = tokens.rotate(factory)
        except spi.ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
    click.echo(f"re-encrypted {count} token(s) under the newest key")
