"""Clients / client record pages: find a company, contact or opportunity, and see its whole
conversation across the team's mailboxes, as `services.records` lets the viewer see it.

    GET  /clients?q=...                    look a client up
    GET  /companies/ID, /contacts/ID, /opportunities/ID
    POST /threads/ID/link, /threads/ID/unlink   (kind, ref, next) link or unlink by hand

A refusal from `access` is answered here for every page of this area (`refused`): 404 when
the viewer may not know the thing exists, 403 with a plain explanation when they may see
that it exists but not its content.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.config import reminder_kinds
from mailmanager.notify import digest
from mailmanager.services import curation, records
from mailmanager.services.access import AccessError, Viewer
from mailmanager.web import deps, i18n

router = APIRouter()
NAV = deps.NavItem("/clients", "nav.clients", 20)
OKS = ("link", "unlink")
PATHS = {"company": "companies", "contact": "contacts", "opportunity": "opportunities"}

i18n.add(
    {
        "records.title": ("Clients", "Clients"),
        "records.search": ("Rechercher un client", "Find a client"),
        "records.search_hint": (
            "Nom, domaine, adresse e-mail ou référence",
            "Name, domain, email address or reference",
        ),
        "records.go": ("Rechercher", "Search"),
        "records.companies": ("Sociétés", "Companies"),
        "records.contacts": ("Contacts", "Contacts"),
        "records.opportunities": ("Opportunités", "Opportunities"),
        "records.nothing": ("Aucun résultat.", "Nothing found."),
        "records.kind.company": ("Société", "Company"),
        "records.kind.contact": ("Contact", "Contact"),
        "records.kind.opportunity": ("Opportunité", "Opportunity"),
        "records.details": ("Fiche", "Details"),
        "records.domains": ("Domaines", "Domains"),
        "records.emails": ("Adresses", "Addresses"),
        "records.owner": ("Responsable", "Owner"),
        "records.status": ("Statut", "Status"),
        "records.stage": ("Étape", "Stage"),
        "records.amount": ("Montant", "Amount"),
        "records.expected_close": ("Clôture prévue", "Expected close"),
        "records.phone": ("Téléphone", "Phone"),
        "records.job": ("Fonction", "Title"),
        "records.engagement": ("Relation", "Engagement"),
        "records.segment": ("Segment", "Segment"),
        "records.segment.vip": ("VIP", "VIP"),
        "records.segment.active": ("Actif", "Active"),
        "records.segment.at_risk": ("À relancer", "At risk"),
        "records.segment.dormant": ("Dormant", "Dormant"),
        "records.last_in": ("Dernier message reçu", "Last message received"),
        "records.last_out": ("Dernier message envoyé", "Last message sent"),
        "records.exchanges": (
            "Échanges sur 30 / 90 / 365 jours",
            "Exchanges over 30 / 90 / 365 days",
        ),
        "records.linked": ("Fiches liées", "Linked records"),
        "records.reminders": ("Relances ouvertes", "Open follow-ups"),
        "records.reminder.awaiting_reply": ("En attente de réponse", "Awaiting a reply"),
        "records.reminder.needs_response": ("Réponse à faire", "Needs a response"),
        "records.reminder.bounced": ("Message non remis", "Bounced"),
        "records.reminder.dormant_opportunity": ("Opportunité en sommeil", "Dormant opportunity"),
        "records.reminder.at_risk_client": ("Client à risque", "Client at risk"),
        "records.reminder_line": (
            "{kind}, pour {user}, échéance {when}",
            "{kind}, for {user}, due {when}",
        ),
        "records.conversation": ("Conversation", "Conversation"),
        "records.page": ("Page {page} sur {pages}", "Page {page} of {pages}"),
        "records.newer": ("Conversations plus récentes", "Newer conversations"),
        "records.older": ("Conversations plus anciennes", "Older conversations"),
        "records.no_mail": (
            "Aucun message visible pour ce client.",
            "No visible mail with this client.",
        ),
        "records.messages": ("{n} message(s)", "{n} message(s)"),
        "records.earlier": (
            "{n} message(s) plus ancien(s) : voir toute la conversation",
            "{n} earlier message(s): see the whole conversation",
        ),
        "records.inbound": ("reçu", "received"),
        "records.outbound": ("envoyé", "sent"),
        "records.internal": ("interne", "internal"),
        "records.private": (
            "Contenu réservé à la boîte de {owner}",
            "Content kept to {owner}'s mailbox",
        ),
        "records.private_short": ("Contenu privé", "Private content"),
        "records.from_to": ("De {sender} à {to}", "From {sender} to {to}"),
        "records.explain": ("Pourquoi ce lien ?", "Why this link?"),
        "records.unlink": ("Délier de cette fiche", "Unlink from this record"),
        "records.ok.link": ("Conversation liée.", "Conversation linked."),
        "records.ok.unlink": ("Conversation déliée.", "Conversation unlinked."),
        "records.refused": (
            "Ce message est dans la boîte d'un collègue : son contenu est réservé à "
            "son propriétaire et à son responsable.",
            "This message is in a colleague's mailbox: its content is for its owner "
            "and their manager.",
        ),
        "records.refused_title": ("Contenu privé", "Private content"),
    }
)


def refused(request: Request, exc: AccessError) -> Response:
    """The answer to a refusal: 404 when the viewer may not know of it, else 403."""
    if not exc.exists:
        raise HTTPException(404)
    t = i18n.translator(deps.current_viewer(request).locale)
    context = {"title": t("records.refused_title"), "message": t("records.refused")}
    return deps.render(request, "message.html", context, 403)


def record_url(kind: str, record_id: int) -> str:
    return f"/{PATHS[kind]}/{record_id}"


@router.get("/clients", response_class=HTMLResponse)
def lookup(request: Request, viewer: deps.CurrentViewer, q: str = "") -> Response:
    with deps.transaction(request) as s:
        found = records.lookup(s, q)
    return deps.render(request, "record_lookup.html", {"q": q, "found": found})


def reminder_whys(reminders: tuple[records.ReminderBrief, ...], lang: str) -> dict[int, str]:
    """Reminder id -> why it is there, in `lang`, worded as the digest words it (the
    notifier's sentences, by kind), with the escalation's sentence when it is one."""
    t: Any = digest.environment().get_template(f"_{lang}.j2").module
    out = {}
    for r in reminders:
        kind = r.kind.split(":")[-1]
        why = str(t.why(kind, r.contact or "?", r.reason))
        if r.escalated_from:
            why = f"{t.escalated(r.escalated_from)} — {why}"
        out[r.id] = why
    return out


def _page(
    request: Request, viewer: Viewer, kind: str, record_id: int, ok: str, page: int
) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            rec = records.record(s, cfg, viewer, kind, record_id, page, deps.now(request))
    except AccessError as exc:
        return refused(request, exc)
    names = {u.email: u.name or u.email for u in cfg.users}
    return deps.render(
        request,
        "record_page.html",
        {
            "rec": rec,
            "record_url": record_url,
            "names": names,
            "ok": ok if ok in OKS else "",
            "reminder_kinds": reminder_kinds.ALL,
            "whys": reminder_whys(rec.reminders, i18n.locale_of(viewer.locale)),
        },
    )


@router.get("/companies/{record_id}", response_class=HTMLResponse)
def company(
    request: Request, record_id: int, viewer: deps.CurrentViewer, ok: str = "", page: int = 1
) -> Response:
    return _page(request, viewer, "company", record_id, ok, page)


@router.get("/contacts/{record_id}", response_class=HTMLResponse)
def contact(
    request: Request, record_id: int, viewer: deps.CurrentViewer, ok: str = "", page: int = 1
) -> Response:
    return _page(request, viewer, "contact", record_id, ok, page)


@router.get("/opportunities/{record_id}", response_class=HTMLResponse)
def opportunity(
    request: Request, record_id: int, viewer: deps.CurrentViewer, ok: str = "", page: int = 1
) -> Response:
    return _page(request, viewer, "opportunity", record_id, ok, page)


def _curate(
    request: Request, viewer: Viewer, thread_id: int, kind: str, ref: str, nxt: str, link: bool
) -> Response:
    cfg = deps.web(request).cfg
    act = records.link_thread if link else records.unlink_thread
    try:
        with deps.transaction(request) as s:
            target = act(s, cfg, viewer, thread_id, kind, ref)
    except AccessError as exc:
        return refused(request, exc)
    except curation.CurationError as exc:
        raise HTTPException(400, str(exc)) from None
    back = deps.safe_next(nxt, f"/threads/{thread_id}").partition("?")[0]
    query = urlencode({"ok": "link" if link else "unlink", "kind": target.kind, "id": target.id})
    return deps.redirect(f"{back}?{query}")


@router.post("/threads/{thread_id}/link", response_class=HTMLResponse)
def link(
    request: Request,
    thread_id: int,
    kind: Annotated[str, Form()],
    ref: Annotated[str, Form()],
    viewer: deps.CurrentViewer,
    next: Annotated[str, Form()] = "",
) -> Response:
    return _curate(request, viewer, thread_id, kind, ref, next, link=True)


@router.post("/threads/{thread_id}/unlink", response_class=HTMLResponse)
def unlink(
    request: Request,
    thread_id: int,
    kind: Annotated[str, Form()],
    ref: Annotated[str, Form()],
    viewer: deps.CurrentViewer,
    next: Annotated[str, Form()] = "",
) -> Response:
    return _curate(request, viewer, thread_id, kind, ref, next, link=False)
