"""CRM import by file upload (the admin page): the dry-run report first, then apply.

The rules are exactly those of `mailmanager import` (`crm.csvio.import_csv`: CSV or Excel,
all rows or none). Between the two steps the uploaded file waits on the server in a private
folder (mode 700), as a file of mode 600 named by a random id that only the uploader's page
knows; it is deleted when applied or discarded, and any left over is deleted after `MAX_AGE`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from mailmanager import config as config_mod
from mailmanager.crm import csvio
from mailmanager.crm import records as crm
from mailmanager.db import configrows
from mailmanager.errors import MailmanagerError

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 1024 * 1024  # an upload larger than this is refused
MAX_AGE = 3600.0  # seconds a staged upload is kept for its confirmation
KINDS = csvio.KINDS
_ID = re.compile(r"[A-Za-z0-9_-]{20,64}")


class UploadError(MailmanagerError):
    """The file cannot be imported at all (too large, empty, not a table of that kind, gone):
    the message says why and what to do."""


@dataclass(frozen=True)
class Staged:
    """An uploaded file waiting for its confirmation."""

    id: str
    kind: str
    filename: str
    size: int
    sheet: str | None
    owner: str  # who uploaded it: only they may apply it


def _folder(base: Path) -> Path:
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    return base


def _sweep(base: Path, now: float) -> None:
    """Delete the staged files older than `MAX_AGE` (an upload never confirmed)."""
    for path in base.glob("*"):
        try:
            if now - path.stat().st_mtime > MAX_AGE:
                path.unlink()
        except FileNotFoundError:
            pass


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def stage(
    base: Path, owner: str, kind: str, filename: str, data: bytes, sheet: str | None = None
) -> Staged:
    """Keep a file uploaded by `owner` for its confirmation. Raises `UploadError` when it is
    empty, too large, or `kind` is not one of `KINDS`."""
    if kind not in KINDS:
        raise UploadError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    if not data:
        raise UploadError("the file is empty: choose a CSV file or an Excel workbook")
    if len(data) > MAX_BYTES:
        raise UploadError(
            f"the file is {len(data) / 1e6:.1f} MB, more than the {MAX_BYTES // 1_000_000} MB "
            "an upload may be: split it, or use `mailmanager import` on the server"
        )
    folder = _folder(base)
    _sweep(folder, time.time())  # wall clock: file ages are compared with mtimes
    name = Path(filename).name[:200]
    staged = Staged(secrets.token_urlsafe(24), kind, name, len(data), sheet, owner)
    _write_private(folder / f"{staged.id}.data", data)
    meta = {"kind": kind, "filename": name, "sheet": sheet, "owner": owner}
    _write_private(folder / f"{staged.id}.json", json.dumps(meta).encode())
    log.info(
        "crm upload staged",
        extra={"action": "crm_upload_staged", "kind": kind, "size": len(data)},
    )
    return staged


def load(base: Path, upload_id: str, owner: str) -> tuple[Staged, bytes]:
    """The upload `upload_id` staged by `owner`, and its bytes. Raises `UploadError` when
    there is none (a wrong id, another user's, or one already applied, discarded or
    expired)."""
    gone = UploadError(
        "this upload is no longer waiting (applied, discarded or expired): upload the file again"
    )
    if not _ID.fullmatch(upload_id):
        raise gone
    try:
        meta = json.loads((base / f"{upload_id}.json").read_text())
        data = (base / f"{upload_id}.data").read_bytes()
    except (FileNotFoundError, ValueError) as exc:
        raise gone from exc
    if meta.get("owner") != owner:
        raise gone
    staged = Staged(upload_id, meta["kind"], meta["filename"], len(data), meta["sheet"], owner)
    return staged, data


def discard(base: Path, upload_id: str, owner: str) -> None:
    """Delete the upload `upload_id` staged by `owner` (nothing happens when there is none)."""
    try:
        load(base, upload_id, owner)
    except UploadError:
        return
    for suffix in (".data", ".json"):
        (base / f"{upload_id}{suffix}").unlink(missing_ok=True)


def run_import(
    session: Session,
    cfg: config_mod.Config,
    staged: Staged,
    data: bytes,
    apply: bool,
    actor: str,
) -> csvio.ImportReport:
    """The import of a staged file: a dry run (nothing written) or, when `apply`, for real,
    all rows or none, recorded in the audit log as done by `actor`. Raises `UploadError` when
    the file cannot be read as a table of its kind."""
    configrows.ensure_config_rows(session, cfg)
    try:
        report = csvio.import_csv(
            session, cfg, staged.kind, data, not apply, actor, staged.sheet or None
        )
    except (csvio.CsvError, crm.CrmError) as exc:
        raise UploadError(str(exc)) from exc
    log.info(
        "crm upload imported" if report.applied else "crm upload checked",
        extra={
            "action": "crm_upload_applied" if report.applied else "crm_upload_dry_run",
            "kind": staged.kind,
            "rows": report.rows,
            "errors": len(report.errors),
        },
    )
    return report
