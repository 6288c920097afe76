"""Sign-in with OpenID Connect providers (`[[oidc]]`): "Se connecter avec Google".

GET /signin/oidc/<slug> starts a login: the browser gets a random key in a cookie valid 10
minutes and scoped to /signin/oidc (kept when it has one, so two tabs may sign in at once),
the database a record of the pending login (`services.oidc.remember`), and the browser goes
to the provider. GET /signin/oidc/<slug>/callback takes the pending login of the `state` back
(`services.oidc.claim`: once, from the browser that started it, before it expires; in any
process of the server, and after a restart), lets `services.oidc.finish` exchange the code
and validate the ID token, and opens the same session as an emailed link does when the
verified email is a configured user's. Anyone else gets a refusal page; no account is ever
created. (The start is a GET: it changes nothing but the pending login, as a link must allow.)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.config.oidc import OidcProvider
from mailmanager.db import store
from mailmanager.notify import actionlinks
from mailmanager.services import oidc, signin
from mailmanager.services.access import viewer_for
from mailmanager.web import deps, i18n
from mailmanager.web import signin as signin_page

log = logging.getLogger(__name__)
router = APIRouter()

COOKIE = "mm_oidc"
COOKIE_PATH = "/signin/oidc"
_BROWSER_KEY = re.compile(r"[A-Za-z0-9_-]{43,128}")

i18n.add(
    {
        "oidc.with": ("Se connecter avec {name}", "Sign in with {name}"),
        "oidc.or": ("Ou, sans e-mail :", "Or, without email:"),
        "oidc.refused_title": ("Connexion refusée", "Sign-in refused"),
        "oidc.unknown": (
            "{name} vous a bien identifié, mais cette adresse n'est pas celle d'un "
            "utilisateur de mailmanager. Demandez à un administrateur de vous ajouter, ou "
            "connectez-vous avec l'adresse qu'il a enregistrée.",
            "{name} identified you, but that address is not a mailmanager user's. Ask an "
            "administrator to add you, or sign in with the address they registered.",
        ),
        "oidc.unverified": (
            "{name} n'a pas confirmé votre adresse e-mail : la connexion n'est pas possible "
            "ainsi. Utilisez le lien par e-mail.",
            "{name} has not verified your email address, so it cannot sign you in. Use the "
            "emailed link instead.",
        ),
        "oidc.failed": (
            "La connexion avec {name} n'a pas abouti (demande expirée, déjà utilisée ou "
            "réponse non valable). Recommencez depuis la page de connexion.",
            "Signing in with {name} did not work (the request expired, was used already, or "
            "the answer was not valid). Start again from the sign-in page.",
        ),
        "oidc.unavailable": (
            "{name} ne répond pas pour le moment. Réessayez plus tard, ou utilisez le lien "
            "par e-mail.",
            "{name} is not answering right now. Try again later, or use the emailed link.",
        ),
        "oidc.back": ("Retour à la connexion", "Back to sign-in"),
    }
)


def _key(request: Request) -> bytes:
    base = actionlinks.load_key(deps.web(request).cfg.web.secret_file)
    return hmac.new(base, b"mailmanager oidc pending", hashlib.sha256).digest()


def _provider(request: Request, slug: str) -> OidcProvider:
    for provider in deps.web(request).cfg.oidc:
        if provider.slug == slug:
            return provider
    raise HTTPException(404)


def _redirect_uri(request: Request, provider: OidcProvider) -> str:
    return f"{deps.web(request).cfg.web.url}/signin/oidc/{provider.slug}/callback"


def _refuse(request: Request, provider: OidcProvider, reason: str, status: int) -> Response:
    log.warning(
        "oidc sign-in refused",
        extra={"action": "web_oidc_refused", "provider": provider.slug, "reason": reason},
    )
    t = i18n.translator(i18n.locale_of(request.headers.get("accept-language")))
    response = deps.render(
        request,
        "oidc_refused.html",
        {"title": t("oidc.refused_title"), "message": t(f"oidc.{reason}", name=provider.name)},
        status,
    )
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _browser_key(request: Request) -> str:
    """The browser key of the request's cookie, "" when it has none (or not one of ours)."""
    found = request.cookies.get(COOKIE, "")
    return found if _BROWSER_KEY.fullmatch(found) else ""


@router.get("/signin/oidc/{slug}", response_class=HTMLResponse)
def start(request: Request, slug: str, next: str = "") -> Response:
    provider = _provider(request, slug)
    browser = _browser_key(request) or oidc.new_browser_key()
    now = deps.now(request)
    try:
        url, pending = oidc.begin(
            provider,
            _key(request),
            browser,
            _redirect_uri(request, provider),
            deps.safe_next(next),
            now,
        )
    except oidc.Refused as exc:
        log.warning(
            "oidc provider unavailable",
            extra={"action": "web_oidc_unavailable", "provider": slug, "error": str(exc)},
        )
        return _refuse(request, provider, "unavailable", 503)
    with deps.transaction(request) as s:
        oidc.remember(s, pending, now)
    response = deps.redirect(url)
    response.set_cookie(
        COOKIE,
        browser,
        max_age=int(oidc.PENDING_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",  # the callback is a top-level GET from the provider's site
        secure=deps.web(request).cfg.web.secure_cookies,
        path=COOKIE_PATH,
    )
    return response


@router.get("/signin/oidc/{slug}/callback", response_class=HTMLResponse)
def callback(request: Request, slug: str, state: str = "", code: str = "") -> Response:
    provider = _provider(request, slug)
    cfg = deps.web(request).cfg
    now = deps.now(request)
    pending = None
    if code:
        with deps.transaction(request) as s:
            pending = oidc.claim(s, _key(request), provider.slug, state, _browser_key(request), now)
    if pending is None:
        return _refuse(request, provider, "failed", 400)
    try:
        email = oidc.finish(provider, pending, code, _redirect_uri(request, provider), now)
    except oidc.Refused as exc:
        log.info(
            "oidc answer refused",
            extra={"action": "web_oidc_invalid", "provider": slug, "error": str(exc)},
        )
        status = {"unverified": 403, "unavailable": 503}.get(exc.reason, 400)
        return _refuse(request, provider, exc.reason, status)
    viewer = viewer_for(cfg, email)
    if viewer is None:
        return _refuse(request, provider, "unknown", 403)
    with deps.transaction(request) as s:
        store.write_first(s)
        old = request.cookies.get(deps.SESSION_COOKIE, "")
        if old:
            signin.end_session(s, old, now)
        cookie, _ = signin.start_session(s, cfg, viewer.email, now)
    log.info("signed in with oidc", extra={"action": "web_oidc_signin", "provider": slug})
    response = deps.redirect(deps.safe_next(pending.next))
    signin_page.set_session_cookie(response, request, cookie)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
