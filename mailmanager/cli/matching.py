"""CLI: matching runs and their explanations.

mailmanager match [--all | --since 30d] [--dry-run]
mailmanager explain MESSAGE

What people decide by hand (link, unlink, review, suggestions) is in `cli/curation.py`;
timelines, engagement and the links export in `cli/timeline.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import lookup, models, store
from mailmanager.matching import run as linking
from mailmanager.services import curation, engagement


def _since(text: str | None) -> datetime | None:
    """ "30d", "12h", "2w" or an ISO date, as an aware UTC instant."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)\s*([hdw])", text.strip().lower())
    if m:
        unit = {"h": "hours", "d": "days", "w": "weeks"}[m[2]]
        return models.utcnow() - timedelta(**{unit: int(m[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r}: write e.g. 30d, 12h, 2w or 2026-01-31", EXIT_CONFIG)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command("match")
@click.option("--all", "everything", is_flag=True, help="Match every thread again.")
@click.option("--since", metavar="AGE", help="Only threads with mail since 30d, 12h, a date.")
@click.option("--dry-run", is_flag=True, help="Show which links would change; write nothing.")
@click.option("--limit", default=50, show_default=True, help="Changes listed in the output.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def match_cmd(
    state: State, everything: bool, since: str | None, dry_run: bool, limit: int, as_json: bool
) -> None:
    """Link messages to contacts, companies and opportunities under the current config.

    Without --all or --since, only messages never matched are (sync matches each batch
    itself). With --dry-run nothing is written: the output lists the links that would be
    added, removed or changed, e.g. before enabling a new blocklist or policy.
    """
    cfg = state.config()
    when = _since(since)
    with database(state) as factory, store.session_scope(factory) as s:
        if everything or when is not None:
            tids = linking.thread_ids(s, when)
        else:
            tids = linking.thread_ids(s, unmatched=True)
        commit = None if dry_run else (lambda _r: s.commit())
        report = linking.match_threads(s, cfg, tids, dry_run=dry_run, on_chunk=commit)
        if dry_run:
            s.rollback()
        if as_json:
            data = report.as_dict()
            data["dry_run"] = dry_run
            data["changes"] = [vars(c) for c in report.changes[:limit]]
            emit_json(data)
            return
        _print_report(report, dry_run, limit, lambda k, i: curation.target_label(s, k, i))


def _print_report(
    report: linking.MatchReport, dry_run: bool, limit: int, labels: Callable[[str, int], str]
) -> None:
    verb = "would be" if dry_run else "were"
    click.echo(
        f"{report.messages} messages in {report.threads} threads matched in "
        f"{report.elapsed:.1f}s: links {report.added} added, {report.removed} removed, "
        f"{report.changed} changed ({verb} written)"
    )
    if report.contacts_created:
        click.echo(f"contacts created: {len(report.contacts_created)}")
    if report.reviews_opened or report.reviews_closed:
        click.echo(f"review items: {report.reviews_opened} opened, {report.reviews_closed} closed")
    click.echo("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(report.reasons.items())))
    for change in report.changes[:limit]:
        how = (
            change.method if change.action != "change" else f"{change.old_method} → {change.method}"
        )
        if change.action == "remove":
            how = change.old_method
        click.echo(
            f"  {change.action:<6} message #{change.message_id}: {change.kind} "
            f"{labels(change.kind, change.target_id)} ({how})"
        )
    if len(report.changes) > limit:
        click.echo(f"  ... and {len(report.changes) - limit} more (--limit N to see them)")


@click.command("explain")
@click.argument("message")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def explain_cmd(state: State, message: str, as_json: bool) -> None:
    """Why MESSAGE (database id or Message-ID) is linked to what it is, or to nothing."""
    with database(state) as factory, store.session_scope(factory) as s:
        found = lookup.find_message(s, message)
        if found is None:
            fail(f"no message {message!r} (give a database id or a Message-ID)", EXIT_FAILED)
        data = engagement.explain(s, found)
    if as_json:
        emit_json(data)
        return
    _print_explanation(data)


def _print_explanation(data: dict[str, Any]) -> None:
    click.echo(f"message #{data['id']} <{safe(data['message_id'])}>  thread #{data['thread_id']}")
    click.echo(f"  {data['sent_at']}  {data['direction']}  from {safe(data['from'])}")
    click.echo(f"  subject: {safe(data['subject'])}")
    click.echo(f"verdict: {data['reason'] or 'not matched yet'}")
    if data["detail"]:
        click.echo(f"  {safe(data['detail'])}")
    click.echo("links:" if data["links"] else "links: none")
    for link in data["links"]:
        scope = " [whole thread]" if link["scope"] == "thread" else ""
        by = "" if link["created_by"] == linking.MATCHER else f" by {link['created_by']}"
        click.echo(
            f"  {link['kind']:<11} {safe(link['target'])}  {link['method']} "
            f"{link['confidence']:.2f}{scope}{by}"
        )
        click.echo(f"      {safe(link['explanation'])}")
    for link in data["thread_links"]:
        click.echo(
            f"thread linked by hand: {link['kind']} {link['target']} by {link['created_by']}"
        )
    for link in data["unlinked"]:
        scope = "thread" if link["scope"] == "thread" else "message"
        click.echo(
            f"unlinked by hand ({scope}): {link['kind']} {link['target']} "
            f"by {link['created_by']} (the matcher never links it again)"
        )
    if data["review"]:
        r = data["review"]
        click.echo(f"review #{r['id']} ({r['status']}): {safe(r['explanation'])}")
