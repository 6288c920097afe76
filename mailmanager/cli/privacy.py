"""CLI: `mailmanager privacy erase|export|retention|audit` (issue #16: GDPR / CNIL).

    mailmanager privacy erase --address A | --contact ID [--dry-run] [--yes]
    mailmanager privacy export --address A [--output FILE.zip]
    mailmanager privacy retention [--dry-run]
    mailmanager privacy audit [--since DATE] [--limit N]

The CLI is an administrator's tool: it has no signed-in user. Who acts, for the audit log,
is the OS user (`getpass.getuser()`), or `--actor NAME`. Every command that shows mail
content or personal data records an audit entry (`services.privacy.record_read`).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from mailmanager.cli.app import EXIT_FAILED, State, database, emit_json, fail
from mailmanager.db import models, store

F = TypeVar("F", bound=Callable[..., Any])


def actor_option(func: F) -> F:
    """`--actor NAME`: who is acting, for the audit log (default: the OS user)."""
    return click.option(
        "--actor",
        metavar="NAME",
        help="Who is acting, for the audit log (default: your OS user name).",
    )(func)


def actor_of(actor: str | None) -> str:
    """The audit actor of a CLI command: `cli:<--actor or the OS user>`."""
    if not actor:
        try:
            actor = getpass.getuser()
        except (OSError, KeyError):  # no user name in the environment nor the passwd file
            actor = f"uid{os.getuid()}"
    return f"cli:{actor}"


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r} is not a date; write e.g. 2026-11-30 or 2026-11-30T08:00", 1)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.group("privacy")
def privacy_group() -> None:
    """Erase or export a person's data, apply retention, read the audit log (GDPR)."""


@privacy_group.command("erase")
@click.option("--address", metavar="ADDRESS", help="The person's e-mail address.")
@click.option("--contact", "contact_id", type=int, metavar="ID", help="A CRM contact's id.")
@click.option("--dry-run", is_flag=True, help="Say what would be erased; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@actor_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def erase_cmd(
    state: State,
    address: str | None,
    contact_id: int | None,
    dry_run: bool,
    yes: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Erase a person: delete the messages where they are the only external participant,
    scrub them from the others, delete their contact and its links, and remember them (by
    a keyed hash) so a re-sync does not bring them back. Mail at the provider is not
    touched. Audited, with counts only."""
    from mailmanager.services import privacy as privacy_svc

    cfg = state.config()
    who = actor_of(actor)
    with database(state) as factory:
        try:
            with store.session_scope(factory) as s:
                plan = privacy_svc.erase(s, cfg, who, address, contact_id, dry_run=True)
            if not dry_run and not yes:
                _print_erase(plan)
                click.confirm("Erase this for good? It cannot be undone", abort=True)
            if not dry_run:
                with store.session_scope(factory) as s:
                    plan = privacy_svc.erase(s, cfg, who, address, contact_id)
        except privacy_svc.PrivacyError as exc:
            fail(str(exc), EXIT_FAILED)
    if as_json:
        emit_json(dataclasses.asdict(plan))
        return
    _print_erase(plan)


def _print_erase(report: Any) -> None:
    verb = "would be" if report.dry_run else "were"
    c = report.counts()
    click.echo(
        f"{c['messages_deleted']} messages {verb} deleted ({c['threads_deleted']} threads, "
        f"{c['raw_deleted']} raw copies, {c['reminders_deleted']} reminders), "
        f"{c['messages_scrubbed']} scrubbed of the person; {c['contacts_deleted']} contacts and "
        f"{c['suggestions_deleted']} suggestions {verb} deleted"
    )
    if report.dry_run:
        click.echo("dry run: nothing was changed")
    else:
        click.echo("a tombstone keeps them out of later syncs; the provider's mail is untouched")


@privacy_group.command("export")
@click.option("--address", required=True, metavar="ADDRESS", help="The person's e-mail address.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The zip file to write (default: privacy-export-<name>.zip here).",
)
@actor_option
@click.pass_obj
def export_cmd(state: State, address: str, output: Path | None, actor: str | None) -> None:
    """Every stored item about a person (contact, messages as JSON and .eml, links,
    reminders, audit entries) in one zip archive of mode 0600: the right of access."""
    from mailmanager.services import privacy as privacy_svc
    from mailmanager.services import privacy_export

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", address.partition("@")[0]) or "person"
    path = output or Path(f"privacy-export-{name}.zip")
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            summary = privacy_export.export(s, address, path, actor_of(actor))
        except privacy_svc.PrivacyError as exc:
            fail(str(exc), EXIT_FAILED)
    click.echo(
        f"{summary.path}: {summary.messages} messages ({summary.raw_files} .eml), "
        f"{summary.links} links, {summary.reminders} reminders, "
        f"{summary.audit_entries} audit entries"
        + (f", contact {summary.contact_id}" if summary.contact_id else ", no contact")
    )


@privacy_group.command("retention")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def retention_cmd(state: State, dry_run: bool, as_json: bool) -> None:
    """Apply [retention] now (the daemon does it daily): delete messages, quarantined items
    and audit entries older than their configured number of days."""
    from mailmanager.services import privacy as privacy_svc

    cfg = state.config()
    r = cfg.retention
    with database(state) as factory, store.session_scope(factory) as s:
        report = privacy_svc.apply_retention(s, cfg, models.utcnow(), dry_run=dry_run)
    if as_json:
        emit_json(dataclasses.asdict(report))
        return
    verb = "would be deleted" if dry_run else "deleted"
    for kind, key, days, count in (
        ("messages", "messages_days", r.messages_days, report.messages),
        ("quarantined items", "quarantine_days", r.quarantine_days, report.quarantine),
        ("audit entries", "audit_days", r.audit_days, report.audit),
    ):
        if days is None:
            click.echo(f"{kind}: kept ([retention] {key} is not set)")
        else:
            click.echo(f"{kind} older than {days} days: {count} {verb}")
    if report.messages:
        click.echo(
            f"  with {report.threads} emptied threads; "
            f"{report.reminders_cancelled} of their reminders cancelled"
        )


@privacy_group.command("audit")
@click.option("--since", metavar="DATE", help="Only entries from DATE (ISO 8601, UTC).")
@click.option("--limit", type=int, default=200, show_default=True, help="At most N entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def audit_cmd(state: State, since: str | None, limit: int, as_json: bool) -> None:
    """The audit log, newest first: who read or changed what, when."""
    from mailmanager.cli.terminal import safe
    from mailmanager.services import privacy as privacy_svc

    with database(state) as factory, store.session_scope(factory) as s:
        entries = privacy_svc.audit_entries(s, since=_since(since), limit=limit)
    if as_json:
        emit_json([dataclasses.asdict(e) for e in entries])
        return
    for e in entries:
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {safe(e.actor):<20} {e.action:<18} {safe(e.target)}")
    if not entries:
        click.echo("no audit entries" + (f" since {since}" if since else ""))
