"""The signed links of reminder digests: /a/<token> (see `notify.actionlinks`).

A GET never changes anything (mail scanners fetch every link): it shows the follow-up and
one button; the POST applies that single action once, authorised by the token alone (no
session needed). An "open" link leads to the conversation (sign-in first if needed).
Expired, replayed or tampered links get a page that says so, with a way on.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.notify import actionlinks
from mailmanager.services import followups
from mailmanager.web import deps, i18n
from mailmanager.web import followups as followups_page

log = logging.getLogger(__name__)
router = APIRouter()

i18n.add(
    {
        "link.title": ("Relance", "Follow-up"),
        "link.confirm.snooze": (
            "Reporter cette relance de 3 jours ?",
            "Snooze this follow-up for 3 days?",
        ),
        "link.confirm.done": (
            "Marquer cette relance comme faite ?",
            "Mark this follow-up as done?",
        ),
        "link.confirm.dismiss": ("Ignorer cette relance ?", "Dismiss this follow-up?"),
        "link.button.snooze": ("Reporter de 3 jours", "Snooze 3 days"),
        "link.button.done": ("Marquer comme faite", "Mark as done"),
        "link.button.dismiss": ("Ignorer", "Dismiss"),
        "link.applied.snooze": (
            "La relance est reportée de 3 jours.",
            "The follow-up is snoozed for 3 days.",
        ),
        "link.applied.done": (
            "La relance est marquée comme faite.",
            "The follow-up is marked done.",
        ),
        "link.applied.dismiss": ("La relance est ignorée.", "The follow-up is dismissed."),
        "link.expired": (
            "Ce lien a expiré (il est valable 14 jours). Retrouvez la relance dans "
            "« Mes relances ».",
            "This link expired (links work for 14 days). Find the follow-up in “My follow-ups”.",
        ),
        "link.invalid": (
            "Ce lien n'est pas valable : il est incomplet ou a été modifié.",
            "This link is not valid: it is incomplete or was altered.",
        ),
        "link.used": (
            "Ce lien a déjà servi : chaque lien ne fonctionne qu'une fois.",
            "This link was used already: each link works once.",
        ),
        "link.gone": (
            "Cette relance n'existe plus, ou n'est pas la vôtre.",
            "This follow-up no longer exists, or is not yours.",
        ),
        "link.closed": (
            "Cette relance est déjà close : il n'y a plus rien à faire.",
            "This follow-up is closed already: nothing left to do.",
        ),
        "link.to_followups": ("Voir mes relances", "See my follow-ups"),
    }
)


@functools.cache
def _key(path: str) -> bytes:
    return actionlinks.load_key(path)


def key(request: Request) -> bytes:
    return _key(deps.web(request).cfg.web.secret_file)


def _page(request: Request, status: int, locale: str | None, key_: str, **ctx: Any) -> Response:
    t = i18n.translator(locale or i18n.locale_of(request.headers.get("accept-language")))
    context = {"title": t("link.title"), "message": t(key_), "followups_link": True, **ctx}
    return deps.render(request, "message.html", context, status, locale=locale)


def _claim(request: Request, token: str) -> actionlinks.Claim | Response:
    try:
        return actionlinks.verify(key(request), token, deps.now(request))
    except actionlinks.LinkError as exc:
        log.info("action link refused", extra={"action": "web_link_refused", "why": exc.reason})
        user = deps.web(request).cfg.user(exc.user) if exc.user else None
        status = 410 if exc.reason == "expired" else 400
        return _page(request, status, user.locale if user else None, f"link.{exc.reason}")


@router.get("/a/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str) -> Response:
    claim = _claim(request, token)
    if isinstance(claim, Response):
        return claim
    cfg = deps.web(request).cfg
    user = cfg.user(claim.user)
    locale = user.locale if user else None
    with deps.transaction(request) as s:
        try:
            _viewer, item = followups.link_target(s, cfg, claim, deps.now(request))
        except followups.LinkRefused as exc:
            return _page(request, 404, locale, f"link.{exc.reason}")
        used = followups.used(s, actionlinks.token_hash(token))
    if claim.action == "open":
        thread = item.thread_id if item else None
        return deps.redirect(f"/threads/{thread}" if thread else "/followups")
    if used:
        return _page(request, 410, locale, "link.used")
    if item is None:
        return _page(request, 410, locale, "link.closed")
    (row,) = followups_page.rows([item], i18n.locale_of(locale))
    return deps.render(
        request,
        "link_confirm.html",
        {"item": item, "row": row, "action": claim.action, "token": token},
        locale=locale,
    )


@router.post("/a/{token}", response_class=HTMLResponse)
def apply(request: Request, token: str) -> Response:
    claim = _claim(request, token)
    if isinstance(claim, Response):
        return claim
    cfg = deps.web(request).cfg
    user = cfg.user(claim.user)
    locale = user.locale if user else None
    if claim.action == "open":
        return deps.redirect(f"/a/{token}")
    try:
        with deps.transaction(request) as s:
            followups.act_by_link(s, cfg, claim, actionlinks.token_hash(token), deps.now(request))
    except followups.LinkRefused as exc:
        status = 404 if exc.reason == "gone" else 410
        return _page(request, status, locale, f"link.{exc.reason}")
    log.info("action link used", extra={"action": "web_link_used", "what": claim.action})
    return _page(request, 200, locale, f"link.applied.{claim.action}")
