"""Administration, what waits: the quarantine (items the sync could not store as messages,
with their reason in plain words and the raw file to download) and the outbox (emails
pending or failed, with a "Retry" button). Admins only; included by `web.admin`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.notify import outbox
from mailmanager.services import mailboxhealth, quarantine, queries
from mailmanager.web import deps

router = APIRouter()

SHOWN = 500  # quarantined items listed on the page (the CLI lists them all)
OUTBOX_STATUSES = ("pending", "sending", "dead")


@router.get("/admin/quarantine", response_class=HTMLResponse)
def quarantine_list(request: Request, viewer: deps.AdminViewer, mailbox: str = "") -> Response:
    names = [mb.name for mb in deps.web(request).cfg.mailboxes]
    wanted = mailbox if mailbox in names else None
    with deps.transaction(request) as s:
        items = quarantine.list_items(s, wanted)
    when = {i.id: mailboxhealth.as_instant(i.quarantined_at) for i in items}
    return deps.render(
        request,
        "admin_quarantine.html",
        {
            "section": "quarantine",
            "items": items[:SHOWN],
            "total": len(items),
            "shown": SHOWN,
            "when": when,
            "mailboxes": names,
            "mailbox": wanted or "",
        },
    )


@router.get("/admin/quarantine/{item_id}/raw")
def quarantine_raw(request: Request, item_id: int, viewer: deps.AdminViewer) -> Response:
    """The bytes the provider gave for the item, as a download (never shown inline)."""
    with deps.transaction(request) as s:
        data = quarantine.raw_bytes(s, item_id)
    if data is None:
        raise HTTPException(404)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="quarantine-{item_id}.raw"'},
    )


@dataclass(frozen=True)
class OutboxRow:
    id: int
    status: str
    recipient: str
    subject: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> OutboxRow:
        return cls(
            row["id"],
            row["status"],
            row["recipient"],
            row["subject"],
            row["attempts"],
            mailboxhealth.as_instant(row["next_attempt_at"]),
            row["last_error"],
        )


@router.get("/admin/outbox", response_class=HTMLResponse)
def outbox_list(request: Request, viewer: deps.AdminViewer, retried: int = 0) -> Response:
    with deps.transaction(request) as s:
        rows = [OutboxRow.of(r) for r in queries.outbox_rows(s, OUTBOX_STATUSES, limit=200)]
    return deps.render(
        request, "admin_outbox.html", {"section": "outbox", "rows": rows, "retried": retried}
    )


@router.post("/admin/outbox/{row_id}/retry")
def outbox_retry(request: Request, row_id: int, viewer: deps.AdminViewer) -> Response:
    """Queue a failed (or waiting) email for an attempt at the next flush, as
    `mailmanager outbox retry ID` does."""
    try:
        with deps.transaction(request) as s:
            outbox.retry(s, row_id, deps.now(request))
    except outbox.OutboxError as exc:
        raise HTTPException(400, str(exc)) from exc
    return deps.redirect(f"/admin/outbox?retried={row_id}")
