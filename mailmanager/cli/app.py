"""The `mailmanager` command line: the `main` group, its commands, and the helpers they share.

Exit codes (stable, for scripts):
  0  success
  1  the work ran but something failed (a mailbox could not be synced, a check failed)
  2  usage or configuration error (the message names the key and the fix)
  3  database error (unreachable, or the schema needs `mailmanager db upgrade`)
  130 interrupted (Ctrl-C / SIGINT)

`COMMANDS` lists every command of `main` and the module that defines it; a command's
module is imported when the command runs (see `lazy`). Every invocation imports this
module, and `mailmanager --help` nothing more, so it loads the configuration and database
modules (SQLAlchemy with them) only when a command asks for them (`State.config`,
`database`): `--help` takes 0.06 s instead of 0.5 s.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mailmanager import __version__, logs, spi
from mailmanager.cli.lazy import Lazy, LazyGroup
from mailmanager.errors import MailmanagerError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from mailmanager import config as config_mod

EXIT_FAILED, EXIT_CONFIG, EXIT_DATABASE, EXIT_INTERRUPTED = 1, 2, 3, 130


class State:
    """The global options, and the configuration they name once a command loads it."""

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
        """The configuration file, loaded once; a broken file ends the command (exit 2)."""
        from mailmanager import config as config_mod  # not at start-up: see the docstring

        if self._config is None:
            try:
                self._config = config_mod.load(self.config_file)
            except (config_mod.ConfigFileError, spi.ConfigError) as exc:
                if logs.format_in(self.config_file) == "json":  # JSON lines from the start
                    logs.setup("ERROR", "json")
                fail(f"configuration error in {self.config_file}:\n{exc}", EXIT_CONFIG)
            # One-shot commands print their own results: only warnings go to the log
            # unless -v; the daemon (`run`) logs at the configured level.
            level = "DEBUG" if self.verbose else ("WARNING" if self.quiet else self.log_level)
            logs.setup(level or self._config.logging.level, self._config.logging.format)
        return self._config

    def config_hint(self) -> str:
        return f" --config {self.config_path}" if self.config_path else ""


def fail(message: str, code: int) -> NoReturn:
    """Print `error: message` on stderr (a JSON log record with `[logging] format = "json"`)
    and exit with `code`."""
    if logs.is_json():
        logs.error(message, exit_code=code)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def database(state: State, create: bool = False) -> Iterator[sessionmaker[Session]]:
    """The configured database (`store.open_database`), its errors ending the command:
    exit 2 for a secret that cannot be resolved, 3 for a database that cannot be opened or
    whose schema is not current. A brand-new empty database gets its schema when `create`."""
    from mailmanager import config as config_mod  # not at start-up: see the docstring
    from mailmanager.db import store

    cfg = state.config()
    try:
        url = cfg.database.url_with_secret()
    except config_mod.ConfigFileError as exc:
        fail(f"configuration error:\n{exc}", EXIT_CONFIG)
    try:
        with store.open_database(url, create, state.config_hint()) as factory:
            yield factory
    except store.SchemaError as exc:
        fail(str(exc), EXIT_DATABASE)
    except store.DatabaseError as exc:
        fail(f"{exc} (check [database] url in {state.config_file})", EXIT_DATABASE)


# Each command of `main`, where it is defined, and the first sentence of its help (what
# `mailmanager --help` lists without importing the module).
COMMANDS = {
    # setting up
    "init": Lazy(
        "mailmanager.cli.admin:init",
        "Write a starter configuration file at PATH and create its database.",
    ),
    "config": Lazy("mailmanager.cli.admin:config_group", "Inspect the configuration file."),
    "db": Lazy("mailmanager.cli.admin:db_group", "Manage the database schema."),
    "auth": Lazy(
        "mailmanager.cli.auth:auth",
        "Give mailbox MAILBOX access to its provider (OAuth consent); stores the token.",
    ),
    "mailbox": Lazy("mailmanager.cli.auth:mailbox_group", "Check mailbox connections."),
    "secrets": Lazy(
        "mailmanager.cli.auth:secrets_group", "Manage the key that encrypts stored OAuth tokens."
    ),
    # syncing, and what it stored
    "sync": Lazy(
        "mailmanager.cli.syncing:sync_cmd",
        "Sync mailboxes once: fetch what changed, parse, store and thread it.",
    ),
    "run": Lazy(
        "mailmanager.cli.syncing:run_cmd",
        "Run the daemon: sync every mailbox on its schedule until SIGTERM/SIGINT.",
    ),
    "status": Lazy(
        "mailmanager.cli.browse:status",
        "Show each mailbox's last sync and error, database counts, reminders and the outbox.",
    ),
    "threads": Lazy("mailmanager.cli.browse:threads_group", "List and show conversations."),
    "quarantine": Lazy(
        "mailmanager.cli.quarantine:quarantine_group",
        "List and show the items a sync kept aside because they are not e-mail messages.",
    ),
    "messages": Lazy("mailmanager.cli.browse:messages_group", "Inspect stored messages."),
    # CRM records
    "companies": Lazy(
        "mailmanager.cli.crm:companies_group", "Companies (accounts) and their mail domains."
    ),
    "contacts": Lazy(
        "mailmanager.cli.crm:contacts_group",
        "Contacts (people at customers and prospects) and their addresses.",
    ),
    "opportunities": Lazy(
        "mailmanager.cli.crm:opportunities_group",
        "Opportunities (deals): reference code, stage, amount, contacts.",
    ),
    "import": Lazy(
        "mailmanager.cli.crm:import_cmd",
        "Import companies, contacts or opportunities from a CSV file or an Excel workbook.",
    ),
    "export": Lazy(
        "mailmanager.cli.crm:export_cmd",
        "Write all companies, contacts or opportunities as CSV (to FILE, or standard output).",
    ),
    # linking mail to records
    "match": Lazy(
        "mailmanager.cli.matching:match_cmd",
        "Link messages to contacts, companies and opportunities under the current config.",
    ),
    "explain": Lazy(
        "mailmanager.cli.matching:explain_cmd",
        "Why MESSAGE (database id or Message-ID) is linked to what it is, or to nothing.",
    ),
    "link": Lazy(
        "mailmanager.cli.curation:link_cmd",
        "Link MESSAGE (or --thread ID) to a record by hand: KIND KEY, where KIND is contact "
        "(id or e-mail), company (id, domain or name) or opportunity (reference or id).",
    ),
    "unlink": Lazy(
        "mailmanager.cli.curation:unlink_cmd",
        "Unlink MESSAGE (or --thread ID) from a record (KIND KEY), or from all (--all).",
    ),
    "review": Lazy(
        "mailmanager.cli.curation:review_group",
        "Threads whose opportunity the matcher would not choose alone.",
    ),
    "suggestions": Lazy(
        "mailmanager.cli.curation:suggestions_group",
        "External correspondents who are not contacts yet.",
    ),
    "timeline": Lazy(
        "mailmanager.cli.timeline:timeline_cmd",
        "A record's interactions in order, with engagement figures for contacts/companies.",
    ),
    "engagement": Lazy(
        "mailmanager.cli.timeline:engagement_cmd",
        "Engagement of every contact or company (segments: vip, active, at_risk, dormant).",
    ),
    "links": Lazy("mailmanager.cli.timeline:links_group", "Export links."),
    # reminders and the emails that carry them
    "reminders": Lazy(
        "mailmanager.cli.reminders:reminders_group",
        "Follow-up reminders (relances): list, snooze, dismiss, done, expect, scan.",
    ),
    "digest": Lazy(
        "mailmanager.cli.notify:digest_group",
        "Send reminder digests now (for cron users; the daemon does it on its own).",
    ),
    "outbox": Lazy(
        "mailmanager.cli.notify:outbox_group", "Inspect and send the queue of reminder emails."
    ),
    # privacy (GDPR)
    "privacy": Lazy(
        "mailmanager.cli.privacy:privacy_group",
        "Erase or export a person's data, apply retention, read the audit log (GDPR).",
    ),
    # the web workspace
    "tokens": Lazy(
        "mailmanager.cli.tokens:tokens_group",
        "Create, list and revoke the bearer tokens of the REST API (/api/v1).",
    ),
    "webhooks": Lazy(
        "mailmanager.cli.webhooks:webhooks_group",
        "Add, list, test and remove webhook subscriptions; see their deliveries.",
    ),
    "web": Lazy(
        "mailmanager.cli.web:web_cmd",
        "Serve the web workspace (follow-ups, sign-in by emailed link) until interrupted.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def run() -> None:  # pragma: no cover - console entry for `python -m mailmanager`
    try:
        main()
    except MailmanagerError as exc:
        fail(str(exc), EXIT_FAILED)
