"""Administration (admins only, 403 for anyone else): the mailboxes' health with their
"Test" and "Sync now" buttons, and the users and roles of the config file. The quarantine and
the outbox are in `admin_queues`, the CRM import by upload in `admin_import`, the webhooks
in `admin_webhooks`; their routers
are included here (the app includes this module's `router`).

"Sync now" runs one sync of a mailbox in a background thread of this process
(`services.syncnow`): a second click while it runs, or a daemon syncing the same mailbox,
is refused with a notice; the page shows "running", then the result. When the server stops,
`shutdown` (from the app's lifespan) asks a running one to stop and waits for it.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager import spi
from mailmanager.services import mailboxcheck, mailboxhealth, syncnow
from mailmanager.web import admin_import, admin_queues, admin_text, admin_webhooks, deps

router = APIRouter()
NAV = deps.NavItem("/admin", "nav.admin", 90, lambda viewer: viewer.is_admin)
router.include_router(admin_queues.router)
router.include_router(admin_import.router)
router.include_router(admin_webhooks.router)
_ = admin_text  # its strings are added to the catalogue at import

_RUNNER_LOCK = threading.Lock()


def runner(request: Request) -> syncnow.SyncRunner:
    """This app's "sync now" runner (one per app, made at first use)."""
    with _RUNNER_LOCK:
        found = getattr(request.app.state, "admin_sync", None)
        if not isinstance(found, syncnow.SyncRunner):
            state = deps.web(request)
            found = syncnow.SyncRunner(state.cfg, state.factory)
            request.app.state.admin_sync = found
        return found


def shutdown(app: FastAPI) -> None:
    """At server shutdown (the app's lifespan): stop this app's "sync now" runs and wait
    for them a bounded time (`syncnow.SyncRunner.close`)."""
    with _RUNNER_LOCK:
        found = getattr(app.state, "admin_sync", None)
    if isinstance(found, syncnow.SyncRunner):
        found.close()


def render(request: Request, template: str, section: str, **context: Any) -> HTMLResponse:
    """An admin page: `section` is the current one of the admin sub-navigation."""
    return deps.render(request, template, {"section": section, **context})


def _mailbox(request: Request, name: str) -> str:
    """`name` when it is a mailbox of the config file, else 404."""
    try:
        return deps.web(request).cfg.mailbox(name).name
    except spi.ConfigError:
        raise HTTPException(404) from None


@router.get("/admin", response_class=HTMLResponse)
def mailboxes(
    request: Request, viewer: deps.AdminViewer, notice: str = "", name: str = "", who: str = ""
) -> Response:
    cfg = deps.web(request).cfg
    with deps.transaction(request) as s:
        rows = mailboxhealth.overview(s, cfg, deps.now(request))
    sync_runner = runner(request)
    runs = {mb.name: run for mb in rows if (run := sync_runner.last(mb.name)) is not None}
    return render(
        request,
        "admin_mailboxes.html",
        "mailboxes",
        mailboxes=rows,
        runs=runs,
        running=any(r.state == "running" for r in runs.values()),
        notice=notice if notice in ("started", "running", "leased") else "",
        notice_name=name,
        notice_who=who,
    )


@router.post("/admin/mailboxes/{name}/test", response_class=HTMLResponse)
def mailbox_test(request: Request, name: str, viewer: deps.AdminViewer) -> Response:
    """Run `mailbox test NAME`'s steps now and show each one (a POST: it connects out)."""
    state = deps.web(request)
    result = mailboxcheck.check_mailbox(state.cfg, _mailbox(request, name), state.factory)
    return render(request, "admin_test.html", "mailboxes", result=result)


@router.post("/admin/mailboxes/{name}/sync")
def mailbox_sync(request: Request, name: str, viewer: deps.AdminViewer) -> Response:
    mailbox = _mailbox(request, name)
    query = {"name": mailbox}
    try:
        runner(request).start(mailbox)
        query["notice"] = "started"
    except syncnow.SyncRefusedError as exc:
        query["notice"] = exc.reason
        query["who"] = exc.holder
    return deps.redirect(f"/admin?{urlencode(query, quote_via=quote)}#mb-{mailbox}")


@router.get("/admin/users", response_class=HTMLResponse)
def users(request: Request, viewer: deps.AdminViewer) -> Response:
    team = mailboxhealth.team(deps.web(request).cfg)
    return render(request, "admin_users.html", "users", team=team)
