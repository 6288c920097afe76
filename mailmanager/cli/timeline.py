"""CLI: interaction history of a record, engagement figures, and the links export.

    mailmanager timeline contact|company|opportunity KEY [--json]
    mailmanager engagement contacts|companies [--segment S] [--json]
    mailmanager links export --json
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mailmanager.cli import privacy as cli_privacy
from mailmanager.cli.app import EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.db import store
from mailmanager.services import curation, engagement
from mailmanager.services import privacy as privacy_svc

KIND = click.Choice(curation.KINDS)


@click.command("timeline")
@click.argument("kind", type=KIND)
@click.argument("key")
@click.option("--limit", type=int, default=None, help="Only the last N interactions.")
@click.option("--user", metavar="EMAIL", help="Show threads private to this user (their owner).")
@cli_privacy.actor_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def timeline_cmd(
    state: State,
    kind: str,
    key: str,
    limit: int | None,
    user: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """A record's interactions in order, with engagement figures for contacts/companies.
    Messages of threads private to another user than --user show as "(private)". Audited."""
    cfg = state.config()
    with database(state) as factory, store.session_scope(factory) as s:
        try:
            target = curation.resolve_target(s, cfg, kind, key)
        except curation.CurationError as exc:
            fail(str(exc), EXIT_FAILED)
        items = engagement.timeline(s, kind, target.id, limit)
        hidden = privacy_svc.hidden_from(s, user, {i["thread_id"] for i in items if i["thread_id"]})
        for it in items:
            if it["thread_id"] in hidden:
                it.update(subject=privacy_svc.PRIVATE, snippet="", private=True)
        who = cli_privacy.actor_of(actor)
        privacy_svc.record_read(s, who, "timeline.read", f"{kind}:{target.id}")
        figures = None
        if kind != "opportunity":
            figures = engagement.engagement(s, kind, [target.id])[target.id].as_dict()
    if as_json:
        emit_json({"kind": kind, "id": target.id, "label": target.label,
                   "engagement": figures, "interactions": items})  # fmt: skip
        return
    click.echo(f"{kind} {safe(target.label)}: {len(items)} interactions")
    if figures:
        _print_figures(figures)
    for it in items:
        arrow = {"inbound": "<-", "outbound": "->"}.get(it["direction"], "--")
        boxes = ",".join(it["mailboxes"])
        click.echo(
            f"{it['sent_at']} {arrow} {safe(it['subject'])}  [{safe(boxes)}] ({it['method']})"
        )
        if it["snippet"]:
            click.echo(f"      {safe(it['snippet'])[:120]}")


def _print_figures(figures: dict[str, Any]) -> None:
    click.echo(
        f"  segment {figures['segment']} (RFV {figures['rfm']}, score {figures['score']}); "
        f"last in {figures['last_inbound']}, last out {figures['last_outbound']}; "
        f"30/90/365 d: {figures['exchanges_30']}/{figures['exchanges_90']}/"
        f"{figures['exchanges_365']}; median reply ours "
        f"{figures['median_reply_ours_hours']} h, theirs "
        f"{figures['median_reply_theirs_hours']} h"
    )


@click.command("engagement")
@click.argument("kind", type=click.Choice(["contacts", "companies"]))
@click.option("--segment", type=click.Choice(["vip", "active", "at_risk", "dormant"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def engagement_cmd(state: State, kind: str, segment: str | None, as_json: bool) -> None:
    """Engagement of every contact or company (segments: vip, active, at_risk, dormant)."""
    single = "contact" if kind == "contacts" else "company"
    with database(state) as factory, store.session_scope(factory) as s:
        rows = engagement.ranked(s, single, segment)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['segment']:<8} {r['rfm']} {r['label']}  (365 d: {r['exchanges_365']})")


@click.group("links")
def links_group() -> None:
    """Export links."""


@links_group.command("export")
@click.option("--json", "as_json", is_flag=True, help="JSON (the default; kept for scripts).")
@click.pass_obj
def links_export(state: State, as_json: bool) -> None:
    """Every linked message (by Message-ID) with its contact addresses, company names and
    opportunity references, each with the linking method, as a JSON array."""
    with database(state) as factory, store.session_scope(factory) as s:
        out = sys.stdout
        out.write("[")
        for i, item in enumerate(engagement.export_links(s)):
            out.write(("," if i else "") + "\n  " + json.dumps(item, ensure_ascii=False))
        out.write("\n]\n")
