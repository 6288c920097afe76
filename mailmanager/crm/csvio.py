"""CSV import and export of companies, contacts and opportunities.

Reading is built for what spreadsheets write, French Excel first:
- encoding: a UTF-8 or UTF-16 byte-order mark is honoured; otherwise UTF-8 if the bytes
  decode as such, else Windows-1252 ("CSV (séparateur: point-virgule)" in French Excel);
- delimiter: Excel's `sep=;` first line if present, else whichever of `;`, `,` or tab occurs
  most often outside quotes in the header line;
- headers in French or English, matched without case, accents or punctuation (`Prénom`,
  `first_name`, `E-mail`, `courriel`...; see `csvformat`); unknown columns are reported and
  ignored; a field holding several values (addresses, domains) separates them with `|`, `;`
  or `,` (an e-mail address or a domain never contains one);
- amounts in French ("12 500,50 €") or English ("12,500.50") notation, dates as ISO
  (2026-03-31) or day first (31/03/2026); an opportunity's creation and close dates
  ("Date de création", "Date de clôture") give the matcher its real open interval: a won or
  lost opportunity imported without them takes mail only by subject tag or by hand;
- Excel workbooks (.xlsx, recognised by their content, not their name): the first sheet or
  a named one, with the same header rules (`workbook.read_rows`).
An import is all or nothing: every row is parsed, then applied inside one SAVEPOINT (each row
in its own nested one, so a failing row does not hide the errors of later rows); when any row
fails, or on a dry run, everything is rolled back and the report lists each error with its
line number. Empty cells never erase stored values and nothing is deleted.

Export writes the same columns with English headers, `,` by default, multi-values joined with
`|`, amounts with a dot, dates in ISO; the CLI adds a UTF-8 BOM so that Excel reads accents
right. A cell that a spreadsheet would run as a formula (`=`, `@`, or `+`/`-` followed by
more than a number) is prefixed with `'` (OWASP "CSV injection"), and import strips it again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import csvformat as fmt
from mailmanager.crm import dedupe, opportunities, workbook
from mailmanager.crm import records as crm
from mailmanager.crm import views as crmviews
from mailmanager.db import audit, models
from mailmanager.db.models import Company, Contact, ContactEmail, Opportunity
from mailmanager.errors import MailmanagerError

KINDS = fmt.KINDS


class CsvError(MailmanagerError):
    """Raised when a file cannot be read as a table of that kind at all (empty, or missing a
    required column); bad rows are reported in `ImportReport.errors` instead."""


@dataclass(frozen=True)
class ImportReport:
    """The outcome of one import; nothing was written unless `applied`."""

    kind: str
    rows: int
    created: int
    updated: int
    unchanged: int
    merged: int
    errors: tuple[tuple[int, str], ...]  # (line number in the file, reason)
    notes: tuple[tuple[int, str], ...]  # what the import did besides the row itself
    ignored_columns: tuple[str, ...]
    delimiter: str
    encoding: str
    applied: bool


@dataclass(frozen=True)
class Table:
    delimiter: str
    encoding: str
    ignored: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]  # (first line of the record, field → value)


def read_table(data: bytes, kind: str, sheet: str | None = None) -> Table:
    """Decode, sniff and map the header of a CSV file of `kind`, or read the first sheet (or
    `sheet`) of an Excel workbook, recognised by its content. Raises CsvError."""
    if kind not in KINDS:
        raise CsvError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if workbook.is_workbook(data):
        try:
            lines = workbook.read_rows(data, sheet)
        except workbook.WorkbookError as exc:
            raise CsvError(str(exc)) from exc
        return _table(kind, lines, "", "xlsx")
    refusal = workbook.not_a_table(data)
    if refusal:
        raise CsvError(refusal)
    if sheet is not None:
        raise CsvError(f"--sheet {sheet!r}: this file is CSV text, not an Excel workbook")
    text, encoding = fmt.decode(data)
    text = text.lstrip("\ufeff")
    delimiter, skip = fmt.sniff(text)
    stream = io.StringIO(text, newline="")
    for _ in range(skip):
        stream.readline()
    reader = csv.reader(stream, delimiter=delimiter)

    def records() -> Iterator[tuple[int, list[str]]]:
        line = skip + 1
        try:
            for record in reader:
                yield line, record
                line = skip + reader.line_num + 1
        except csv.Error as exc:
            raise CsvError(f"line {line}: {exc}") from exc

    return _table(kind, records(), delimiter, encoding)


def _table(
    kind: str, records: Iterable[tuple[int, list[str]]], delimiter: str, encoding: str
) -> Table:
    """Map the header (the first record) and read the rows: (first line, field → value)."""
    lines = iter(records)
    first = next(lines, None)
    if first is None:
        raise CsvError("the file is empty")
    header_line, header = first
    columns, ignored = fmt.map_header(kind, header)
    missing = fmt.missing_required(kind, set(columns.values()))
    if missing:
        found = ", ".join(h.strip() for h in header if h.strip()) or "none"
        raise CsvError(f"line {header_line}: no {missing} column (columns found: {found})")
    fields = [columns.get(h.strip()) for h in header]
    rows: list[tuple[int, dict[str, str]]] = []
    for line, record in lines:
        if any("\x00" in cell for cell in record):
            # A database refuses it in text (PostgreSQL); say where, rather than fail there.
            raise CsvError(
                f"line {line}: a NUL character (byte 0x00) in a cell; remove it and import again"
            )
        values: dict[str, str] = {}
        for name, cell in zip(fields, record, strict=False):
            cell = fmt.unescape_cell(cell.strip())
            if name and cell and name not in values:
                values[name] = cell
        if any(cell.strip() for cell in record):
            rows.append((line, values))
    return Table(delimiter, encoding, tuple(ignored), tuple(rows))


# --- importing -------------------------------------------------------------------------------


@dataclass
class _Run:
    session: Session
    cfg: config_mod.Config
    line: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[int, str]] = field(default_factory=list)
    touched: dict[str, set[int]] = field(
        default_factory=lambda: {"contacts": set(), "companies": set(), "opportunities": set()}
    )
    # Lookups repeated on most rows; cleared when a row is rolled back.
    company_ids: dict[str, int] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.notes.append((self.line, text))


def _owner_id(run: _Run, email: str) -> int:
    key = email.strip().lower()
    if key not in run.user_ids:
        run.user_ids[key] = crm.find_user(run.session, run.cfg, email).id
    return run.user_ids[key]


def _company(run: _Run, name: str) -> Company:
    """The company called `name`, created (with a note) when there is none."""
    cached = run.company_ids.get(models.name_key(name))
    if cached is not None:
        return run.session.get_one(Company, cached)
    company = _find_or_create_company(run, name)
    run.company_ids[models.name_key(name)] = company.id
    return company


def _find_or_create_company(run: _Run, name: str) -> Company:
    named = crm.companies_named(run.session, name)
    if len(named) > 1:
        ids = ", ".join(f"#{c.id}" for c in named)
        raise crm.CrmError(f"several companies are named {name!r} ({ids})", "company")
    if named:
        return named[0]
    company = crm.create_company(run.session, run.cfg, name, relink_now=False)
    run.note(f"company {company.name!r} created (#{company.id})")
    return company


def _company_row(run: _Run, v: dict[str, str]) -> str:
    s, ext = run.session, v.get("external_id")
    domains = fmt.split_values(v.get("domains", ""))
    company = s.scalar(sa.select(Company).where(Company.external_id == ext)) if ext else None
    if company is None:
        named = crm.companies_named(s, v["name"])
        if len(named) > 1:
            ids = ", ".join(f"#{c.id}" for c in named)
            raise crm.CrmError(f"several companies are named {v['name']!r} ({ids})", "name")
        company = named[0] if named else None
    if company is None:
        company = crm.create_company(s, run.cfg, v["name"], domains, ext, relink_now=False)
        run.touched["companies"].add(company.id)
        return "created"
    changed = crm.update_company(
        s, run.cfg, company, v["name"], add_domains=domains, external_id=ext, relink_now=False
    )
    if changed:
        run.touched["companies"].add(company.id)
    return "updated" if changed else "unchanged"


def _contact_fields(run: _Run, v: dict[str, str]) -> dict[str, str | int | None]:
    fields: dict[str, str | int | None] = {}
    if "full_name" in v and "first_name" not in v and "last_name" not in v:
        first, _, last = v["full_name"].rpartition(" ")
        fields["first_name"], fields["last_name"] = (first, last) if first else ("", last)
    for name in ("first_name", "last_name", "phone", "title"):
        if name in v:
            fields[name] = v[name]
    if "source" in v:
        fields["source"] = v["source"][:32]
    if "status" in v:
        fields["status"] = fmt.parse_status(v["status"])
    if "company" in v:
        fields["company_id"] = _company(run, v["company"]).id
    if "owner" in v:
        fields["owner_id"] = _owner_id(run, v["owner"])
    return fields


def _contact_row(run: _Run, v: dict[str, str]) -> str:
    s, ext = run.session, v.get("external_id")
    emails = fmt.split_values(v.get("email", ""))
    if not emails:
        raise crm.CrmError("no e-mail address", "email")
    keys = [crm.contact_key(run.cfg, e) for e in emails]
    fields = _contact_fields(run, v)
    found: list[Contact] = []
    by_ext = s.scalar(sa.select(Contact).where(Contact.external_id == ext)) if ext else None
    for contact_id in [by_ext.id] if by_ext else []:
        found.append(s.get_one(Contact, contact_id))
    for key in keys:
        row = s.scalar(sa.select(ContactEmail).where(ContactEmail.email == key))
        if row is not None and row.contact_id not in {c.id for c in found}:
            found.append(s.get_one(Contact, row.contact_id))
    if not found:
        contact = Contact(status="prospect", source="import", external_id=ext)
        s.add(contact)
        s.flush()
        crm.update_contact(s, run.cfg, contact, fields, add_emails=emails, relink_now=False)
        run.touched["contacts"].add(contact.id)
        return "created"
    keep = found[0]
    for other in found[1:]:
        other_id = other.id
        dedupe.merge_contacts(s, run.cfg, keep, other, actor="import", relink_now=False)
        run.counts["merged"] = run.counts.get("merged", 0) + 1
        run.note(f"contact #{other_id} merged into #{keep.id}: they share an address")
    if ext and keep.external_id and keep.external_id != ext:
        raise crm.CrmError(
            f"{keys[0]} belongs to contact #{keep.id} whose external id is "
            f"{keep.external_id!r}, not {ext!r}",
            "external_id",
        )
    if ext:
        fields["external_id"] = ext
    changed = crm.update_contact(s, run.cfg, keep, fields, add_emails=emails, relink_now=False)
    if changed or len(found) > 1:
        run.touched["contacts"].add(keep.id)
    return "updated" if changed or len(found) > 1 else "unchanged"


def _opportunity_values(run: _Run, v: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if "reference" in v:
        values["reference"] = opportunities.clean_reference(v["reference"])
    if "title" in v:
        values["title"] = v["title"]
    if "company" in v:
        values["company_id"] = _company(run, v["company"]).id
    if "owner" in v:
        values["owner_id"] = _owner_id(run, v["owner"])
    if "stage" in v:
        values["stage"], step = fmt.parse_stage(v["stage"])
        if step:
            values["pipeline_step"] = step[:64]
    if "pipeline_step" in v:
        values["pipeline_step"] = v["pipeline_step"][:64]
    if "amount" in v:
        values["amount"], currency = fmt.parse_amount(v["amount"])
        if currency:
            values["currency"] = currency
    if "currency" in v:
        if not (len(v["currency"]) == 3 and v["currency"].isalpha()):
            raise crm.CrmError(f"currency {v['currency']!r}: write a code such as EUR", "currency")
        values["currency"] = v["currency"].upper()
    if "expected_close" in v:
        values["expected_close"] = fmt.parse_date(v["expected_close"])
    for name in ("created_at", "closed_at"):
        if name in v:
            values[name] = fmt.parse_date(v[name])
    return values


def _close_date(values: dict[str, object], v: dict[str, str], opp: Opportunity | None) -> None:
    """A "Date de clôture" column: the close date of a won or lost opportunity, the expected
    one of an open one."""
    if "close_date" not in v:
        return
    stage = values.get("stage", opp.stage if opp is not None else "open")
    name = "expected_close" if stage == "open" else "closed_at"
    values.setdefault(name, fmt.parse_date(v["close_date"]))


def _opportunity_row(run: _Run, v: dict[str, str]) -> str:
    s = run.session
    values = _opportunity_values(run, v)
    opp: Opportunity | None = None
    if "reference" in values:
        opp = s.scalar(sa.select(Opportunity).where(Opportunity.reference == values["reference"]))
    elif "title" in values:  # no reference column: the same title at the same company
        title = models.name_key(str(values["title"]))
        at_company = s.scalars(
            sa.select(Opportunity).where(Opportunity.company_id == values.get("company_id"))
        )
        same = [o for o in at_company if models.name_key(o.title) == title]
        opp = same[0] if len(same) == 1 else None
    _close_date(values, v, opp)
    is_open = values.get("stage", opp.stage if opp else "open") == "open"
    if is_open and values.pop("closed_at", None) is not None:
        run.note("close date ignored: the opportunity is open")
    contacts: list[Contact] = []
    company_id = values.get("company_id", opp.company_id if opp else None)
    for address in fmt.split_values(v.get("contacts", "")):
        contact = crm.contact_by_address(s, run.cfg, crm.contact_key(run.cfg, address))
        if contact is None:
            contact = crm.create_contact(s, run.cfg, [address], source="import", relink_now=False)
            contact.company_id = company_id if isinstance(company_id, int) else None
            run.touched["contacts"].add(contact.id)
            run.note(f"contact {address} created (#{contact.id})")
        contacts.append(contact)
    created = opp is None
    opp, changed = opportunities.save(s, run.cfg, opp, values, contacts, relink_now=False)
    if changed:
        run.touched["opportunities"].add(opp.id)
    if created:
        if "reference" not in values:
            run.note(f"reference {opp.reference} given")
        return "created"
    return "updated" if changed else "unchanged"


HANDLERS: dict[str, Callable[[_Run, dict[str, str]], str]] = {
    "companies": _company_row,
    "contacts": _contact_row,
    "opportunities": _opportunity_row,
}


def import_csv(
    session: Session,
    cfg: config_mod.Config,
    kind: str,
    data: bytes,
    dry_run: bool = False,
    actor: str = "cli",
    sheet: str | None = None,
) -> ImportReport:
    """Import a CSV file or an Excel workbook (its first sheet, or `sheet`) of `kind`
    (companies, contacts, opportunities): all rows or none.

    Owners must be users of the config file already written to the database
    (`configrows.ensure_config_rows`). Raises CsvError when the file cannot be read as such a
    table.
    """
    table = read_table(data, kind, sheet)
    run = _Run(session, cfg)
    errors: list[tuple[int, str]] = []
    outer = session.begin_nested()
    for line, values in table.rows:
        run.line = line
        before = (len(run.notes), dict(run.counts))
        try:
            with session.begin_nested():
                outcome = HANDLERS[kind](run, values)
            run.counts[outcome] = run.counts.get(outcome, 0) + 1
        except (crm.CrmError, ValueError) as exc:
            del run.notes[before[0] :]
            run.counts = before[1]
            run.company_ids.clear()
            errors.append((line, str(exc)))
    applied = not errors and not dry_run
    if applied:
        outer.commit()
        crm.relink(session, cfg, **run.touched)
        detail = {"rows": len(table.rows), **run.counts, "errors": 0}
        audit.record(session, actor, f"import.{kind}", kind, detail)
    else:
        outer.rollback()
    c = run.counts
    return ImportReport(
        kind,
        len(table.rows),
        c.get("created", 0),
        c.get("updated", 0),
        c.get("unchanged", 0),
        c.get("merged", 0),
        tuple(errors),
        tuple(run.notes),
        table.ignored,
        table.delimiter,
        table.encoding,
        applied,
    )


# --- exporting -------------------------------------------------------------------------------


def _export_rows(session: Session, kind: str) -> Iterator[list[str]]:
    def cells(*values: object) -> list[str]:
        return [
            fmt.escape_cell("|".join(v) if isinstance(v, tuple) else str(v or "")) for v in values
        ]

    if kind == "companies":
        for c in crmviews.companies(session):
            yield cells(c.name, c.domains, c.external_id)
    elif kind == "contacts":
        for p in crmviews.contacts(session):
            yield cells(
                p.first_name, p.last_name, p.emails, p.company, p.owner, p.status, p.phone,
                p.title, p.source, p.external_id,
            )  # fmt: skip
    else:
        for o in crmviews.opportunities(session):
            yield cells(
                o.reference, o.title, o.company, o.contacts, o.owner, o.stage, o.pipeline_step,
                o.amount, o.currency, o.expected_close,
            )  # fmt: skip


def export_csv(session: Session, kind: str, delimiter: str = ",") -> str:
    """All records of `kind` as CSV text: the header, then one row per record, CRLF line ends
    (RFC 4180). Raises CsvError for an unknown kind or a delimiter other than `,` `;` or tab.
    """
    if kind not in KINDS:
        raise CsvError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if delimiter not in (",", ";", "\t"):
        raise CsvError(f"delimiter {delimiter!r}: use ',', ';' or tab")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(fmt.EXPORT_COLUMNS[kind])
    writer.writerows(_export_rows(session, kind))
    return out.getvalue()
