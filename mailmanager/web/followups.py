"""My follow-ups / Mes relances: the viewer's due and upcoming reminders, and what to do
with them (snooze, done, dismiss, "expects no reply"), one by one or checked in bulk.

The list is shown a page at a time (`services.followups.PAGE`, soonest due first, with a
link to the next page), so a page costs the same for 10 follow-ups or 20,000.
One form holds the page's list, so nothing needs JavaScript: a row's button submits
`act=<verb>:<id>`, a bulk button `act=<verb>` with the checked `ids`. Every change goes
through `services.followups`, which refuses reminders that are not the viewer's (or a
managed user's) with 404, nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.notify import digest
from mailmanager.reminders import actions
from mailmanager.services import followups
from mailmanager.web import deps, i18n

router = APIRouter()
NAV = deps.NavItem("/followups", "nav.followups", 10)

VERBS = ("done", "dismiss", "snooze_1bd", "snooze_3d", "snooze_1w", "snooze_date", "expect_never")

i18n.add(
    {
        "followups.title": ("Mes relances", "My follow-ups"),
        "followups.due": ("À faire maintenant", "Due now"),
        "followups.upcoming": ("À venir", "Upcoming"),
        "followups.none": (
            "Aucune relance en attente. Bravo !",
            "No follow-up waiting. Well done!",
        ),
        "followups.of": ("Relances de", "Follow-ups of"),
        "followups.everyone": ("Tout le monde", "Everyone"),
        "followups.filter": ("Filtrer", "Filter"),
        "followups.select": ("Sélectionner « {subject} »", "Select “{subject}”"),
        "followups.contact": ("Contact", "Contact"),
        "followups.company": ("Société", "Company"),
        "followups.opportunity": ("Opportunité", "Opportunity"),
        "followups.owner": ("Pour", "For"),
        "followups.excerpt": (
            "Dernier message de {who} : « {text} »",
            "Last message from {who}: “{text}”",
        ),
        "followups.due_label": ("Échéance", "Due"),
        "followups.snoozed_label": ("Reportée jusqu'au", "Snoozed until"),
        "followups.open": ("Ouvrir la conversation", "Open the conversation"),
        "followups.actions_for": ("Actions pour « {subject} »", "Actions for “{subject}”"),
        "followups.done": ("Fait", "Done"),
        "followups.dismiss": ("Ignorer", "Dismiss"),
        "followups.snooze_1bd": ("Reporter 1 jour ouvré", "Snooze 1 business day"),
        "followups.snooze_3d": ("Reporter 3 jours", "Snooze 3 days"),
        "followups.snooze_1w": ("Reporter 1 semaine", "Snooze 1 week"),
        "followups.snooze_date": ("Reporter au", "Snooze until"),
        "followups.snooze_to": ("Reporter à la date", "Snooze to date"),
        "followups.date_for": ("Date de report pour « {subject} »", "Snooze date for “{subject}”"),
        "followups.expect_never": (
            "Pas de réponse attendue",
            "Expects no reply",
        ),
        "followups.bulk": ("Pour la sélection", "With the selection"),
        "followups.bulk_date": ("Date de report de la sélection", "Snooze date for the selection"),
        "followups.ok": (
            "C'est fait : {n} relance(s) mise(s) à jour.",
            "Done: {n} follow-up(s) updated.",
        ),
        "followups.nothing_checked": (
            "Cochez au moins une relance.",
            "Check at least one follow-up.",
        ),
        "followups.next": ("Relances suivantes", "Next follow-ups"),
        "followups.first": ("Revenir au début", "Back to the first ones"),
        "followups.pages": ("Pages de relances", "Follow-up pages"),
        "followups.no_date": (
            "Choisissez une date de report.",
            "Pick a snooze date.",
        ),
    }
)


@dataclass(frozen=True)
class Row:
    """A follow-up with its sentences worded in the viewer's language."""

    f: followups.Followup
    why: str
    waited: str
    escalated: str


def rows(items: list[followups.Followup], lang: str) -> list[Row]:
    """The follow-ups with their sentences (why, how long) worded as the digest words them."""
    t: Any = digest.environment().get_template(f"_{lang}.j2").module
    return [
        Row(
            f=f,
            why=str(t.why(f.kind, f.contact or f.contact_email or f.last_from or "?", f.reason)),
            waited=str(t.waited(f.business_days_waiting)),
            escalated=str(t.escalated(f.escalated_from)) if f.escalated_from else "",
        )
        for f in items
    ]


@router.get("/", response_class=HTMLResponse)
def home(request: Request, viewer: deps.CurrentViewer) -> Response:
    return deps.redirect("/followups")


@router.get("/followups", response_class=HTMLResponse)
def page(
    request: Request,
    viewer: deps.CurrentViewer,
    user: str = "",
    ok: str = "",
    n: int = 0,
    after: str = "",
) -> Response:
    """A page of `followups.PAGE` follow-ups, soonest due first; `after` (the last one
    shown) asks for the next page, and the totals say how many there are in all."""
    cfg = deps.web(request).cfg
    if user and user not in viewer.sees_content_of:
        raise HTTPException(404)
    now = deps.now(request)
    start = followups.After.parse(after) if after else None
    with deps.transaction(request) as s:
        items = followups.list_followups(
            s, cfg, viewer, now, user or None, followups.PAGE + 1, start
        )
        due_total, upcoming_total = followups.count_followups(s, viewer, now, user or None)
    more = items[followups.PAGE - 1] if len(items) > followups.PAGE else None
    rows_ = rows(items[: followups.PAGE], i18n.locale_of(viewer.locale))
    people = sorted(viewer.sees_content_of) if viewer.is_manager else []
    names = {u.email: u.name or u.email for u in cfg.users}
    back = {"user": user} if user else {}
    return deps.render(
        request,
        "followups.html",
        {
            "due": [r for r in rows_ if r.f.due],
            "upcoming": [r for r in rows_ if not r.f.due],
            "due_total": due_total,
            "upcoming_total": upcoming_total,
            "first_url": f"/followups?{urlencode(back)}" if start else "",
            "next_url": (
                "/followups?"
                + urlencode({**back, "after": followups.After(more.due_at, more.id).token})
                if more
                else ""
            ),
            "people": [(p, names.get(p, p)) for p in people],
            "user": user,
            "ok": ok if ok in VERBS else "",
            "n": n,
            "today": now.date().isoformat(),
        },
    )


def _ids(values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise HTTPException(400, "ids") from None


@router.post("/followups", response_class=HTMLResponse)
async def act(request: Request, viewer: deps.CurrentViewer) -> Response:
    form = await request.form()
    verb, _, one = str(form.get("act", "")).partition(":")
    if verb not in VERBS:
        raise HTTPException(400, "act")
    ids = _ids([one] if one else [str(v) for v in form.getlist("ids")])
    user = str(form.get("user", ""))
    back = {"user": user} if user else {}
    if not ids:
        return _message(request, "followups.nothing_checked", 400)
    how = verb.removeprefix("snooze_")
    if verb == "snooze_date":
        how = str(form.get(f"date_{one}" if one else "date", "")).strip()
        if not how:
            return _message(request, "followups.no_date", 400)
    cfg = deps.web(request).cfg
    now = deps.now(request)
    try:
        with deps.transaction(request) as s:
            if verb in ("done", "dismiss"):
                followups.close(s, viewer, ids, "done" if verb == "done" else "dismissed")
            elif verb == "expect_never":
                for rid in ids:
                    followups.expect_no_reply(s, cfg, viewer, rid, now)
            else:
                followups.snooze(s, cfg, viewer, ids, how, now)
    except followups.NotFound:
        raise HTTPException(404) from None
    except actions.ReminderActionError as exc:
        raise HTTPException(400, str(exc)) from None
    query = urlencode({**back, "ok": verb, "n": len(ids)})
    return deps.redirect(f"/followups?{query}")


def _message(request: Request, key: str, status: int) -> Response:
    viewer = deps.optional_viewer(request)
    t = i18n.translator(viewer.locale if viewer else "en")
    return deps.render(
        request, "message.html", {"title": t("error.title"), "message": t(key)}, status
    )
