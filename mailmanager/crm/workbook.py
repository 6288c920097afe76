"""Excel workbooks (.xlsx) read as tables, for `csvio` to import like CSV files.

A workbook is a zip archive (ECMA-376 Part 2, Open Packaging Conventions): it is recognised
by its first bytes, `PK\\x03\\x04`, whatever the file is called, so a workbook saved as
`contacts.csv` is still read. openpyxl reads it in read-only mode (rows are streamed, not
held as cell objects), with the values Excel last computed rather than the formulas. Each row
keeps its number in the sheet, for the error report. Cells become the text a user sees: a
date as ISO (2026-03-31), a whole number without ".0".

An old binary Excel file (.xls, an OLE2 compound file) and zip archives that are not
workbooks are refused with what to do instead (`not_a_table`, `WorkbookError`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time

from mailmanager.errors import MailmanagerError

ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # MS-CFB: .xls, .msg, .doc


class WorkbookError(MailmanagerError):
    """Raised when a zip archive is not an Excel workbook openpyxl can read, or has no sheet
    of the name asked for."""


def is_workbook(data: bytes) -> bool:
    """A zip archive: an .xlsx workbook, or (told apart by `read_rows`) another archive."""
    return data.startswith(ZIP_MAGIC)


def not_a_table(data: bytes) -> str | None:
    """Why `data` is neither CSV text nor a workbook (an old .xls), or None."""
    if data.startswith(OLE2_MAGIC):
        return (
            "this is an old Excel file (.xls) or another Office binary file: in Excel, save it "
            "as 'Classeur Excel (.xlsx)' or 'CSV UTF-8' and import that"
        )
    return None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_rows(data: bytes, sheet: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as text) for each row of the first sheet, or of `sheet`.

    Raises WorkbookError when `data` is no readable workbook or has no such sheet.
    """
    import openpyxl  # only for workbooks: CSV imports do not pay for loading it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise WorkbookError(
            "this file is a zip archive but not an Excel workbook (.xlsx): export the sheet "
            f"as .xlsx or CSV ({exc})"
        ) from exc
    names = book.sheetnames
    if sheet is None:
        chosen = book.worksheets[0]
    elif sheet in names:
        chosen = book[sheet]
    else:
        raise WorkbookError(f"no sheet {sheet!r} in this workbook (sheets: {', '.join(names)})")
    return _rows(chosen.iter_rows(values_only=True))


def _rows(rows: Iterator[tuple[object, ...]]) -> Iterator[tuple[int, list[str]]]:
    started = False
    for number, row in enumerate(rows, start=1):
        cells = [_text(v) for v in row]
        if not started and not any(c.strip() for c in cells):
            continue  # blank lines above the header
        started = True
        yield number, cells
