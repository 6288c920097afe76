"""CLI: matching runs, explanations, manual links, the review queue, suggestions, timelines.

mailmanager match [--all | --since 30d] [--dry-run]
mailmanager explain MESSAGE
mailmanager link MESSAGE|--thread ID contact|company|opportunity KEY
mailmanager unlink MESSAGE|--thread ID (contact|company|opportunity KEY | --all)
mailmanager review list|accept|reject
mailmanager suggestions list|accept|dismiss
mailmanager timeline contact|company|opportunity KEY
mailmanager engagement contacts|companies [--segment S]
mailmanager links export --json
"""

from __future__ import annotations

import getpass
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import sqlalchemy as sa

from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.db import lookup, models, store
from mailmanager.matching import run as linking
from mailmanager.services import curation, engagement

KIND = click.Choice(curation.KINDS)


def _by() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


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


def _print_report(report: linking.MatchReport, dry_run: bool, limit: int, labels: Any) -> None:
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


def register(main: click.Group) -> None:
    @main.command("match")
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

    @main.command("explain")
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
        click.echo(f"message #{data['id']} <{data['message_id']}>  thread #{data['thread_id']}")
        click.echo(f"  {data['sent_at']}  {data['direction']}  from {data['from']}")
        click.echo(f"  subject: {data['subject']}")
        click.echo(f"verdict: {data['reason'] or 'not matched yet'}")
        if data["detail"]:
            click.echo(f"  {data['detail']}")
        click.echo("links:" if data["links"] else "links: none")
        for link in data["links"]:
            scope = " [whole thread]" if link["scope"] == "thread" else ""
            by = "" if link["created_by"] == linking.MATCHER else f" by {link['created_by']}"
            click.echo(
                f"  {link['kind']:<11} {link['target']}  {link['method']} "
                f"{link['confidence']:.2f}{scope}{by}"
            )
            click.echo(f"      {link['explanation']}")
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
            click.echo(f"review #{r['id']} ({r['status']}): {r['explanation']}")

    def _scope_and_target(
        s: Any, cfg: Any, message: str | None, thread: int | None, kind: str | None, key: str | None
    ) -> tuple[curation.Scope, curation.Target | None]:
        if (message is None) == (thread is None):
            fail("give a MESSAGE or --thread ID (one of them)", EXIT_CONFIG)
        try:
            scope = curation.resolve_scope(s, message, thread)
            target = curation.resolve_target(s, cfg, kind, key) if kind and key else None
        except curation.CurationError as exc:
            fail(str(exc), EXIT_FAILED)
        return scope, target

    @main.command("link")
    @click.argument("args", nargs=-1, required=True)
    @click.option("--thread", "thread", type=int, metavar="ID", help="Link a whole thread.")
    @click.option("--by", default=None, help="Who links (default cli:$USER).")
    @click.pass_obj
    def link_cmd(state: State, args: tuple[str, ...], thread: int | None, by: str | None) -> None:
        """Link MESSAGE (or --thread ID) to a record by hand: KIND KEY, where KIND is contact
        (id or e-mail), company (id, domain or name) or opportunity (reference or id).

        Manual links survive every sync and re-match, and lift an earlier unlink.
        """
        message, kind, key = _split(args)
        cfg = state.config()
        with database(state) as factory, store.session_scope(factory) as s:
            scope, target = _scope_and_target(s, cfg, message, thread, kind, key)
            assert target is not None
            linking_report = curation.link(s, cfg, scope, target, by or _by())
        click.echo(
            f"linked {scope.describe()} to {target.kind} {target.label} "
            f"({linking_report.messages} messages re-matched)"
        )

    @main.command("unlink")
    @click.argument("args", nargs=-1, required=True)
    @click.option("--thread", "thread", type=int, metavar="ID", help="Unlink a whole thread.")
    @click.option("--all", "everything", is_flag=True, help="Not CRM-relevant: unlink all.")
    @click.option("--by", default=None, help="Who unlinks (default cli:$USER).")
    @click.pass_obj
    def unlink_cmd(
        state: State, args: tuple[str, ...], thread: int | None, everything: bool, by: str | None
    ) -> None:
        """Unlink MESSAGE (or --thread ID) from a record (KIND KEY), or from all (--all).

        Leaves a tombstone: the matcher never links it again, whatever the config;
        `mailmanager link` with the same target lifts it.
        """
        message, kind, key = _split(args, optional_target=everything)
        cfg = state.config()
        with database(state) as factory, store.session_scope(factory) as s:
            scope, target = _scope_and_target(s, cfg, message, thread, kind, key)
            if target is None and not everything:
                fail("give KIND KEY, or --all", EXIT_CONFIG)
            curation.unlink(s, cfg, scope, None if everything else target, by or _by())
        what = "everything" if everything or target is None else f"{target.kind} {target.label}"
        click.echo(f"unlinked {scope.describe()} from {what} (tombstone kept)")

    def _split(
        args: tuple[str, ...], optional_target: bool = False
    ) -> tuple[str | None, str | None, str | None]:
        # [MESSAGE] [KIND KEY]: a message ref is given unless --thread is used.
        if len(args) in (1, 3):
            message, rest = args[0], args[1:]
        else:
            message, rest = None, args
        if len(rest) not in (0, 2) or (not rest and not optional_target):
            fail("usage: MESSAGE|--thread ID contact|company|opportunity KEY", EXIT_CONFIG)
        if rest and rest[0] not in curation.KINDS:
            fail(f"unknown kind {rest[0]!r}: use contact, company or opportunity", EXIT_CONFIG)
        return message, (rest[0] if rest else None), (rest[1] if rest else None)

    @main.group("review")
    def review_group() -> None:
        """Threads whose opportunity the matcher would not choose alone."""

    @review_group.command("list")
    @click.option("--all", "everything", is_flag=True, help="Also accepted and rejected items.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def review_list(state: State, everything: bool, as_json: bool) -> None:
        """Pending review items: the thread, its candidates, why."""
        with database(state) as factory, store.session_scope(factory) as s:
            query = sa.select(models.ReviewItem).order_by(models.ReviewItem.id)
            if not everything:
                query = query.where(models.ReviewItem.status == "pending")
            items: list[dict[str, Any]] = []
            for item in s.scalars(query):
                thread = s.get(models.Thread, item.thread_id)
                items.append(
                    {
                        "id": item.id,
                        "thread_id": item.thread_id,
                        "subject": thread.subject if thread else "",
                        "status": item.status,
                        "explanation": item.explanation,
                        "candidates": [
                            {"id": int(c), "label": curation.target_label(s, item.kind, int(c))}
                            for c in item.candidates.split()
                        ],
                    }
                )
        if as_json:
            emit_json(items)
            return
        if not items:
            click.echo("nothing to review")
        for it in items:
            click.echo(f"#{it['id']} thread #{it['thread_id']} [{it['status']}] {it['subject']}")
            click.echo(f"    {it['explanation']}")
            for c in it["candidates"]:
                click.echo(f"    - {c['label']}")

    @review_group.command("accept")
    @click.argument("item_id", type=int)
    @click.option("--opportunity", "opportunity", metavar="REF", help="The one to link.")
    @click.option("--by", default=None, help="Who decides (default cli:$USER).")
    @click.pass_obj
    def review_accept(state: State, item_id: int, opportunity: str | None, by: str | None) -> None:
        """Link the item's thread to one opportunity (by hand, sticky)."""
        cfg = state.config()
        with database(state) as factory, store.session_scope(factory) as s:
            try:
                choice = (
                    curation.resolve_target(s, cfg, "opportunity", opportunity)
                    if opportunity
                    else None
                )
                chosen = curation.accept_review(s, cfg, item_id, choice, by or _by())
            except curation.CurationError as exc:
                fail(str(exc), EXIT_FAILED)
        click.echo(f"review #{item_id} accepted: thread linked to {chosen.label}")

    @review_group.command("reject")
    @click.argument("item_id", type=int)
    @click.option("--by", default=None, help="Who decides (default cli:$USER).")
    @click.pass_obj
    def review_reject(state: State, item_id: int, by: str | None) -> None:
        """Link none of the candidates; the matcher will not ask again for the same ones."""
        with database(state) as factory, store.session_scope(factory) as s:
            try:
                curation.reject_review(s, item_id, by or _by())
            except curation.CurationError as exc:
                fail(str(exc), EXIT_FAILED)
        click.echo(f"review #{item_id} rejected")

    @main.group("suggestions")
    def suggestions_group() -> None:
        """External correspondents who are not contacts yet."""

    @suggestions_group.command("list")
    @click.option("--all", "everything", is_flag=True, help="Also dismissed and accepted ones.")
    @click.option("--limit", default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_obj
    def suggestions_list(state: State, everything: bool, limit: int, as_json: bool) -> None:
        """Unknown correspondents, most active first."""
        S = models.Suggestion
        with database(state) as factory, store.session_scope(factory) as s:
            query = sa.select(S).order_by(S.messages.desc(), S.email).limit(limit)
            if not everything:
                query = query.where(S.status == "pending")
            rows = s.scalars(query).all()
            companies = {
                r.company_id: curation.target_label(s, "company", r.company_id)
                for r in rows
                if r.company_id
            }
            items: list[dict[str, Any]] = [
                {
                    "email": r.email,
                    "name": r.name,
                    "company": companies.get(r.company_id) if r.company_id else None,
                    "messages": r.messages,
                    "sent": r.sent,
                    "first_seen": r.first_seen.isoformat() if r.first_seen else None,
                    "last_seen": r.last_seen.isoformat() if r.last_seen else None,
                    "status": r.status,
                }
                for r in rows
            ]
        if as_json:
            emit_json(items)
            return
        for it in items:
            company = f" ({it['company']})" if it["company"] else ""
            click.echo(
                f"{it['email']:<40} {it['name'][:30]:<30}{company} {it['messages']} messages, "
                f"{it['sent']} sent; last {it['last_seen']}"
            )

    @suggestions_group.command("accept")
    @click.argument("email")
    @click.option("--company", metavar="REF", help="Company (id, domain or name).")
    @click.option("--by", default=None)
    @click.pass_obj
    def suggestions_accept(state: State, email: str, company: str | None, by: str | None) -> None:
        """Create the contact (its past mail is linked at once)."""
        cfg = state.config()
        with database(state) as factory, store.session_scope(factory) as s:
            try:
                contact = curation.accept_suggestion(s, cfg, email, by or _by(), company)
            except curation.CurationError as exc:
                fail(str(exc), EXIT_FAILED)
            label = curation.contact_label(s, contact.id)
        click.echo(f"contact #{contact.id} created: {label}")

    @suggestions_group.command("dismiss")
    @click.argument("email")
    @click.pass_obj
    def suggestions_dismiss(state: State, email: str) -> None:
        """Keep this address out of the suggestions."""
        cfg = state.config()
        with database(state) as factory, store.session_scope(factory) as s:
            try:
                curation.dismiss_suggestion(s, cfg, email, _by())
            except curation.CurationError as exc:
                fail(str(exc), EXIT_FAILED)
        click.echo(f"{email} dismissed")
