"""`/api/v1` as its own ASGI app (`create_api`), mounted by the web workspace's app.

Its own app, not routes of the workspace's: the schema at `/api/v1/openapi.json` (OpenAPI
3.1) describes the API alone, never a page; no cookie is read and the pages' CSRF check
does not apply (a bearer token is not sent by a browser on its own); every error is an
RFC 9457 problem detail (`application/problem+json`: type, title, status, detail).
The interactive docs (`/api/v1/docs`, Swagger UI) are served from the files of the
`fastapi-offline` package (no CDN: the docs work on a server without internet access), with
a Content-Security-Policy of their own: scripts from the server, its one inline script
allowed by its hash (Swagger UI sets inline styles).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailmanager import __version__
from mailmanager import config as config_mod
from mailmanager.api import admin, mail, records, reminders, review, timeline, v1, webhooks
from mailmanager.api.etag import ETagMiddleware
from mailmanager.db import models

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
STATIC = "/static"  # Swagger UI's files, under PREFIX
# Swagger UI 5 (OpenAPI 3.1 needs it), as the fastapi-offline package ships it.
SWAGGER_UI = str(Path(fastapi_offline.__file__).parent / "static")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


class Api(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """The schema with each path as clients call it (`/api/v1/me`), not as mounted."""
        if self.openapi_schema is None:
            schema = get_openapi(
                title=self.title,
                version=self.version,
                openapi_version="3.1.0",
                description=self.description,
                routes=self.routes,
            )
            schema["paths"] = {PREFIX + p: ops for p, ops in schema.get("paths", {}).items()}
            document_problems(schema)
            self.openapi_schema = schema
        return self.openapi_schema


# The errors any operation may answer, as RFC 9457 problem details (`problem`).
PROBLEM_SCHEMA = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem detail.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
ERRORS = {
    "401": "No token, or one unknown, revoked or expired (`WWW-Authenticate: Bearer`).",
    "403": "The token lacks the scope, or its user may not do this.",
    "404": "No such item, or not one the caller may see.",
    "422": "The request's parameters or body are not valid.",
    "429": "The token's rate limit (`[api] requests_per_minute`); see `Retry-After`.",
}
PER_METHOD = {"post": ("400", "409", "413"), "patch": ("400", "409"), "put": ("400", "409", "413")}
MORE_ERRORS = {
    "400": "The body is not JSON.",
    "409": "The change conflicts with a stored item (e.g. an identifier already taken).",
    "413": "The request carries more items than the route accepts.",
}


def document_problems(schema: dict[str, Any]) -> None:
    """Give every operation the error answers it may give, each a `Problem`
    (`application/problem+json`), in place of FastAPI's `HTTPValidationError` for 422."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = {**ERRORS, **{c: MORE_ERRORS[c] for c in PER_METHOD.get(method, ())}}
            for code, text in codes.items():
                answer = responses.setdefault(code, {"description": text})
                answer["content"] = ref


def problem(status: int, detail: str = "", headers: Mapping[str, str] | None = None) -> Response:
    """An RFC 9457 problem detail; `type` is `about:blank` (the status says it all)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail or title}
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM)


def _docs() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=f"{PREFIX}/openapi.json",
        title="mailmanager API",
        swagger_js_url=f"{PREFIX}{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}{STATIC}/favicon.png",
    )
    body = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(body)
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'none'"
    )
    return page


def create_api(
    cfg: config_mod.Config,
    session_factory: sessionmaker[Session],
    clock: Callable[[], datetime] = models.utcnow,
) -> FastAPI:
    """The API over `cfg` and the database of `session_factory`; `clock` gives "now"."""
    app = Api(
        title="mailmanager API",
        version=__version__,
        description=(
            "The REST API of mailmanager. Authenticate with a bearer token from "
            "`mailmanager tokens create`; a token acts as its user, with the same "
            "visibility rules as the web workspace. Errors are RFC 9457 problem details."
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        root_path_in_servers=False,
    )
    app.state.api = v1.ApiState(cfg=cfg, factory=session_factory, clock=clock)
    app.include_router(v1.router)
    for part in (records, mail, timeline, review, reminders, admin, webhooks):
        app.include_router(part.router)
    app.add_middleware(ETagMiddleware)
    app.add_api_route("/docs", _docs, include_in_schema=False)
    app.mount(STATIC, StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else ""
        return problem(exc.status_code, detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return problem(422, where)

    return app
