"""Administration, webhooks / Webhooks (admins only; included by `web.admin`).

    GET  /admin/webhooks                            subscriptions, a form, last deliveries
    POST /admin/webhooks                            (url, event..., description) add one: the
                                                    answer shows its signing secret, once
    POST /admin/webhooks/ID/test                    queue a test event for it
    POST /admin/webhooks/ID/delete                  remove it (and its deliveries)
    POST /admin/webhooks/deliveries/ID/redeliver    queue a dead delivery again

All of it goes through `services.webhooks` (SSRF checks, the secret encrypted at rest).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.services import webhooks
from mailmanager.services.access import Viewer
from mailmanager.web import deps, i18n

router = APIRouter()
SHOWN = 50  # last deliveries listed

i18n.add(
    {
        "admin.webhooks": ("Webhooks", "Webhooks"),
        "wh.intro": (
            "Un webhook envoie chaque événement choisi à une adresse (URL) de votre "
            "logiciel, signé selon Standard Webhooks, et le renvoie jusqu'à ce qu'il soit reçu.",
            "A webhook posts each chosen event to a URL of your software, signed per Standard "
            "Webhooks, and sends it again until it is received.",
        ),
        "wh.none": ("Aucun webhook.", "No webhooks."),
        "wh.url": ("URL", "URL"),
        "wh.events": ("Événements", "Events"),
        "wh.description": ("Description", "Description"),
        "wh.waiting": ("En attente", "Waiting"),
        "wh.dead": ("En échec", "Failed"),
        "wh.actions": ("Actions", "Actions"),
        "wh.test": ("Envoyer un événement de test", "Send test event"),
        "wh.delete": ("Supprimer", "Delete"),
        "wh.new": ("Nouveau webhook", "New webhook"),
        "wh.create": ("Ajouter le webhook", "Add the webhook"),
        "wh.tested": (
            "Événement de test mis en file ({id}) : il part au prochain passage.",
            "Test event queued ({id}): it goes out at the next delivery pass.",
        ),
        "wh.deleted": ("Webhook supprimé.", "Webhook deleted."),
        "wh.redelivered": ("Livraison remise en file.", "Delivery queued again."),
        "wh.created_title": ("Webhook ajouté", "Webhook added"),
        "wh.copy_now": (
            "Copiez ce secret de signature maintenant : il ne sera plus jamais affiché. "
            "Votre logiciel s'en sert pour vérifier chaque envoi.",
            "Copy this signing secret now: it will not be shown again. Your software uses "
            "it to verify each delivery.",
        ),
        "wh.secret": ("Secret de signature", "Signing secret"),
        "wh.back": ("Retour aux webhooks", "Back to the webhooks"),
        "wh.deliveries": ("Dernières livraisons", "Last deliveries"),
        "wh.no_deliveries": ("Aucune livraison.", "No deliveries."),
        "wh.d.event": ("Événement", "Event"),
        "wh.d.status": ("État", "Status"),
        "wh.d.attempts": ("Essais", "Attempts"),
        "wh.d.code": ("Réponse HTTP", "HTTP answer"),
        "wh.d.error": ("Dernière erreur", "Last error"),
        "wh.d.latency": ("Délai (ms)", "Latency (ms)"),
        "wh.d.next": ("Prochain essai", "Next attempt"),
        "wh.d.redeliver": ("Renvoyer", "Redeliver"),
        "wh.st.pending": ("en attente", "pending"),
        "wh.st.sending": ("en cours", "sending"),
        "wh.st.delivered": ("livrée", "delivered"),
        "wh.st.dead": ("en échec", "dead"),
        "wh.error.target": ("Adresse refusée : {detail}", "Address refused: {detail}"),
        "wh.error.types": (
            "Choisissez au moins un type d'événement.",
            "Choose at least one event type.",
        ),
        "wh.error.key": (
            "Aucune clé secrète n'est configurée sur le serveur (MAILMANAGER_SECRET_KEY) : "
            "demandez-la à l'exploitant.",
            "No secret key is configured on the server (MAILMANAGER_SECRET_KEY): ask its operator.",
        ),
        "wh.error.missing": ("Ce webhook n'existe pas.", "No such webhook."),
        "wh.error.state": (
            "Seule une livraison en échec peut être renvoyée.",
            "Only a failed delivery can be redelivered.",
        ),
    }
)

_NOTICES = ("tested", "deleted", "redelivered")


def _page(
    request: Request, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    with deps.transaction(request) as s:
        subs = webhooks.list_subscriptions(s)
        last = webhooks.deliveries(s, limit=SHOWN)
    values: dict[str, Any] = {
        "section": "webhooks",
        "subs": subs,
        "deliveries": last,
        "types": webhooks.EVENT_TYPES,
        "error": "",
        "notice": "",
        "notice_id": "",
        "form_url": "",
        "form_types": [],
        "form_description": "",
    }
    values.update(context or {})
    return deps.render(request, "admin_webhooks.html", values, status_code=status_code)


@router.get("/admin/webhooks", response_class=HTMLResponse)
def page(request: Request, viewer: deps.AdminViewer, done: str = "", id: str = "") -> Response:
    notice = done if done in _NOTICES else ""
    return _page(request, {"notice": notice, "notice_id": id[:40] if notice else ""})


def _error(viewer: Viewer, exc: webhooks.WebhookError) -> str:
    return i18n.translator(viewer.locale)(f"wh.error.{exc.reason}", detail=str(exc))


@router.post("/admin/webhooks", response_class=HTMLResponse)
def create(
    request: Request,
    viewer: deps.AdminViewer,
    url: Annotated[str, Form()] = "",
    event: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form()] = "",
) -> Response:
    form = {"form_url": url, "form_types": event or [], "form_description": description}
    try:
        with deps.transaction(request) as s:
            made = webhooks.create(
                s, deps.web(request).cfg, url, event or [], f"web:{viewer.email}", description,
                deps.now(request),
            )  # fmt: skip
    except webhooks.WebhookError as exc:
        return _page(request, {"error": _error(viewer, exc), **form}, status_code=400)
    return deps.render(
        request,
        "admin_webhook_created.html",
        {"section": "webhooks", "sub": made.subscription, "secret": made.secret},
    )


@router.post("/admin/webhooks/{sub_id}/test")
def send_test(request: Request, sub_id: int, viewer: deps.AdminViewer) -> Response:
    try:
        with deps.transaction(request) as s:
            wid = webhooks.send_test(s, sub_id, f"web:{viewer.email}")
    except webhooks.WebhookError:
        raise HTTPException(404) from None
    return deps.redirect(f"/admin/webhooks?done=tested&id={wid}")


@router.post("/admin/webhooks/{sub_id}/delete")
def delete(request: Request, sub_id: int, viewer: deps.AdminViewer) -> Response:
    try:
        with deps.transaction(request) as s:
            webhooks.delete(s, sub_id, f"web:{viewer.email}")
    except webhooks.WebhookError:
        raise HTTPException(404) from None
    return deps.redirect("/admin/webhooks?done=deleted")


@router.post("/admin/webhooks/deliveries/{delivery_id}/redeliver")
def redeliver(request: Request, delivery_id: int, viewer: deps.AdminViewer) -> Response:
    try:
        with deps.transaction(request) as s:
            webhooks.redeliver(s, delivery_id, f"web:{viewer.email}")
    except webhooks.WebhookError as exc:
        raise HTTPException(404 if exc.not_found else 400, str(exc)) from None
    return deps.redirect("/admin/webhooks?done=redelivered")
