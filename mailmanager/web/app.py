"""The web workspace as an ASGI app: `create_app(cfg, session_factory)`.

Pages are server-rendered (Jinja2, `web/templates/`), every state change is a form POST
checked for its CSRF token (`deps.check_csrf`, app-wide), and every response carries a
Content-Security-Policy without inline script or style, no framing, no referrer across
sites and no MIME sniffing. Each page module (`PAGES`) is a router, with its navigation
entry when it has one. The REST API is mounted at `/api/v1` as an app of its own
(`api.app.create_api`): bearer tokens, no cookie, so no CSRF check; its own schema and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import anyio.to_thread
import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailmanager import __version__
from mailmanager import config as config_mod
from mailmanager.api import app as api_app
from mailmanager.db import models, store
from mailmanager.web import (
    admin,
    apitokens,
    dashboard,
    deps,
    followups,
    i18n,
    links,
    oidc,
    records,
    review,
    search,
    signin,
    threads,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PAGES = (
    signin,
    oidc,
    followups,
    links,
    records,
    threads,
    review,
    dashboard,
    search,
    apitokens,
    admin,
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


i18n.add(
    {
        "error.413": (
            "Envoi trop volumineux : envoyez un fichier plus petit (la limite est fixée par "
            "[web] max_upload_mb).",
            "Upload too large: send a smaller file (the limit is set by [web] max_upload_mb).",
        )
    }
)


class BodyLimit:
    """Refuse (413) a request whose body exceeds `limit` bytes, before any of it is read
    when it declares its Content-Length, else as soon as the streamed bytes pass the limit.
    (Forms are parsed for their CSRF field before anyone is known to be signed in: without
    this, a stranger could make the server spool any amount to disk.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            log.warning(
                "request body too large",
                extra={"action": "web_body_too_large", "path": scope.get("path", "")},
            )
            response = _error(Request(scope, receive), 413 if declared.isdigit() else 400)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise StarletteHTTPException(413)
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """Give every response the `SECURITY_HEADERS` it lacks; static files are cached
    instead (pages are private; the CSS is not). Plain ASGI: `@app.middleware("http")`
    would cost a task and a memory stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers.append(name, value)
                if static:
                    headers["Cache-Control"] = "public, max-age=3600"
            await send(message)

        await self.app(scope, receive, with_headers)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        auto_reload=False,  # templates change with the package, not while it runs
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown (SIGTERM, Ctrl-C), once requests are done: stop the "sync now" runs and
    wait for them a bounded time, off the event loop. At start: the thread pool's size,
    `[web] threads` (the event loop's default limiter serves sync routes and dependencies)."""
    state: deps.WebState = app.state.web
    anyio.to_thread.current_default_thread_limiter().total_tokens = state.cfg.web.threads
    yield
    await asyncio.to_thread(admin.shutdown, app)


def create_app(
    cfg: config_mod.Config,
    session_factory: sessionmaker[Session],
    clock: Callable[[], datetime] = models.utcnow,
    notice: Callable[[str], None] = lambda line: None,
    send_mail: bool = True,
) -> FastAPI:
    """The workspace over `cfg` and the database of `session_factory`. `clock` gives "now"
    (tests pin it); `notice` prints a line where the server runs (sign-in links, when
    `[web] sign_in_links` asks); with `send_mail`, queued sign-in emails are sent at once
    from a background thread (else they wait in the outbox for the daemon)."""
    app = FastAPI(
        title="mailmanager",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(deps.check_csrf)],
        lifespan=_lifespan,
    )
    store.for_pages(session_factory)  # a smaller SQLite page cache per connection
    state = deps.WebState(
        cfg=cfg,
        factory=session_factory,
        clock=clock,
        env=_environment(),
        notice=notice,
        mailer=signin.Mailer(cfg, session_factory) if send_mail else None,
    )
    state.nav = sorted(
        (p.NAV for p in PAGES if isinstance(getattr(p, "NAV", None), deps.NavItem)),
        key=lambda n: n.order,
    )
    app.state.web = state
    for page in PAGES:
        app.include_router(page.router)
    # Its own app: its own schema, errors and bearer tokens; no cookie, so no CSRF check.
    app.mount("/api/v1", api_app.create_api(cfg, session_factory, clock), name="api")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    app.add_middleware(BodyLimit, limit=cfg.web.max_upload_mb * 1024 * 1024)

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(deps.SignInRequired)
    async def sign_in_first(request: Request, exc: deps.SignInRequired) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = "" if target == "/" else "?" + urlencode({"next": target}, safe="/")
            return deps.redirect(f"/signin{query}")
        return _error(request, 401)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if exc.status_code == 400 and isinstance(exc.detail, str) else ""
        return _error(request, exc.status_code, detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, 400, "invalid form or query")

    return app


# How `mailmanager web` hands its configuration to worker processes (`[web] workers`).
WORKER_CONFIG = "MAILMANAGER_WEB_CONFIG"
WORKER_ADDRESS = "MAILMANAGER_WEB_ADDRESS"


def for_worker() -> FastAPI:
    """The app of one of several server processes (uvicorn's factory): the configuration
    file and address `mailmanager web` puts in the environment, whose database it checked.
    Each process has its own connection pool, "sync now" runner and outbox thread; sign-in
    limits, sessions and OIDC states are in the database, shared."""
    import dataclasses
    import os

    from mailmanager import logs
    from mailmanager.db import store

    cfg = config_mod.load(os.environ[WORKER_CONFIG])
    host, _, port = os.environ[WORKER_ADDRESS].rpartition(":")
    cfg = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, host=host, port=int(port)))
    logs.setup("WARNING", cfg.logging.format)
    engine = store.make_engine(cfg.database.url_with_secret())
    factory = store.session_factory(engine)
    return create_app(cfg, factory, notice=lambda line: print(line, flush=True))


def _error(request: Request, status: int, detail: str = "") -> Response:
    viewer = deps.optional_viewer(request)
    lang = i18n.locale_of(viewer.locale if viewer else request.headers.get("accept-language"))
    t = i18n.translator(lang)
    key = f"error.{status}"
    message = (
        t(key, detail=detail) if status == 400 else t(key) if status in (401, 403, 404, 413) else ""
    )
    context = {"title": t("error.title"), "message": message or str(status), "followups_link": True}
    return deps.render(request, "message.html", context, status)
