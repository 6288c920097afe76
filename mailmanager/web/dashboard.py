"""Tableau de bord / Dashboard: the sales figures mail can measure (`services.kpis`).

    GET /dashboard                 the viewer's figures (a manager: the team's, per person)
    GET /dashboard/people/EMAIL    one person's figures: themself, or someone they manage

A salesperson asking for a colleague's figures gets "not found", as if they did not exist.
Charts are inline SVG (`web.charts`) with a table of the same figures beside each.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.services import kpis
from mailmanager.services.access import AccessError
from mailmanager.web import charts, deps, i18n
from mailmanager.web.records import refused

router = APIRouter()
NAV = deps.NavItem("/dashboard", "nav.dashboard", 40)

i18n.add(
    {
        "nav.dashboard": ("Tableau de bord", "Dashboard"),
        "dashboard.title": ("Tableau de bord", "Dashboard"),
        "dashboard.person_title": ("Tableau de bord : {name}", "Dashboard: {name}"),
        "dashboard.period": ("Du {start} au {end}", "From {start} to {end}"),
        "dashboard.team": ("Votre équipe", "Your team"),
        "dashboard.figures": ("Chiffres clés", "Key figures"),
        "dashboard.median": (
            "Délai médian de réponse à un client",
            "Median time to answer a client",
        ),
        "dashboard.hours": ("{hours} h", "{hours} h"),
        "dashboard.no_median": ("pas de réponse mesurée", "no answer measured"),
        "dashboard.unanswered": ("Conversations client sans réponse", "Unanswered client threads"),
        "dashboard.done": ("Relances faites", "Follow-ups done"),
        "dashboard.overdue": ("Relances en retard", "Follow-ups overdue"),
        "dashboard.churn": (
            "Clients sans échange depuis {days} jours",
            "Clients with no exchange for {days} days",
        ),
        "dashboard.quiet_list": ("Clients les plus silencieux", "Quietest clients"),
        "dashboard.never": ("jamais", "never"),
        "dashboard.activity": ("Activité par semaine", "Activity per week"),
        "dashboard.activity_chart": (
            "Messages reçus et envoyés par semaine",
            "Messages received and sent per week",
        ),
        "dashboard.week": ("Semaine", "Week"),
        "dashboard.inbound": ("Reçus", "Received"),
        "dashboard.outbound": ("Envoyés", "Sent"),
        "dashboard.segments": ("Segments d'engagement des clients", "Client engagement segments"),
        "dashboard.segment": ("Segment", "Segment"),
        "dashboard.companies": ("Sociétés", "Companies"),
        "dashboard.segment.vip": ("VIP", "VIP"),
        "dashboard.segment.active": ("Actifs", "Active"),
        "dashboard.segment.at_risk": ("À risque", "At risk"),
        "dashboard.segment.dormant": ("Dormants", "Dormant"),
        "dashboard.people": ("Par personne", "Per person"),
        "dashboard.person": ("Personne", "Person"),
        "dashboard.messages": ("Messages ({weeks} sem.)", "Messages ({weeks} wk)"),
        "dashboard.back": ("Retour au tableau de bord", "Back to the dashboard"),
    }
)


def _charts(figures: kpis.Figures, t: Any) -> dict[str, Any]:
    weeks = [(w.label, w.inbound, w.outbound) for w in figures.weeks]
    segments = [(k, t(f"dashboard.segment.{k}"), n) for k, n in figures.segments]
    return {
        "activity_svg": charts.weekly_bars(
            weeks, t("dashboard.activity_chart"), t("dashboard.inbound"), t("dashboard.outbound")
        ),
        "segments_svg": charts.segment_bar(segments, t("dashboard.segments")),
        "segment_rows": segments,
    }


def _page(request: Request, data: kpis.Dashboard, heading: str) -> Response:
    t = i18n.translator(deps.current_viewer(request).locale)
    context = {"data": data, "f": data.total, "heading": heading, **_charts(data.total, t)}
    return deps.render(request, "dashboard.html", context)


@router.get("/dashboard", response_class=HTMLResponse)
def page(request: Request, viewer: deps.CurrentViewer) -> Response:
    cfg = deps.web(request).cfg
    with deps.transaction(request) as s:
        data = kpis.dashboard(s, cfg, viewer, deps.now(request))
    t = i18n.translator(viewer.locale)
    return _page(request, data, t("dashboard.title"))


@router.get("/dashboard/people/{email}", response_class=HTMLResponse)
def person(request: Request, email: str, viewer: deps.CurrentViewer) -> Response:
    cfg = deps.web(request).cfg
    try:
        with deps.transaction(request) as s:
            figures = kpis.person(s, cfg, viewer, email, deps.now(request))
    except AccessError as exc:
        return refused(request, exc)
    now = deps.now(request)
    bounds = kpis.week_starts(now, viewer.timezone, len(figures.weeks), False)
    data = kpis.Dashboard(viewer.email, bounds[0], bounds[-1], cfg.web.churn_days, figures, ())
    t = i18n.translator(viewer.locale)
    return _page(request, data, t("dashboard.person_title", name=figures.name or figures.email))
