"""Thread and message pages, and the message's downloads (`services.threadview`).

    GET /threads/ID                 the conversation: each message as the viewer may see it
    GET /messages/ID[?remote=1][&headers=1]   one message: text, HTML frame, attachments
    GET /messages/ID/body[?remote=1]          the sanitised HTML, for the frame only
    GET /messages/ID/parts/N        an attachment (always as a download)
    GET /messages/ID/raw            the message as received (.eml)
    GET /messages/ID/explain        why it is linked where it is, in plain words

The HTML body is shown in `<iframe sandbox>` whose document comes from `/body` with its own
policy: `default-src 'none'` (nothing loads, nothing runs), images from `data:` only (inline
parts are made data: URLs), and http(s) images too only when the person asked to load
remote images. Downloads are served as `application/octet-stream` with `nosniff` and a
sandbox policy, so an HTML or SVG attachment never runs in the workspace's origin.

Each allowed read of a thread, a message, an attachment or the raw message is audited
(actor `web:<email>`), as the CLI's and the API's reads are (issue #16's read audit).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from mailmanager.services import privacy, records, threadview
from mailmanager.services.access import AccessError, Viewer
from mailmanager.web import deps, i18n
from mailmanager.web.records import record_url, refused

router = APIRouter()

METHODS = ("address", "domain", "contact", "thread", "subject_tag", "manual", "opportunity")
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
_DOWNLOAD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
}

i18n.add(
    {
        "threads.title": ("Conversation", "Conversation"),
        "threads.records": ("Liée à", "Linked to"),
        "threads.no_records": ("Liée à aucune fiche.", "Linked to no record."),
        "threads.link": ("Lier à une fiche", "Link to a record"),
        "threads.link_kind": ("Type de fiche", "Record type"),
        "threads.link_ref": (
            "Fiche (adresse, domaine, nom ou référence)",
            "Record (address, domain, name or reference)",
        ),
        "threads.link_go": ("Lier", "Link"),
        "threads.unlink_from": ("Délier de {target}", "Unlink from {target}"),
        "threads.read": ("Lire le message", "Read the message"),
        "threads.more": ("… voir le message complet", "… see the whole message"),
        "message.from": ("De", "From"),
        "message.to": ("À", "To"),
        "message.cc": ("Cc", "Cc"),
        "message.date": ("Date", "Date"),
        "message.mailboxes": ("Boîtes", "Mailboxes"),
        "message.thread": ("Voir toute la conversation", "See the whole conversation"),
        "message.html": ("Message (HTML sécurisé)", "Message (safe HTML)"),
        "message.frame_title": ("Contenu HTML du message", "The message's HTML content"),
        "message.text": ("Texte du message", "Message text"),
        "message.show_text": ("Afficher la version texte", "Show the text version"),
        "message.show_html": ("Afficher la version HTML", "Show the HTML version"),
        "message.remote_blocked": (
            "{n} image(s) distante(s) bloquée(s) : l'expéditeur saurait que vous avez lu "
            "le message.",
            "{n} remote image(s) blocked: the sender would learn that you read the message.",
        ),
        "message.load_remote": ("Charger les images distantes", "Load remote images"),
        "message.attachments": ("Pièces jointes", "Attachments"),
        "message.inline_parts": ("Parties intégrées", "Inline parts"),
        "message.download": ("Télécharger {name}", "Download {name}"),
        "message.unnamed": ("sans nom", "unnamed"),
        "message.headers": ("En-têtes", "Headers"),
        "message.show_headers": ("Afficher les en-têtes", "Show the headers"),
        "message.hide_headers": ("Masquer les en-têtes", "Hide the headers"),
        "message.raw": ("Télécharger l'original (.eml)", "Download the original (.eml)"),
        "message.not_kept": (
            "Le corps de ce message n'a pas été conservé (réglage de confidentialité).",
            "This message's body was not kept (privacy setting).",
        ),
        "explain.title": ("Pourquoi ce message est lié", "Why this message is linked"),
        "explain.verdict": ("Verdict", "Verdict"),
        "explain.links": ("Liens", "Links"),
        "explain.unlinked": ("Déliés à la main", "Unlinked by hand"),
        "explain.none": ("Aucun lien.", "No link."),
        "explain.link_line": (
            "{method}, confiance {confidence} %",
            "{method}, confidence {confidence}%",
        ),
        "explain.review": (
            "En attente de vérification entre : {candidates}",
            "Waiting for review between: {candidates}",
        ),
        "explain.reason.linked": ("Lié à des fiches du CRM.", "Linked to CRM records."),
        "explain.reason.unlinked_manually": ("Délié à la main.", "Unlinked by hand."),
        "explain.reason.noise_auto_reply": (
            "Réponse automatique : jamais liée.",
            "Automatic reply: never linked.",
        ),
        "explain.reason.noise_bounce": (
            "Message de non-remise : jamais lié.",
            "Bounce: never linked.",
        ),
        "explain.reason.noise_bulk": (
            "Envoi en nombre (liste, newsletter) : jamais lié.",
            "Bulk mail (list, newsletter): never linked.",
        ),
        "explain.reason.internal": (
            "Échange interne à l'organisation : aucun client.",
            "Internal to the organization: no client.",
        ),
        "explain.reason.blocklisted": ("Adresse en liste de blocage.", "Blocklisted address."),
        "explain.reason.no_external": ("Aucun correspondant externe.", "No external party."),
        "explain.reason.system_sender": ("Expéditeur automatique.", "Automated sender."),
        "explain.reason.unknown": (
            "Aucun correspondant connu du CRM.",
            "No party known to the CRM.",
        ),
        "explain.reason.none": ("Pas encore examiné.", "Not matched yet."),
        "explain.method.address": ("adresse e-mail du contact", "the contact's email address"),
        "explain.method.domain": ("domaine de la société", "the company's domain"),
        "explain.method.contact": ("société du contact", "the contact's company"),
        "explain.method.thread": ("suite de la conversation", "the rest of the conversation"),
        "explain.method.subject_tag": ("référence dans l'objet", "a reference in the subject"),
        "explain.method.manual": ("lien fait à la main", "linked by hand"),
        "explain.method.opportunity": ("seule opportunité ouverte", "the only open opportunity"),
    }
)


def _audit(s: Session, viewer: Viewer, action: str, target: str) -> None:
    """Audit a read of mail content through the workspace, as the CLI's reads are
    (`services.privacy.record_read`): actor `web:<email>`; only reads that were allowed."""
    privacy.record_read_apart(s, f"web:{viewer.email}", action, target)


@router.get("/threads/{thread_id}", response_class=HTMLResponse)
def thread_page(
    request: Request, thread_id: int, viewer: deps.CurrentViewer, ok: str = ""
) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            view = threadview.thread(s, cfg, viewer, thread_id)
            _audit(s, viewer, "thread.read", f"thread:{thread_id}")
    except AccessError as exc:
        return refused(request, exc)
    context = {"th": view, "record_url": record_url, "ok": ok if ok in ("link", "unlink") else ""}
    return deps.render(request, "thread_page.html", context)


@router.get("/messages/{message_id}", response_class=HTMLResponse)
def message_page(
    request: Request,
    message_id: int,
    viewer: deps.CurrentViewer,
    remote: bool = False,
    headers: bool = False,
    view: str = "",
) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            msg = threadview.message(s, cfg, viewer, message_id)
            safe = (
                threadview.html_body(s, cfg, viewer, message_id, remote) if msg.has_html else None
            )
            shown_headers = threadview.headers(s, cfg, viewer, message_id) if headers else ()
            _audit(s, viewer, "message.read", f"message:{message_id}")
    except AccessError as exc:
        return refused(request, exc)
    as_text = view == "text" or safe is None or not safe.html.strip()
    query = "?remote=1" if remote else ""
    return deps.render(
        request,
        "thread_message.html",
        {
            "msg": msg,
            "head": msg.head,
            "as_text": as_text,
            "remote_blocked": safe.remote_images if safe else 0,
            "remote": remote,
            "frame_src": f"/messages/{message_id}/body{query}",
            "frame_sandbox": FRAME_SANDBOX,
            "headers": shown_headers,
            "show_headers": headers,
        },
    )


@router.get("/messages/{message_id}/body")
def message_body(
    request: Request,
    message_id: int,
    viewer: deps.CurrentViewer,
    remote: bool = False,
) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            safe = threadview.html_body(s, cfg, viewer, message_id, remote)
    except AccessError as exc:
        return refused(request, exc)
    images = "data: https: http:" if remote else "data:"
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"></head><body>'
        f"{safe.html}</body></html>"
    )
    return HTMLResponse(
        document,
        headers={
            "Content-Security-Policy": (
                f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
                f"frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
                f"sandbox {FRAME_SANDBOX}"
            ),
            "X-Frame-Options": "SAMEORIGIN",
            "Referrer-Policy": "no-referrer",
        },
    )


def _download(data: bytes, filename: str) -> Response:
    encoded = quote(filename or "attachment", safe="")
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename) or "file"
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            **_DOWNLOAD_HEADERS,
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
            ),
        },
    )


@router.get("/messages/{message_id}/parts/{index}")
def message_part(
    request: Request, message_id: int, index: int, viewer: deps.CurrentViewer
) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            part, data = threadview.attachment(s, cfg, viewer, message_id, index)
            _audit(s, viewer, "message.read_part", f"message:{message_id}")
    except AccessError as exc:
        return refused(request, exc)
    return _download(data, part.filename or f"part-{index}")


@router.get("/messages/{message_id}/raw")
def message_raw(request: Request, message_id: int, viewer: deps.CurrentViewer) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            data = threadview.raw(s, cfg, viewer, message_id)
            _audit(s, viewer, "message.read_raw", f"message:{message_id}")
    except AccessError as exc:
        return refused(request, exc)
    return _download(data, f"message-{message_id}.eml")


@router.get("/messages/{message_id}/explain", response_class=HTMLResponse)
def explain_page(request: Request, message_id: int, viewer: deps.CurrentViewer) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            why = records.explain(s, cfg, viewer, message_id)
    except AccessError as exc:
        return refused(request, exc)
    context = {"why": why, "record_url": record_url, "methods": METHODS}
    return deps.render(request, "thread_explain.html", context)
