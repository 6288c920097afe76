"""Search / Rechercher: find mail by words, person, company and date range (issue #14).

A GET form (the URL is the search: bookmarkable, no JavaScript). `services.search` decides
what the viewer may find; a hit the viewer sees only as metadata shows no excerpt. Pages
go by `offset` (capped by `services.search.MAX_OFFSET`).
"""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mailmanager.services import search as search_service
from mailmanager.web import deps, i18n

router = APIRouter()
NAV = deps.NavItem("/search", "nav.search", 25)

i18n.add(
    {
        "nav.search": ("Rechercher", "Search"),
        "search.title": ("Rechercher dans les messages", "Search the mail"),
        "search.words": ("Mots (objet, extrait)", "Words (subject, excerpt)"),
        "search.person": ("Personne (adresse ou nom)", "Person (address or name)"),
        "search.company": ("Société (nom ou domaine)", "Company (name or domain)"),
        "search.since": ("Du", "From"),
        "search.until": ("Au", "To"),
        "search.go": ("Rechercher", "Search"),
        "search.hint": (
            "Renseignez au moins un champ. Les messages de vos collègues n'apparaissent que "
            "s'ils sont liés à un client, et alors sans leur contenu si la règle de "
            "l'organisation le veut.",
            "Fill in at least one field. Colleagues' mail shows only when it is on a client "
            "record, and then without its content if the organisation's rule says so.",
        ),
        "search.bad_date": (
            "Date non comprise : « {value} » (format AAAA-MM-JJ).",
            "Date not understood: “{value}” (format YYYY-MM-DD).",
        ),
        "search.nothing": ("Aucun message trouvé.", "No message found."),
        "search.results": ("Résultats {first}–{last}", "Results {first}–{last}"),
        "search.date": ("Date", "Date"),
        "search.direction": ("Sens", "Direction"),
        "search.participants": ("Participants", "Participants"),
        "search.subject": ("Objet", "Subject"),
        "search.no_subject": ("(sans objet)", "(no subject)"),
        "search.metadata_only": (
            "Contenu réservé à son destinataire",
            "Content for its mailbox owner only",
        ),
        "search.previous": ("Page précédente", "Previous page"),
        "search.next": ("Page suivante", "Next page"),
    }
)


def _date(value: str, errors: list[tuple[str, str]]) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        errors.append(("search.bad_date", value.strip()[:40]))
        return None


@router.get("/search", response_class=HTMLResponse)
def page(
    request: Request,
    viewer: deps.CurrentViewer,
    q: str = "",
    person: str = "",
    company: str = "",
    since: str = "",
    until: str = "",
    offset: int = 0,
) -> Response:
    errors: list[tuple[str, str]] = []
    query = search_service.SearchQuery(
        words=q[:200],
        person=person[:320],
        company=company[:300],
        since=_date(since, errors),
        until=_date(until, errors),
        offset=max(0, offset),
    )
    result = None
    if not query.empty:
        with deps.transaction(request) as s:
            result = search_service.search(s, deps.web(request).cfg, viewer, query)
    form = {"q": q, "person": person, "company": company, "since": since, "until": until}
    links: dict[str, str | None] = {"previous": None, "next": None}
    if result is not None:
        if result.offset > 0:
            prev = max(0, result.offset - query.limit)
            links["previous"] = "/search?" + urlencode({**form, "offset": prev})
        if result.more:
            links["next"] = "/search?" + urlencode({**form, "offset": result.offset + query.limit})
    return deps.render(
        request,
        "search/search.html",
        {"form": form, "result": result, "errors": errors, "links": links},
    )
