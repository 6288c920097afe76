"""Sign-in with OpenID Connect providers (`[[oidc]]`): "Se connecter avec Google".

GET /signin/oidc/<slug> starts a login: the pending login (state, nonce, PKCE verifier, where
to go next) goes into a signed cookie valid 10 minutes, scoped to /signin/oidc, and the
browser to the provider. GET /signin/oidc/<slug>/callback checks the cookie and its `state`
(each state works once in this process), lets `services.oidc.finish` exchange the code and
validate the ID token, and opens the same session as an emailed link does when the verified
email is a configured user's. Anyone else gets a refusal page; no account is ever created.
(The start is a GET: it changes nothing but the pending login, as a link must allow.)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time

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

_used: dict[str, float] = {}  # state -> when it may be forgotten (monotonic)
_used_lock = threading.Lock()


def _first_use(state: str) -> bool:
    """True the first time a state comes back (within the pending lifetime)."""
    now = time.monotonic()
    with _used_lock:
        for old in [s for s, until in _used.items() if until < now]:
            del _used[old]
        if state in _used:
            return False
        _used[state] = now + oidc.PENDING_LIFETIME.total_seconds()
        return True


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


@router.get("/signin/oidc/{slug}", response_class=HTMLResponse)
def start(request: Request, slug: str, next: str = "") -> Response:
    provider = _provider(request, slug)
    try:
        url, pending = oidc.begin(
            provider, _redirect_uri(request, provider), deps.safe_next(next), deps.now(request)
        )
    except oidc.Refused as exc:
        log.warning(
            "oidc provider unavailable",
            extra={"action": "web_oidc_unavailable", "provider": slug, "error": str(exc)},
        )
        return _refuse(request, provider, "unavailable", 503)
    response = deps.redirect(url)
    response.set_cookie(
        COOKIE,
        oidc.seal(_key(request), pending),
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
    pending = oidc.unseal(_key(request), request.cookies.get(COOKIE, ""), now)
    if (
        pending is None
        or pending.provider != provider.slug
        or not state
        or not hmac.compare_digest(state, pending.state)
        or not code
        or not _first_use(pending.state)
    ):
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
