"""`mailmanager companies|contacts|opportunities ...`, `mailmanager import|export ...`.

Salespeople (owners) are the `[[users]]` of the config file: each command that writes
first copies them into the database (`configrows.ensure_config_rows`), so `--owner` takes the
e-mail of any configured user or alias.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from mailmanager.cli.app import EXIT_FAILED, State, database, emit_json, fail
from mailmanager.cli.terminal import safe
from mailmanager.crm import csvformat as fmt
from mailmanager.crm import csvio, dedupe, opportunities
from mailmanager.crm import records as crm
from mailmanager.crm import views as crmviews
from mailmanager.db import configrows, store

ACTOR = "cli"
KIND = click.Choice(csvio.KINDS)


@contextmanager
def _session(state: State, write: bool = False) -> Iterator[Session]:
    """A session that commits on success; CRM errors end the command with exit code 1."""
    with database(state) as factory:
        try:
            with store.session_scope(factory) as session:
                if write:
                    configrows.ensure_config_rows(session, state.config())
                yield session
        except (crm.CrmError, csvio.CsvError) as exc:
            fail(str(exc), EXIT_FAILED)


def _owner_id(session: Session, state: State, owner: str | None) -> int | None:
    return crm.find_user(session, state.config(), owner).id if owner else None


def _print_contact(v: crmviews.ContactView) -> None:
    company = f"  [{v.company}]" if v.company else ""
    click.echo(
        f"{v.id:>6}  {safe(v.name) or '-':<28} {safe(', '.join(v.emails)):<40} "
        f"{v.status}{safe(company)}"
    )


def _print_opportunity(v: crmviews.OpportunityView) -> None:
    amount = f"{v.amount} {v.currency}" if v.amount else "-"
    stage = v.stage + (f"/{v.pipeline_step}" if v.pipeline_step else "")
    click.echo(
        f"{v.reference or v.id:<12} {stage:<20} {amount:>16}  {v.title[:40]:<40} {v.company or ''}"
    )


# --- import / export -------------------------------------------------------------------------


def _import_help() -> str:
    """The help of `import`, with the headers each kind accepts (`csvformat`'s table)."""
    lines = [
        "Import companies, contacts or opportunities from a CSV file or an Excel workbook.",
        "",
        "CSV: delimiter (; , or tab) and encoding (UTF-8 with or without BOM, Windows-1252)",
        "are detected. Excel (.xlsx, recognised by its content whatever its name): the first",
        "sheet, or --sheet NAME. Headers may be French or English; case, accents and",
        "punctuation do not matter. Minimal columns: companies `name,domains`; contacts",
        "`first_name,last_name,email,company,owner`; opportunities",
        "`reference,title,company,contacts,owner,stage,amount,created_at,closed_at`.",
        "Several addresses or domains in one cell are separated by",
        "`|` (or `;` in a comma-separated file). Records are matched by external id or address",
        "(contacts), name (companies) or reference (opportunities) and updated; contacts that",
        "turn out to share an address are merged. A won or lost opportunity should come with",
        "its creation and close dates: without them, mail is linked to it only by a subject",
        "tag or by hand. If any row is wrong, nothing is imported and each error is listed",
        "with its line number (exit code 1).",
        "",
        "\b",
        "Accepted headers (required: companies name; contacts email; opportunities title or",
        "reference). close_date is the real close date of a won or lost opportunity, the",
        "expected one of an open one. Dates: 2026-03-31 or 31/03/2026.",
    ]
    for kind in csvio.KINDS:
        lines.append(f"{kind}:")
        for name, aliases in fmt.accepted_headers(kind):
            text = f"{name}: {', '.join(aliases)}"
            lines.extend(textwrap.wrap(text, 78, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


@click.command("import", help=_import_help())
@click.argument("kind", type=KIND)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sheet", help="The sheet of an Excel workbook to read (default: the first).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def import_cmd(
    state: State, kind: str, file: Path, sheet: str | None, dry_run: bool, as_json: bool
) -> None:
    with _session(state, write=True) as session:
        report = csvio.import_csv(
            session, state.config(), kind, file.read_bytes(), dry_run, ACTOR, sheet
        )
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        delim = {"\t": "tab"}.get(report.delimiter, report.delimiter)
        source = (
            "Excel workbook"
            if report.encoding == "xlsx"
            else f"delimiter {delim!r}, {report.encoding}"
        )
        click.echo(
            f"{kind}: {report.rows} rows: {report.created} created, {report.updated} updated, "
            f"{report.unchanged} unchanged, {report.merged} merged ({source})"
        )
        for column in report.ignored_columns:
            click.echo(f"  ignored column: {column}")
        for line, text in report.notes:
            click.echo(f"  line {line}: {text}")
        for line, text in report.errors:
            click.echo(f"error: line {line}: {text}", err=True)
        if report.errors:
            click.echo("nothing was imported: fix these lines and run again", err=True)
        elif dry_run:
            click.echo("dry run: nothing was written")
    if report.errors:
        sys.exit(EXIT_FAILED)


@click.command("export")
@click.argument("kind", type=KIND)
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--delimiter",
    type=click.Choice([",", ";", "tab"]),
    default=",",
    show_default=True,
    help="Use ';' for French Excel.",
)
@click.option(
    "--bom/--no-bom",
    default=None,
    help="Start with a UTF-8 byte-order mark so Excel reads accents (default: yes in a FILE, "
    "no on standard output).",
)
@click.pass_obj
def export_cmd(
    state: State, kind: str, file: Path | None, delimiter: str, bom: bool | None
) -> None:
    """Write all companies, contacts or opportunities as CSV (to FILE, or standard output).

    The columns are those `mailmanager import` reads, with English headers; several values
    in a cell are joined with `|`; amounts use a dot, dates are ISO (2026-03-31).
    """
    with _session(state) as session:
        text = csvio.export_csv(session, kind, "\t" if delimiter == "tab" else delimiter)
    if bom if bom is not None else file is not None:
        text = "\ufeff" + text
    if file is None:
        sys.stdout.write(text)
        return
    file.write_bytes(text.encode("utf-8"))
    click.echo(f"wrote {max(text.count(chr(10)) - 1, 0)} {kind} to {file}", err=True)


# --- companies ---------------------------------------------------------------------------------


@click.group("companies")
def companies_group() -> None:
    """Companies (accounts) and their mail domains."""


@companies_group.command("add")
@click.argument("name")
@click.option("--domain", "-d", "domains", multiple=True, help="A mail domain (repeatable).")
@click.option("--external-id", help="Its id in another CRM.")
@click.pass_obj
def companies_add(state: State, name: str, domains: tuple[str, ...], external_id: str) -> None:
    """Create a company. Mail from its domains links to it; free-mail domains (gmail.com,
    orange.fr...) and the organization's own domains are refused."""
    with _session(state, write=True) as s:
        company = crm.create_company(s, state.config(), name, domains, external_id)
        click.echo(f"company #{company.id} {company.name} created")


@companies_group.command("list")
@click.option("--search", "-s", metavar="TEXT", help="Part of a name or domain.")
@click.option("--limit", type=int, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def companies_list(state: State, search: str | None, limit: int | None, as_json: bool) -> None:
    """Companies by name, with their domains and counts of contacts and open opportunities."""
    with _session(state) as s:
        rows = crmviews.companies(s, search=search, limit=limit)
    if as_json:
        emit_json([crmviews.as_dict(r) for r in rows])
        return
    for r in rows:
        click.echo(
            f"{r.id:>6}  {r.name[:36]:<36} {', '.join(r.domains)[:40]:<40} "
            f"{r.contacts} contacts, {r.open_opportunities} open"
        )


@companies_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def companies_show(state: State, ref: str, as_json: bool) -> None:
    """A company by id, domain or name: its contacts, opportunities and latest messages."""
    with _session(state) as s:
        company = crm.find_company(s, ref)
        view_ = crmviews.company_views(s, [company])[0]
        people = crmviews.contacts(s, company_id=company.id)
        deals = crmviews.opportunities(s, company_id=company.id)
        recent = crmviews.recent_messages(s, "company", company.id)
    data: dict[str, Any] = crmviews.as_dict(view_)
    data["contact_list"] = [crmviews.as_dict(p) for p in people]
    data["opportunity_list"] = [crmviews.as_dict(o) for o in deals]
    data["recent_messages"] = recent
    if as_json:
        emit_json(data)
        return
    click.echo(f"company #{view_.id} {view_.name}  domains: {', '.join(view_.domains) or '-'}")
    for p in people:
        _print_contact(p)
    for o in deals:
        _print_opportunity(o)
    for m in recent:
        click.echo(f"  {(m['sent_at'] or '-')[:16]}  {m['direction']:<8} {safe(m['subject'])[:60]}")


# --- contacts ----------------------------------------------------------------------------------


@click.group("contacts")
def contacts_group() -> None:
    """Contacts (people at customers and prospects) and their addresses."""


@contacts_group.command("add")
@click.argument("emails", nargs=-1, required=True)
@click.option("--first-name", default="", help="Given name.")
@click.option("--last-name", default="", help="Family name.")
@click.option("--company", help="Company id, domain or name.")
@click.option("--owner", help="The salesperson's e-mail (a [[users]] entry).")
@click.option("--status", type=click.Choice(crm.CONTACT_STATUSES), default="prospect")
@click.option("--phone", default="")
@click.option("--title", default="", help="Job title.")
@click.option("--external-id", help="Its id in another CRM.")
@click.pass_obj
def contacts_add(
    state: State,
    emails: tuple[str, ...],
    first_name: str,
    last_name: str,
    company: str | None,
    owner: str | None,
    status: str,
    phone: str,
    title: str,
    external_id: str | None,
) -> None:
    """Create a contact with one or more EMAILS (stored normalized: Gmail dots and +tags of
    the big providers do not make a different person)."""
    cfg = state.config()
    with _session(state, write=True) as s:
        user = crm.find_user(s, cfg, owner) if owner else None
        org = crm.find_company(s, company) if company else None
        contact = crm.create_contact(
            s, cfg, emails, first_name, last_name, org, user, status, phone, title,
            external_id=external_id,
        )  # fmt: skip
        click.echo(f"contact #{contact.id} created")


@contacts_group.command("list")
@click.option("--search", "-s", metavar="TEXT", help="Part of a name or address.")
@click.option("--company", help="Only this company's (id, domain or name).")
@click.option("--owner", help="Only this salesperson's (e-mail).")
@click.option("--limit", type=int, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def contacts_list(
    state: State,
    search: str | None,
    company: str | None,
    owner: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Contacts by last name."""
    with _session(state, write=owner is not None) as s:
        company_id = crm.find_company(s, company).id if company else None
        rows = crmviews.contacts(s, search, company_id, _owner_id(s, state, owner), limit)
    if as_json:
        emit_json([crmviews.as_dict(r) for r in rows])
        return
    for r in rows:
        _print_contact(r)


@contacts_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def contacts_show(state: State, ref: str, as_json: bool) -> None:
    """A contact by id, address or external id, with opportunities and latest messages."""
    with _session(state) as s:
        contact = crm.find_contact(s, state.config(), ref)
        view = crmviews.contact_views(s, [contact])[0]
        deals = crmviews.contact_opportunities(s, contact.id)
        recent = crmviews.recent_messages(s, "contact", contact.id)
    data = crmviews.as_dict(view)
    data["opportunities"] = [crmviews.as_dict(o) for o in deals]
    data["recent_messages"] = recent
    if as_json:
        emit_json(data)
        return
    click.echo(f"contact #{view.id} {safe(view.name) or '-'}  {safe(', '.join(view.emails))}")
    for key in ("company", "owner", "status", "phone", "title", "source", "external_id"):
        if data[key]:
            click.echo(f"  {key}: {data[key]}")
    for o in deals:
        _print_opportunity(o)
    for m in recent:
        click.echo(f"  {(m['sent_at'] or '-')[:16]}  {m['direction']:<8} {safe(m['subject'])[:60]}")


@contacts_group.command("merge")
@click.argument("keep")
@click.argument("other")
@click.option("--json", "as_json", is_flag=True, help="Print the merge report as JSON.")
@click.pass_obj
def contacts_merge(state: State, keep: str, other: str, as_json: bool) -> None:
    """Merge contact OTHER into KEEP (ids or addresses): OTHER's addresses, links,
    opportunities and messages move to KEEP, then OTHER is deleted (audit-logged)."""
    with _session(state, write=True) as s:
        kept, removed = (
            crm.find_contact(s, state.config(), keep),
            crm.find_contact(s, state.config(), other),
        )
        report = dedupe.merge_contacts(s, state.config(), kept, removed, actor=ACTOR)
    if as_json:
        emit_json(dataclasses.asdict(report))
        return
    click.echo(
        f"contact #{report.removed} merged into #{report.kept}: {report.addresses} addresses, "
        f"{report.links} links, {report.opportunities} opportunities, "
        f"{report.participants} message participants moved"
    )


@contacts_group.command("duplicates")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def contacts_duplicates(state: State, as_json: bool) -> None:
    """Groups of contacts that share an address once normalized (merge them with `merge`)."""
    with _session(state) as s:
        groups = dedupe.find_duplicate_contacts(s, crm.strip_plus(state.config()))
    if as_json:
        emit_json([list(g) for g in groups])
        return
    for g in groups:
        click.echo(" ".join(f"#{i}" for i in g))


# --- opportunities -----------------------------------------------------------------------------


@click.group("opportunities")
def opportunities_group() -> None:
    """Opportunities (deals): reference code, stage, amount, contacts."""


@opportunities_group.command("add")
@click.argument("title")
@click.option("--reference", help="Code used as a subject tag, e.g. OPP-2041 (default: next).")
@click.option("--company", help="Company id, domain or name.")
@click.option("--contact", "contacts", multiple=True, help="A contact id or address (repeatable).")
@click.option("--owner", help="The salesperson's e-mail.")
@click.option("--step", default="", help="Pipeline step, e.g. Proposition.")
@click.option("--amount", help='Amount, e.g. 12500.50 or "12 500,50".')
@click.option("--currency", default="EUR", show_default=True)
@click.option("--expected-close", help="Date, e.g. 2026-03-31 or 31/03/2026.")
@click.pass_obj
def opportunities_add(
    state: State,
    title: str,
    reference: str | None,
    company: str | None,
    contacts: tuple[str, ...],
    owner: str | None,
    step: str,
    amount: str | None,
    currency: str,
    expected_close: str | None,
) -> None:
    """Create an open opportunity."""
    values: dict[str, object] = {"title": title, "pipeline_step": step, "currency": currency}
    try:
        if amount:
            values["amount"] = Decimal(fmt.parse_amount(amount)[0])
        if expected_close:
            values["expected_close"] = fmt.parse_date(expected_close)
    except ValueError as exc:
        fail(str(exc), EXIT_FAILED)
    with _session(state, write=True) as s:
        if reference:
            values["reference"] = reference
        values["company_id"] = crm.find_company(s, company).id if company else None
        values["owner_id"] = _owner_id(s, state, owner)
        people = [crm.find_contact(s, state.config(), c) for c in contacts]
        opp, _ = opportunities.save(s, state.config(), None, values, people)
        click.echo(f"opportunity {opp.reference} created")


@opportunities_group.command("list")
@click.option("--stage", type=click.Choice(opportunities.STAGES), help="Only this stage.")
@click.option("--search", "-s", metavar="TEXT", help="Part of a reference or title.")
@click.option("--company", help="Only this company's (id, domain or name).")
@click.option("--owner", help="Only this salesperson's (e-mail).")
@click.option("--limit", type=int, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def opportunities_list(
    state: State,
    stage: str | None,
    search: str | None,
    company: str | None,
    owner: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Open opportunities first, then by reference."""
    with _session(state, write=owner is not None) as s:
        company_id = crm.find_company(s, company).id if company else None
        owner_id = _owner_id(s, state, owner)
        rows = crmviews.opportunities(s, stage, search, company_id, owner_id, limit)
    if as_json:
        emit_json([crmviews.as_dict(r) for r in rows])
        return
    for r in rows:
        _print_opportunity(r)


@opportunities_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def opportunities_show(state: State, ref: str, as_json: bool) -> None:
    """An opportunity by reference or id, with its contacts and latest messages."""
    with _session(state) as s:
        opp = opportunities.find(s, ref)
        view = crmviews.opportunity_views(s, [opp])[0]
        people = [
            crm.find_contact(s, state.config(), str(i))
            for i in opportunities.contact_ids(s, opp.id)
        ]
        people_views = crmviews.contact_views(s, people)
        recent = crmviews.recent_messages(s, "opportunity", opp.id)
    data = crmviews.as_dict(view)
    data["contact_list"] = [crmviews.as_dict(p) for p in people_views]
    data["recent_messages"] = recent
    if as_json:
        emit_json(data)
        return
    _print_opportunity(view)
    for p in people_views:
        _print_contact(p)
    for m in recent:
        click.echo(f"  {(m['sent_at'] or '-')[:16]}  {m['direction']:<8} {safe(m['subject'])[:60]}")


@opportunities_group.command("close")
@click.argument("ref")
@click.option("--won/--lost", "won", required=True, help="How it ended.")
@click.pass_obj
def opportunities_close(state: State, ref: str, won: bool) -> None:
    """Close an opportunity as won or lost (its reminders stop; audit-logged)."""
    with _session(state, write=True) as s:
        opp = opportunities.find(s, ref)
        changed = opportunities.close(s, state.config(), opp, won, ACTOR)
        done = "closed as" if changed else "was already"
        click.echo(f"{opp.reference} {done} {opp.stage}")
