"""API tokens / Jetons d'API: the signed-in user's bearer tokens of the REST API (`/api/v1`).

    GET  /tokens                 their tokens (never the token itself) and a form for a new one
    POST /tokens                 (name, scope..., expires_days) create one; the answer shows it
    POST /tokens/ID/revoke       revoke one of their own tokens

The new token is shown once, on the page answering the POST (not a redirect: only its hash
is stored, so no later page could show it; every response is `Cache-Control: no-store`).
The admin scope is offered to admins only (`services.apitokens.create` refuses it to anyone
else). Revoking checks the owner in `services.apitokens.revoke`: another user's token id is
answered 404, like an unknown one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.services import apitokens
from mailmanager.services.access import Viewer
from mailmanager.web import deps, i18n

router = APIRouter()
NAV = deps.NavItem("/tokens", "nav.tokens", 80)
MAX_DAYS = 3650

i18n.add(
    {
        "nav.tokens": ("Jetons d'API", "API tokens"),
        "tokens.title": ("Jetons d'API", "API tokens"),
        "tokens.intro": (
            "Un jeton permet à un autre logiciel (votre CRM, un script) d'utiliser l'API REST "
            "(/api/v1) en votre nom, avec les mêmes droits que vous, dans les limites de ses "
            "portées.",
            "A token lets another program (your CRM, a script) use the REST API (/api/v1) "
            "as you, with your rights, within its scopes.",
        ),
        "tokens.none": ("Vous n'avez aucun jeton.", "You have no tokens."),
        "tokens.name": ("Nom", "Name"),
        "tokens.scopes": ("Portées", "Scopes"),
        "tokens.created": ("Créé le", "Created"),
        "tokens.expires": ("Expire le", "Expires"),
        "tokens.last_used": ("Dernière utilisation", "Last used"),
        "tokens.state": ("État", "State"),
        "tokens.never": ("jamais", "never"),
        "tokens.state.active": ("actif", "active"),
        "tokens.state.revoked": ("révoqué", "revoked"),
        "tokens.state.expired": ("expiré", "expired"),
        "tokens.revoke": ("Révoquer", "Revoke"),
        "tokens.revoke_label": ("Révoquer le jeton « {name} »", "Revoke the token “{name}”"),
        "tokens.revoked": (
            "Jeton révoqué : il est refusé dès maintenant.",
            "Token revoked: it is refused from now on.",
        ),
        "tokens.new": ("Nouveau jeton", "New token"),
        "tokens.error.no_user": (
            "Votre compte n'est plus dans la configuration : demandez à un administrateur.",
            "Your account is no longer in the configuration: ask an administrator.",
        ),
        "tokens.error.no_name": (
            "Donnez un nom au jeton (à quoi il sert, par exemple le nom du CRM).",
            "Give the token a name (what it is for, e.g. the CRM's name).",
        ),
        "tokens.error.bad_scope": (
            "Portée inconnue : choisissez parmi {scopes}.",
            "Unknown scope: choose among {scopes}.",
        ),
        "tokens.error.admin_only": (
            "La portée « admin » est réservée aux administrateurs.",
            "The admin scope is for administrators only.",
        ),
        "tokens.error.bad_days": (
            "La durée de validité doit être comprise entre 1 et {max} jours.",
            "The validity must be between 1 and {max} days.",
        ),
        "tokens.error.unknown": ("Ce jeton n'existe pas.", "No such token."),
        "tokens.name_hint": (
            "À quoi il sert, par exemple le nom du CRM",
            "What it is for, e.g. the CRM's name",
        ),
        "tokens.scope.read": ("lecture", "read"),
        "tokens.scope.write": ("écriture", "write"),
        "tokens.scope.admin": ("administration", "admin"),
        "tokens.expires_days": (
            "Expire après (jours, vide = jamais)",
            "Expires after (days, empty = never)",
        ),
        "tokens.create": ("Créer le jeton", "Create the token"),
        "tokens.created_title": ("Jeton créé", "Token created"),
        "tokens.copy_now": (
            "Copiez ce jeton maintenant : il ne sera plus jamais affiché. S'il est perdu, "
            "créez-en un autre et révoquez celui-ci.",
            "Copy this token now: it will not be shown again. If it is lost, create another "
            "and revoke this one.",
        ),
        "tokens.scopes_of": ("Portées : {scopes}", "Scopes: {scopes}"),
        "tokens.expires_on": ("expire le {when}", "expires on {when}"),
        "tokens.back": ("Retour aux jetons", "Back to the tokens"),
        "tokens.bad_days": (
            "La durée doit être un nombre de jours entre 1 et {max}.",
            "The expiry must be a number of days from 1 to {max}.",
        ),
    }
)


def _page(
    request: Request,
    viewer: Viewer,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with deps.transaction(request) as s:
        tokens = apitokens.list_tokens(s, viewer.email)
    offered = [sc for sc in apitokens.SCOPES if sc != "admin" or viewer.is_admin]
    values: dict[str, Any] = {
        "tokens": tokens,
        "now": deps.now(request),
        "offered": offered,
        "max": MAX_DAYS,
        "done": False,
        "error": "",
        "form_name": "",
        "form_scopes": ["read"],
        "form_days": "",
    }
    values.update(context or {})
    return deps.render(request, "api_tokens.html", values, status_code=status_code)


@router.get("/tokens", response_class=HTMLResponse)
def page(request: Request, viewer: deps.CurrentViewer, done: str = "") -> Response:
    return _page(request, viewer, {"done": done == "revoked"})


def _days(value: str) -> int | None:
    """The form's expiry in days: None when empty; raises ValueError when not 1..MAX_DAYS."""
    if not value.strip():
        return None
    days = int(value.strip())
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(value)
    return days


@router.post("/tokens", response_class=HTMLResponse)
def create(
    request: Request,
    viewer: deps.CurrentViewer,
    name: Annotated[str, Form()] = "",
    scope: Annotated[list[str] | None, Form()] = None,
    expires_days: Annotated[str, Form()] = "",
) -> Response:
    form = {"form_name": name, "form_scopes": scope or ["read"], "form_days": expires_days}
    try:
        days = _days(expires_days)
    except ValueError:
        error = i18n.translator(viewer.locale)("tokens.bad_days", max=MAX_DAYS)
        return _page(request, viewer, {"error": error, **form}, status_code=400)
    try:
        with deps.transaction(request) as s:
            info, token = apitokens.create(
                s, deps.web(request).cfg, viewer.email, name, scope or (), deps.now(request), days
            )
    except apitokens.TokenError as exc:
        t = i18n.translator(viewer.locale)
        error = t(f"tokens.error.{exc.reason}", scopes=", ".join(apitokens.SCOPES), max=MAX_DAYS)
        return _page(request, viewer, {"error": error, **form}, status_code=400)
    return deps.render(request, "api_token_created.html", {"info": info, "token": token})


@router.post("/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke(request: Request, token_id: int, viewer: deps.CurrentViewer) -> Response:
    try:
        with deps.transaction(request) as s:
            apitokens.revoke(s, token_id, deps.now(request), owner=viewer.email)
    except apitokens.TokenError:
        raise HTTPException(404) from None
    return deps.redirect("/tokens?done=revoked")
