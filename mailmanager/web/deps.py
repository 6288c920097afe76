"""What every page of the workspace uses: the app's state, who is signed in, CSRF, rendering.

A page module (see /work/helpers/web-contract.md) defines `router = APIRouter()` and may
define `NAV = NavItem(...)`; its handlers take `viewer: Viewer = Depends(current_viewer)`
(or `admin_viewer`), open a transaction with `with transaction(request) as s:` and call
`services/`, then answer with `render(request, "page.html", {...})`.

Every POST (PUT, PATCH, DELETE) is checked by `check_csrf`, an app-wide dependency: the
form's `csrf` field must equal the session's token (signed in) or the `mm_csrf` cookie's
(signed out: double-submit); otherwise 403 and nothing runs. `render` puts the right token
in the template's `csrf`.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import jinja2
from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import store
from mailmanager.services import signin
from mailmanager.services.access import Viewer, viewer_for
from mailmanager.web import i18n

SESSION_COOKIE = "mm_session"
CSRF_COOKIE = "mm_csrf"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
_DATE = {"fr": "%d/%m/%Y", "en": "%d %b %Y"}
_TIME = {"fr": "%d/%m/%Y %H:%M", "en": "%d %b %Y %H:%M"}


@dataclass(frozen=True)
class NavItem:
    """A link of the top navigation: `label` is an i18n key; lower `order` comes first."""

    path: str
    label: str
    order: int
    visible: Callable[[Viewer], bool] = lambda viewer: True


@dataclass
class WebState:
    """The app's configuration and services, at `request.app.state.web`."""

    cfg: config_mod.Config
    factory: sessionmaker[Session]
    clock: Callable[[], datetime]
    env: jinja2.Environment
    notice: Callable[[str], None]  # prints a line where `mailmanager web` runs
    nav: list[NavItem] = field(default_factory=list)
    mailer: Any = None  # `web.signin.Mailer`


class SignInRequired(Exception):
    """Raised by `current_viewer`; the app answers with the sign-in page (303 for a GET)."""


def web(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def now(request: Request) -> datetime:
    return web(request).clock()


@contextmanager
def transaction(request: Request) -> Iterator[Session]:
    """One database transaction: committed when the block ends, rolled back on error."""
    with store.session_scope(web(request).factory) as s:
        yield s


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


_NO_SESSION = object()


def session_info(request: Request) -> signin.SessionInfo | None:
    """The live session of the request's cookie (looked up once per request)."""
    found = getattr(request.state, "mm_session", _NO_SESSION)
    if found is _NO_SESSION:
        token = request.cookies.get(SESSION_COOKIE, "")
        found = None
        if token:
            with transaction(request) as s:
                found = signin.session_for(s, web(request).cfg, token, now(request))
            if found is not None and found.stale:
                with transaction(request) as s:
                    signin.touch(s, found.id, now(request))
        request.state.mm_session = found
    assert found is None or isinstance(found, signin.SessionInfo)
    return found


def optional_viewer(request: Request) -> Viewer | None:
    info = session_info(request)
    return viewer_for(web(request).cfg, info.email) if info else None


def current_viewer(request: Request) -> Viewer:
    """The signed-in user (a FastAPI dependency). Raises SignInRequired."""
    viewer = optional_viewer(request)
    if viewer is None:
        raise SignInRequired()
    return viewer


def admin_viewer(request: Request) -> Viewer:
    """The signed-in admin (a FastAPI dependency): 403 for anyone else."""
    viewer = current_viewer(request)
    if not viewer.is_admin:
        raise HTTPException(403)
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
"""A handler parameter `viewer: CurrentViewer` is the signed-in user (else: sign-in page)."""
AdminViewer = Annotated[Viewer, Depends(admin_viewer)]
"""A handler parameter `viewer: AdminViewer` is the signed-in admin (else 403)."""


def csrf_token(request: Request) -> str:
    """The token this request's forms must carry back."""
    info = session_info(request)
    if info is not None:
        return info.csrf
    token = request.cookies.get(CSRF_COOKIE, "")
    if not token:
        token = getattr(request.state, "mm_new_csrf", "") or secrets.token_urlsafe(32)
        request.state.mm_new_csrf = token
    return token


async def check_csrf(request: Request) -> None:
    """App-wide dependency: refuse (403) a state-changing request without the right token."""
    if request.method not in UNSAFE:
        return
    form = await request.form()
    sent = form.get("csrf")
    info = session_info(request)
    expected = info.csrf if info else request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "csrf")


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def formatter(locale: str, timezone: str, time: bool = False) -> Callable[[datetime | None], str]:
    """A date (or date and time) formatter in the viewer's language and time zone."""
    pattern = (_TIME if time else _DATE)[i18n.locale_of(locale)]

    def fmt(value: datetime | None) -> str:
        return value.astimezone(_zone(timezone)).strftime(pattern) if value else ""

    return fmt


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    locale: str | None = None,
) -> HTMLResponse:
    """The page `template` (under web/templates) in the viewer's language (else `locale`,
    else the browser's). The template gets `t`, `lang`, `viewer`, `csrf`, `nav`, `path`,
    `date` and `datetime` (formatters in the viewer's time zone), and `context`."""
    state = web(request)
    viewer = optional_viewer(request)
    lang = i18n.locale_of(
        viewer.locale if viewer else locale or request.headers.get("accept-language")
    )
    tz = viewer.timezone if viewer else "UTC"
    values: dict[str, Any] = {
        "request": request,
        "t": i18n.translator(lang),
        "lang": lang,
        "viewer": viewer,
        "csrf": csrf_token(request),
        "nav": [n for n in state.nav if viewer and n.visible(viewer)],
        "path": request.url.path,
        "date": formatter(lang, tz),
        "datetime": formatter(lang, tz, time=True),
    }
    values.update(context or {})
    html = state.env.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code)
    new_csrf = getattr(request.state, "mm_new_csrf", "")
    if new_csrf:
        response.set_cookie(
            CSRF_COOKIE,
            new_csrf,
            httponly=True,
            samesite="lax",
            secure=state.cfg.web.secure_cookies,
            path="/",
        )
    return response


def redirect(url: str) -> RedirectResponse:
    """A 303 (See Other) to `url`: what a POST answers so that reloading does not repeat it."""
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None, default: str = "/followups") -> str:
    """`target` when it is a path on this site ("/..."), else `default`."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default
