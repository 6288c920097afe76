"""Review queue / À vérifier: threads whose opportunity the matcher would not choose alone.

    GET  /review                   the pending items of the threads the viewer reads
    POST /review/ID/accept         (opportunity=ID) link the thread to it; close the item
    POST /review/ID/reject         close the item without linking

One click each: a candidate's button accepts with that opportunity. The effect is
immediate (`services.reviewqueue.accept`: a manual link, then the thread is matched
again) and the page comes back with what was done.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.services import curation, reviewqueue
from mailmanager.services.access import AccessError, Viewer
from mailmanager.web import deps, i18n
from mailmanager.web.records import record_url, refused

router = APIRouter()
NAV = deps.NavItem("/review", "nav.review", 30)
DONE = ("accepted", "rejected")

i18n.add(
    {
        "review.title": ("À vérifier", "Review"),
        "review.intro": (
            "Ces conversations peuvent concerner plusieurs opportunités : choisissez la bonne, "
            "ou rejetez si aucune ne convient.",
            "These conversations may be about several opportunities: pick the right one, or "
            "reject when none fits.",
        ),
        "review.none": ("Rien à vérifier.", "Nothing to review."),
        "review.pick": ("Lier à {label}", "Link to {label}"),
        "review.reject": ("Aucune de ces opportunités", "None of these opportunities"),
        "review.why": ("Pourquoi : {explanation}", "Why: {explanation}"),
        "review.open": ("Ouvrir la conversation", "Open the conversation"),
        "review.done.accepted": (
            "Conversation liée à l'opportunité choisie.",
            "Conversation linked to the chosen opportunity.",
        ),
        "review.done.rejected": (
            "Vérification rejetée : rien n'a été lié.",
            "Review rejected: nothing was linked.",
        ),
        "review.actions_for": ("Choix pour « {subject} »", "Choices for “{subject}”"),
    }
)


@router.get("/review", response_class=HTMLResponse)
def page(request: Request, viewer: deps.CurrentViewer, done: str = "") -> Response:
    cfg = deps.web(request).cfg
    with deps.transaction(request) as s:
        items = reviewqueue.reviews(s, cfg, viewer)
    context = {"items": items, "done": done if done in DONE else "", "record_url": record_url}
    return deps.render(request, "review_queue.html", context)


def _act(
    request: Request, viewer: Viewer, item_id: int, opportunity: int | None, accept: bool
) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            if accept:
                reviewqueue.accept(s, cfg, viewer, item_id, opportunity)
            else:
                reviewqueue.reject(s, cfg, viewer, item_id)
    except AccessError as exc:
        return refused(request, exc)
    except curation.CurationError as exc:
        raise HTTPException(400, str(exc)) from None
    return deps.redirect(f"/review?done={'accepted' if accept else 'rejected'}")


@router.post("/review/{item_id}/accept", response_class=HTMLResponse)
def accept(
    request: Request,
    item_id: int,
    viewer: deps.CurrentViewer,
    opportunity: Annotated[int | None, Form()] = None,
) -> Response:
    return _act(request, viewer, item_id, opportunity, accept=True)


@router.post("/review/{item_id}/reject", response_class=HTMLResponse)
def reject(request: Request, item_id: int, viewer: deps.CurrentViewer) -> Response:
    return _act(request, viewer, item_id, None, accept=False)
