"""Admin routes (a token with the admin scope, which only an admin's token holds): the
mailboxes' health, "sync now", and the quarantine, as the admin pages offer them.

    GET    /mailboxes                   each mailbox: state, last sync, error, quarantined
    POST   /mailboxes/{name}/sync       sync it now (202 and the run; 409 while one runs)
    GET    /quarantine                  what the sync could not store, by id (cursor pages)
    GET    /quarantine/{id}             one item;  GET /quarantine/{id}/raw its bytes
    POST   /quarantine/{id}/retry       run its bytes through the sync again
    DELETE /quarantine/{id}             drop it for good (in the audit log)

"Sync now" runs in a background thread of this process (`services.syncnow.SyncRunner`,
one for the API, made at first use and stopped when the process exits); `GET /mailboxes`
shows its run. Reading a quarantined item's bytes is audited, as the CLI's is.
"""

from __future__ import annotations

import atexit
import threading
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mailmanager import spi
from mailmanager.api import paging, problems, v1
from mailmanager.services import mailboxhealth, privacy, quarantine, syncnow

router = APIRouter(tags=["admin"])
_RUNNER_LOCK = threading.Lock()


def runner(request: Request) -> syncnow.SyncRunner:
    """The API's "sync now" runner (one per app, made at first use; closed at exit)."""
    with _RUNNER_LOCK:
        found = getattr(request.app.state, "sync_runner", None)
        if not isinstance(found, syncnow.SyncRunner):
            state = v1.api(request)
            found = syncnow.SyncRunner(state.cfg, state.factory)
            request.app.state.sync_runner = found
            atexit.register(found.close)
        return found


class MailboxOut(BaseModel):
    """A mailbox's health (`state`: ok, error, never, disabled, syncing) and the last
    "sync now" run this server started, if any."""

    health: mailboxhealth.MailboxHealth
    last_run: syncnow.SyncRun | None


def _mailbox(request: Request, name: str) -> str:
    try:
        return v1.api(request).cfg.mailbox(name).name
    except spi.ConfigError:
        raise HTTPException(404, f"no mailbox {name!r} in the configuration") from None


@router.get("/mailboxes", summary="Mailboxes' health")
def mailboxes(request: Request, who: v1.Admin) -> list[MailboxOut]:
    """Every mailbox of the configuration, in its order: state, last sync and last success,
    last error and its kind, folders, messages, quarantined items, who syncs it now."""
    state = v1.api(request)
    with v1.transaction(request) as s:
        rows = mailboxhealth.overview(s, state.cfg, state.clock())
    sync_runner = runner(request)
    return [MailboxOut(health=row, last_run=sync_runner.last(row.name)) for row in rows]


@router.post("/mailboxes/{name}/sync", summary="Sync now", status_code=202)
def sync_now(request: Request, name: str, who: v1.Admin) -> syncnow.SyncRun:
    """Start one sync of the mailbox in the background; `GET /mailboxes` shows how it
    ends. 409 while it is being synced (from here, the workspace or the daemon)."""
    mailbox = _mailbox(request, name)
    state = v1.api(request)
    with v1.transaction(request) as s:
        # The workspace's own "sync now" runs in this process too, under a lease the
        # runner would take for its own: any live holder refuses.
        holder = mailboxhealth.syncing_by(s, mailbox, state.clock())
    try:
        if holder is not None:
            raise syncnow.SyncRefusedError("leased", holder)
        return runner(request).start(mailbox)
    except syncnow.SyncRefusedError as exc:
        why = {
            "running": "this server is syncing it already",
            "leased": f"a worker is syncing it ({exc.holder})",
            "stopping": "the server is stopping",
        }
        raise HTTPException(409, f"{mailbox}: {why.get(exc.reason, exc.reason)}") from None


class QuarantinePage(BaseModel):
    """Quarantined items by id; `next`: the cursor of the next page (null: last)."""

    items: list[quarantine.QuarantinedItem]
    next: str | None


@router.get("/quarantine", summary="The quarantine")
def quarantine_list(
    request: Request,
    who: v1.Admin,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
    mailbox: Annotated[str | None, Query(max_length=200)] = None,
) -> QuarantinePage:
    """What the sync could not store as messages, oldest first, with each reason in plain
    words (of one mailbox when `mailbox` names it)."""
    after = problems.cursor_id(cursor) or 0
    with v1.transaction(request) as s:
        found = quarantine.page_items(s, mailbox, after, limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return QuarantinePage(items=page, next=paging.encode(page[-1].id) if more else None)


def _item(request: Request, item_id: int) -> quarantine.QuarantinedItem:
    with v1.transaction(request) as s:
        item = quarantine.get_item(s, item_id)
    if item is None:
        raise HTTPException(404, f"no quarantined item {item_id}")
    return item


@router.get("/quarantine/{item_id}", summary="A quarantined item")
def quarantine_item(
    request: Request, item_id: problems.Id, who: v1.Admin
) -> quarantine.QuarantinedItem:
    return _item(request, item_id)


@router.get(
    "/quarantine/{item_id}/raw",
    summary="A quarantined item's bytes",
    response_class=Response,
    responses={
        200: {
            "description": "The bytes the provider gave.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    },
)
def quarantine_raw(request: Request, item_id: problems.Id, who: v1.Admin) -> Response:
    """The bytes the provider gave for the item (audited); 404 when none were kept."""
    with v1.transaction(request) as s:
        data = quarantine.raw_bytes(s, item_id)
        if data is not None:
            actor = f"api:{who.viewer.email}"
            target = f"quarantine:{item_id}"
            detail = {"token": who.token.id}
            privacy.record_read_apart(s, actor, "quarantine.read_raw", target, detail)
    if data is None:
        raise HTTPException(404, f"no bytes kept for quarantined item {item_id}")
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="quarantine-{item_id}.raw"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/quarantine/{item_id}/retry", summary="Retry")
def quarantine_retry(
    request: Request, item_id: problems.Id, who: v1.Admin
) -> quarantine.RetryOutcome:
    """Run the item's bytes through the sync's path again: `stored` (the item is gone,
    `message_id` the message it became), or kept with the reason that stopped it."""
    state = v1.api(request)
    try:
        with v1.transaction(request) as s:
            return quarantine.retry(s, state.cfg, item_id, f"api:{who.viewer.email}")
    except LookupError:
        raise HTTPException(404, f"no quarantined item {item_id}") from None


@router.delete("/quarantine/{item_id}", summary="Drop", status_code=204, response_class=Response)
def quarantine_drop(request: Request, item_id: problems.Id, who: v1.Admin) -> Response:
    """Delete the item and its bytes for good; the audit log keeps what it was."""
    try:
        with v1.transaction(request) as s:
            quarantine.drop(s, item_id, f"api:{who.viewer.email}")
    except LookupError:
        raise HTTPException(404, f"no quarantined item {item_id}") from None
    return Response(status_code=204)
