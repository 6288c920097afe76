"""Administration, CRM import by file upload: the same rules as `mailmanager import`
(`services.crmupload`, `crm.csvio`), in two steps. The upload is checked by a dry run whose
report the page shows (what would be created or updated, the errors with their line
numbers); the file waits on the server under a random id, and a second POST applies it (or
discards it). Admins only; included by `web.admin`.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from mailmanager.crm import csvio
from mailmanager.services import crmupload
from mailmanager.services.access import Viewer
from mailmanager.web import deps

router = APIRouter()
_LOCK = threading.Lock()


def uploads(request: Request) -> Path:
    """This app's private folder for uploads waiting for their confirmation (mode 700,
    removed when the process exits)."""
    with _LOCK:
        found = getattr(request.app.state, "admin_uploads", None)
        if not isinstance(found, Path):
            found = Path(tempfile.mkdtemp(prefix="mailmanager-uploads-"))
            atexit.register(shutil.rmtree, found, True)
            request.app.state.admin_uploads = found
        return found


def _page(request: Request, **context: object) -> HTMLResponse:
    values = {
        "section": "import",
        "kinds": crmupload.KINDS,
        "max_mb": crmupload.MAX_BYTES // 1_000_000,
        "staged": None,
        "report": None,
        "refused": "",
        "discarded": False,
        "applied": False,
    }
    values.update(context)
    return deps.render(request, "admin_import.html", values)


def _source(report: csvio.ImportReport) -> dict[str, str]:
    delimiter = {"\t": "tab"}.get(report.delimiter, report.delimiter)
    return {"delimiter": delimiter, "encoding": report.encoding}


@router.get("/admin/import", response_class=HTMLResponse)
def import_form(request: Request, viewer: deps.AdminViewer, discarded: int = 0) -> Response:
    return _page(request, discarded=bool(discarded))


def _actor(viewer: Viewer) -> str:
    return f"web:{viewer.email}"


@router.post("/admin/import", response_class=HTMLResponse)
def import_check(
    request: Request,
    viewer: deps.AdminViewer,
    kind: Annotated[str, Form()],
    file: UploadFile,
    sheet: Annotated[str, Form()] = "",
) -> Response:
    """Keep the file and show the dry run's report, with "Import for real" when it is clean."""
    data = file.file.read(crmupload.MAX_BYTES + 1)
    base = uploads(request)
    try:
        staged = crmupload.stage(
            base, viewer.email, kind, file.filename or "upload", data, sheet.strip() or None
        )
    except crmupload.UploadError as exc:
        return _page(request, refused=str(exc))
    try:
        with deps.transaction(request) as s:
            report = crmupload.run_import(
                s, deps.web(request).cfg, staged, data, apply=False, actor=_actor(viewer)
            )
    except crmupload.UploadError as exc:
        crmupload.discard(base, staged.id, viewer.email)
        return _page(request, refused=str(exc))
    if report.errors:
        crmupload.discard(
            base, staged.id, viewer.email
        )  # nothing can be applied: upload the fixed file
    return _page(request, staged=staged, report=report, source=_source(report), applied=False)


@router.post("/admin/import/{upload_id}/apply", response_class=HTMLResponse)
def import_apply(request: Request, upload_id: str, viewer: deps.AdminViewer) -> Response:
    """Import the waiting file for real (all rows or none) and show what was done."""
    base = uploads(request)
    try:
        staged, data = crmupload.load(base, upload_id, viewer.email)
    except crmupload.UploadError as exc:
        return _page(request, refused=str(exc))
    try:
        with deps.transaction(request) as s:
            report = crmupload.run_import(
                s, deps.web(request).cfg, staged, data, apply=True, actor=_actor(viewer)
            )
    except crmupload.UploadError as exc:
        return _page(request, refused=str(exc))
    finally:
        crmupload.discard(base, upload_id, viewer.email)  # applied, or to be fixed: gone
    return _page(request, staged=staged, report=report, source=_source(report), applied=True)


@router.post("/admin/import/{upload_id}/discard")
def import_discard(request: Request, upload_id: str, viewer: deps.AdminViewer) -> Response:
    crmupload.discard(uploads(request), upload_id, viewer.email)
    return deps.redirect("/admin/import?discarded=1")
