"""CLI: what people decide by hand (`mailmanager.services.curation`).

mailmanager link MESSAGE|--thread ID contact|company|opportunity KEY
mailmanager unlink MESSAGE|--thread ID (contact|company|opportunity KEY | --all)
mailmanager review list|accept|reject
mailmanager suggestions list|accept|dismiss

Each decision is recorded under `--by`, by default "cli:" and the login name.
"""

from __future__ import annotations

import getpass
import os

import click
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import store
from mailmanager.services import curation


def _by() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def _split(
    args: tuple[str, ...], optional_target: bool = False
) -> tuple[str | None, str | None, str | None]:
    """[MESSAGE] [KIND KEY] as (message, kind, key): a message ref unless --thread is used."""
    if len(args) in (1, 3):
        message, rest = args[0], args[1:]
    else:
        message, rest = None, args
    if len(rest) not in (0, 2) or (not rest and not optional_target):
        fail("usage: MESSAGE|--thread ID contact|company|opportunity KEY", EXIT_CONFIG)
    if rest and rest[0] not in curation.KINDS:
        fail(f"unknown kind {rest[0]!r}: use contact, company or opportunity", EXIT_CONFIG)
    return message, (rest[0] if rest else None), (rest[1] if rest else None)


def _scope_and_target(
    s: Session,
    cfg: config_mod.Config,
    message: str | None,
    thread: int | None,
    kind: str | None,
    key: str | None,
) -> tuple[curation.Scope, curation.Target | None]:
    if (message is None) == (thread is None):
        fail("give a MESSAGE or --thread ID (one of them)", EXIT_CONFIG)
    try:
        scope = curation.resolve_scope(s, message, thread)
        target = curation.resolve_target(s, cfg, kind, key) if kind and key else None
    except curation.CurationError as exc:
        fail(str(exc), EXIT_FAILED)
    return scope, target


@click.command("link")
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


@click.command("unlink")
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


# --- review queue ---------------------------------------------------------------------------


@click.group("review")
def review_group() -> None:
    """Threads whose opportunity the matcher would not choose alone."""


@review_group.command("list")
@click.option("--all", "everything", is_flag=True, help="Also accepted and rejected items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def review_list(state: State, everything: bool, as_json: bool) -> None:
    """Pending review items: the thread, its candidates, why."""
    with database(state) as factory, store.session_scope(factory) as s:
        items = curation.list_reviews(s, include_closed=everything)
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("nothing to review")
    for it in items:
        click.echo(f"#{it['id']} thread #{it['thread_id']} [{it['status']}] {safe(it['subject'])}")
        click.echo(f"    {safe(it['explanation'])}")
        for c in it["candidates"]:
            click.echo(f"    - {safe(c['label'])}")


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


# --- suggested contacts ---------------------------------------------------------------------


@click.group("suggestions")
def suggestions_group() -> None:
    """External correspondents who are not contacts yet."""


@suggestions_group.command("list")
@click.option("--all", "everything", is_flag=True, help="Also dismissed and accepted ones.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def suggestions_list(state: State, everything: bool, limit: int, as_json: bool) -> None:
    """Unknown correspondents, most active first."""
    with database(state) as factory, store.session_scope(factory) as s:
        items = curation.list_suggestions(s, include_closed=everything, limit=limit)
    if as_json:
        emit_json(items)
        return
    for it in items:
        company = f" ({safe(it['company'])})" if it["company"] else ""
        click.echo(
            f"{safe(it['email']):<40} {safe(it['name'])[:30]:<30}{company} "
            f"{it['messages']} messages, "
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
