"""Sign-in by emailed link, and sign-out.

GET /signin asks for the address; POST /signin answers the same page whether or not the
address is a user's (no enumeration), 429 past the rate limits. The email holds
/signin/<token>: its GET shows one button (mail scanners fetch links), its POST uses the
token once and opens the session (cookie HttpOnly, SameSite=Lax, Secure under https).
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import store
from mailmanager.errors import MailmanagerError
from mailmanager.notify import outbox
from mailmanager.services import signin
from mailmanager.web import deps, i18n

log = logging.getLogger(__name__)
router = APIRouter()

i18n.add(
    {
        "signin.title": ("Connexion", "Sign in"),
        "signin.intro": (
            "Indiquez votre adresse e-mail : vous recevrez un lien de connexion valable "
            "15 minutes.",
            "Enter your email address: you will get a sign-in link, valid for 15 minutes.",
        ),
        "signin.email": ("Adresse e-mail", "Email address"),
        "signin.send": ("Recevoir le lien", "Send me the link"),
        "signin.sent_title": ("Vérifiez vos e-mails", "Check your email"),
        "signin.sent": (
            "Si {email} est l'adresse d'un utilisateur, un lien de connexion vient de lui "
            "être envoyé. Il est valable 15 minutes et ne sert qu'une fois.",
            "If {email} belongs to a user, a sign-in link is on its way. It is valid for "
            "15 minutes and works once.",
        ),
        "signin.confirm_title": ("Se connecter", "Sign in"),
        "signin.confirm": (
            "Connexion en tant que {email}.",
            "Signing in as {email}.",
        ),
        "signin.confirm_button": ("Me connecter", "Sign me in"),
        "signin.bad_link": (
            "Ce lien de connexion n'est plus valable : il a expiré (15 minutes), a déjà "
            "servi, ou n'existe pas. Demandez-en un nouveau.",
            "This sign-in link no longer works: it expired (15 minutes), was used already, "
            "or does not exist. Ask for a new one.",
        ),
        "signin.again": ("Demander un nouveau lien", "Ask for a new link"),
        "signin.signed_out": ("Vous êtes déconnecté.", "You are signed out."),
    }
)


class Mailer:
    """Sends the outbox in a background thread after a sign-in link is queued, so the page
    answers at once; one flush at a time, and one more if asked meanwhile."""

    def __init__(self, cfg: config_mod.Config, factory: sessionmaker[Session]) -> None:
        self.cfg, self.factory = cfg, factory
        self._lock = threading.Lock()
        self._running = False
        self._again = False

    def kick(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        threading.Thread(target=self._run, name="web-outbox", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                report = outbox.flush(self.cfg, self.factory)
                with store.session_scope(self.factory) as s:
                    signin.scrub_sent_links(s)
                if report.error:
                    log.warning(
                        "sign-in email not sent",
                        extra={"action": "web_mail_error", "error": report.error},
                    )
            except MailmanagerError as exc:
                log.error(
                    "outbox flush failed", extra={"action": "web_mail_error", "error": str(exc)}
                )
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    """Give the browser its session cookie (also used by `web.oidc`)."""
    cfg = deps.web(request).cfg
    response.set_cookie(
        deps.SESSION_COOKIE,
        token,
        max_age=cfg.web.session_max_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=cfg.web.secure_cookies,
        path="/",
    )


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: str = "") -> Response:
    return deps.render(request, "signin.html", _form(request, next))


def _form(request: Request, next: str, email: str = "") -> dict[str, object]:
    """The sign-in form's context: `next`, `email`, and a button per `[[oidc]]` provider."""
    target = deps.safe_next(next)
    query = "?" + urlencode({"next": target}, safe="/") if target != "/followups" else ""
    providers = [(f"/signin/oidc/{p.slug}{query}", p.name) for p in deps.web(request).cfg.oidc]
    return {"next": target, "email": email, "providers": providers}


@router.post("/signin", response_class=HTMLResponse)
def signin_request(
    request: Request, email: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    state = deps.web(request)
    cfg = state.cfg
    email = email.strip()[:320]
    if "@" not in email:
        return deps.render(request, "signin.html", _form(request, next, email), 400)
    try:
        with deps.transaction(request) as s:
            found = signin.request_link(s, cfg, email, deps.client_ip(request), deps.now(request))
            url = ""
            if found is not None:
                user_email, token = found
                query = urlencode({"next": deps.safe_next(next)}, safe="/")
                url = f"{cfg.web.url}/signin/{token}?{query}"
                if cfg.web.email_sign_in_links:
                    signin.send_link(s, cfg, user_email, url, deps.now(request))
    except signin.RateLimited as exc:
        t = i18n.translator(i18n.locale_of(request.headers.get("accept-language")))
        return deps.render(
            request,
            "message.html",
            {"title": t("error.title"), "message": t("error.429", minutes=exc.minutes)},
            429,
        )
    if url:
        if cfg.web.print_sign_in_links:
            state.notice(f"Sign-in link for {user_email} (valid 15 minutes): {url}")
        if cfg.web.email_sign_in_links and state.mailer is not None:
            state.mailer.kick()
    return deps.render(request, "signin_sent.html", {"email": email})


@router.get("/signin/{token}", response_class=HTMLResponse)
def signin_confirm(request: Request, token: str, next: str = "") -> Response:
    with deps.transaction(request) as s:
        email = signin.peek_link(s, token, deps.now(request))
    cfg = deps.web(request).cfg
    if email is None or cfg.user(email) is None:
        return deps.render(request, "signin_bad.html", {}, 410)
    user = cfg.user(email)
    return deps.render(
        request,
        "signin_confirm.html",
        {"email": email, "token": token, "next": deps.safe_next(next)},
        locale=user.locale if user else None,
    )


@router.post("/signin/{token}", response_class=HTMLResponse)
def signin_consume(request: Request, token: str, next: Annotated[str, Form()] = "") -> Response:
    cfg = deps.web(request).cfg
    with deps.transaction(request) as s:
        email = signin.consume_link(s, cfg, token, deps.now(request))
        if email is None:
            return deps.render(request, "signin_bad.html", {}, 410)
        old = request.cookies.get(deps.SESSION_COOKIE, "")
        if old:
            signin.end_session(s, old, deps.now(request))
        cookie, _ = signin.start_session(s, cfg, email, deps.now(request))
    response = deps.redirect(deps.safe_next(next))
    set_session_cookie(response, request, cookie)
    return response


@router.post("/signout", response_class=HTMLResponse)
def signout(request: Request) -> Response:
    token = request.cookies.get(deps.SESSION_COOKIE, "")
    if token:
        with deps.transaction(request) as s:
            signin.end_session(s, token, deps.now(request))
    response = deps.redirect("/signin?signed_out=1")
    response.delete_cookie(deps.SESSION_COOKIE, path="/")
    return response
