"""Importing opportunities with their creation and close dates, and Excel workbooks (.xlsx),
on a real database; the matcher then links mail only within an opportunity's known dates."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy.orm import Session

from mailmanager import config
from mailmanager.crm import csvio, opportunities
from mailmanager.crm import records as crm
from mailmanager.matching import cascade as matcher
from mailmanager.matching import reads
from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    book = openpyxl.Workbook()
    for n, (name, rows) in enumerate(sheets.items()):
        sheet = book.active if n == 0 else book.create_sheet(name)
        assert sheet is not None
        sheet.title = name
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


DATED = (
    "Référence;Intitulé;Société;Contacts;Étape;Date de création;Date de clôture\n"
    "OPP-1;Portes;Acme;jean@acme.fr;Perdue;15/01/2025;30/06/2025\n"
    "OPP-2;Fenêtres;Acme;jean@acme.fr;Gagnée;;\n"
    "OPP-3;Toiture;Acme;jean@acme.fr;Négociation;2026-02-01;31/12/2026\n"
)


def test_french_date_headers_give_created_and_closed_dates(s: Session, cfg: config.Config) -> None:
    report = csvio.import_csv(s, cfg, "opportunities", DATED.encode("cp1252"))
    s.commit()
    assert report.errors == () and report.created == 3
    lost, won, open_ = (opportunities.find(s, f"OPP-{n}") for n in (1, 2, 3))
    assert (lost.stage, lost.created_at, lost.closed_at) == (
        "lost", utc(2025, 1, 15), utc(2025, 6, 30)
    )  # fmt: skip
    assert won.stage == "won" and won.closed_at is None  # closed, dates unknown: not "now"
    # "Date de clôture" of an open opportunity is the expected one
    assert (open_.created_at, open_.closed_at, open_.expected_close) == (
        utc(2026, 2, 1), None, utc(2026, 12, 31)
    )  # fmt: skip

    ix = reads.load_all(s)
    assert ix.opps[lost.id].dates_known and not ix.opps[won.id].dates_known
    policy = matcher.Policy()

    def status(opp_id: int, when: datetime) -> str | None:
        return ix.opps[opp_id].status_at(when, policy.retro_window)

    assert status(lost.id, utc(2025, 3, 1)) == "active"
    assert status(lost.id, utc(2025, 7, 1)) is None
    assert all(status(won.id, utc(y, 6, 1)) is None for y in (2024, 2025, 2026))


@pytest.mark.parametrize(
    ("header", "value", "field", "expected"),
    [
        ("created_at", "2025-01-15", "created_at", utc(2025, 1, 15)),
        ("Created", "15.01.2025", "created_at", utc(2025, 1, 15)),
        ("Créée le", "15/01/25", "created_at", utc(2025, 1, 15)),
        ("closed_at", "2025-06-30T12:00:00", "closed_at", utc(2025, 6, 30)),
        ("Closed", "30/06/2025", "closed_at", utc(2025, 6, 30)),
        ("Close date", "30/06/2025", "closed_at", utc(2025, 6, 30)),
    ],
)
def test_date_header_spellings(
    s: Session, cfg: config.Config, header: str, value: str, field: str, expected: datetime
) -> None:
    text = f"reference,title,stage,{header}\nOPP-9,Test,lost,{value}\n"
    report = csvio.import_csv(s, cfg, "opportunities", text.encode())
    assert report.errors == ()
    assert getattr(opportunities.find(s, "OPP-9"), field) == expected


def test_bad_dates_are_reported_with_their_line(s: Session, cfg: config.Config) -> None:
    text = (
        "reference,title,stage,created,closed\n"
        "OPP-1,A,lost,2025-01-15,2025-06-30\n"
        "OPP-2,B,lost,hier,\n"
        "OPP-3,C,won,2025-06-30,2025-01-15\n"
    )
    report = csvio.import_csv(s, cfg, "opportunities", text.encode())
    assert not report.applied
    assert report.errors == (
        (3, "date 'hier': write 2026-03-31 or 31/03/2026"),
        (4, "close date 2025-01-15 is before the creation date 2025-06-30"),
    )


def test_workbook_with_french_headers_first_sheet_or_named(s: Session, cfg: config.Config) -> None:
    data = workbook(
        {
            "Notes": [["Rien à importer"]],
            "Contacts": [
                [None],
                ["Prénom", "Nom", "Courriel", "Société", "Téléphone"],
                ["Jean", "Dupont", "jean@acme.fr", "Acme", 33102030405],
                [None, None, None],
                ["Hélène", "Çelik", "helene@acme.fr | h.celik@gmail.com", "Acme", "01 02"],
            ],
        }
    )
    with pytest.raises(csvio.CsvError, match=r"line 1: no email .*columns found: Rien à importer"):
        csvio.import_csv(s, cfg, "contacts", data)
    with pytest.raises(csvio.CsvError, match=r"no sheet 'Clients' .*sheets: Notes, Contacts"):
        csvio.import_csv(s, cfg, "contacts", data, sheet="Clients")
    report = csvio.import_csv(s, cfg, "contacts", data, sheet="Contacts")
    assert report.errors == () and report.created == 2 and report.delimiter == ""
    assert report.encoding == "xlsx"
    jean = crm.find_contact(s, cfg, "jean@acme.fr")
    assert (jean.first_name, jean.phone) == ("Jean", "33102030405")
    assert crm.find_contact(s, cfg, "h.celik@gmail.com").last_name == "Çelik"


def test_workbook_errors_name_the_row_of_the_sheet(s: Session, cfg: config.Config) -> None:
    data = workbook(
        {
            "Affaires": [
                ["Référence", "Intitulé", "Étape", "Montant", "Date de création"],
                ["OPP-1", "Portes", "Perdue", "12 500,50 €", datetime(2025, 1, 15)],
                [],
                ["OPP-2", "Fenêtres", "Gagnée", "beaucoup", None],
            ]
        }
    )
    report = csvio.import_csv(s, cfg, "opportunities", data)
    assert report.errors == ((4, "amount 'beaucoup' is not a number"),) and not report.applied
    fixed = workbook(
        {
            "Affaires": [
                ["Référence", "Intitulé", "Étape", "Montant", "Date de création"],
                ["OPP-1", "Portes", "Perdue", 12500.5, datetime(2025, 1, 15)],
            ]
        }
    )
    assert csvio.import_csv(s, cfg, "opportunities", fixed).errors == ()
    opp = opportunities.find(s, "OPP-1")
    assert (str(opp.amount), opp.created_at) == ("12500.50", utc(2025, 1, 15))


def test_files_that_are_no_table_are_refused_with_what_to_do(
    s: Session, cfg: config.Config
) -> None:
    xls = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
    with pytest.raises(csvio.CsvError, match=r"old Excel file \(\.xls\).*\.xlsx"):
        csvio.import_csv(s, cfg, "contacts", xls)
    archive = io.BytesIO()
    with __import__("zipfile").ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(csvio.CsvError, match=r"zip archive but not an Excel workbook"):
        csvio.import_csv(s, cfg, "contacts", archive.getvalue())
    with pytest.raises(csvio.CsvError, match=r"--sheet 'A': this file is CSV text"):
        csvio.import_csv(s, cfg, "contacts", b"email\njean@acme.fr\n", sheet="A")


def test_cli_reads_a_workbook_named_csv_and_lists_the_headers(
    tmp_path: Path, db_url: str, write_config: ConfigWriter
) -> None:
    cfg = write_config(db_url, "")
    data = workbook(
        {
            "Feuil1": [["x"]],
            "Sociétés": [["Raison sociale", "Site web"], ["Acme", "https://www.acme.fr/"]],
        }
    )
    misnamed = tmp_path / "societes.csv"
    misnamed.write_bytes(data)
    report = cli_json("import", "companies", str(misnamed), "--sheet", "Sociétés", config=cfg)
    assert (report["created"], report["errors"]) == (1, [])
    again = cli("import", "companies", str(misnamed), "--sheet", "Sociétés", config=cfg)
    assert "1 unchanged" in again.stdout and "(Excel workbook)" in again.stdout
    wrong = cli("import", "companies", str(misnamed), config=cfg, check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "line 1: no name column (columns found: x)" in wrong.stderr
    assert "PK" not in wrong.stderr
    text = " ".join(cli("import", "--help").stdout.split())
    assert "Date de création" in text and "Date de clôture" in text and "--sheet" in text
