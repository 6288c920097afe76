"""Search / Rechercher: find mail by words, person, company and date range (issue #14).

A GET form (the URL is the search: bookmarkable, no JavaScript). `services.search` decides
what the viewer may find; a hit the viewer sees only as metadata shows no excerpt. Pages
go by `offset` (capped by `services.search.MAX_OFFSET`), the next and previous ones also
from the last or first hit shown (`before`, `after`: what keeps a deep page fast). In each
hit's subject and excerpt, the words the search matched are marked (`<mark>`), as the
search matches them: by word prefix, regardless of case and accents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape

from mailmanager.db import searchindex
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


_WORD = re.compile(r"\w+")


def _fold(text: str) -> str:
    """`text` folded as the search index folds it, one character for one (so that places
    in it are places in `text`)."""
    folded = searchindex.fold(text)
    if len(folded) == len(text):
        return folded
    return "".join(f if len(f := searchindex.fold(c)) == 1 else c for c in text)


def highlighter(words: str) -> Callable[[str], Markup]:
    """A function that escapes a text and marks each of its words that starts with one of
    `words` (folded as the search index folds them: case and accents aside)."""
    tokens = [searchindex.fold(w) for w in _WORD.findall(words)][: search_service.MAX_WORDS]
    found = re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, tokens))})\w*") if tokens else None

    def mark(text: str) -> Markup:
        if found is None:
            return escape(text)
        parts, last = [], 0
        for m in found.finditer(_fold(text)):
            start, end = m.span()
            parts += [escape(text[last:start]), "<mark>", escape(text[start:end]), "</mark>"]
            last = end
        parts.append(escape(text[last:]))
        return Markup("".join(parts))

    return mark


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
    before: str = "",
    after: str = "",
) -> Response:
    errors: list[tuple[str, str]] = []
    Position = search_service.Position
    query = search_service.SearchQuery(
        words=q[:200],
        person=person[:320],
        company=company[:300],
        since=_date(since, errors),
        until=_date(until, errors),
        offset=max(0, offset),
        before=Position.parse(before) if before else None,
        after=Position.parse(after) if after and offset > 0 else None,
    )
    result = None
    if not query.empty:
        with deps.transaction(request) as s:
            result = search_service.search(s, deps.web(request).cfg, viewer, query)
    form = {"q": q, "person": person, "company": company, "since": since, "until": until}
    links: dict[str, str | None] = {"previous": None, "next": None}
    if result is not None:
        hits = result.hits
        if result.offset > 0:
            prev: dict[str, str | int] = {"offset": max(0, result.offset - query.limit)}
            if hits and hits[0].sent_at is not None and result.offset >= query.limit:
                prev["after"] = Position(hits[0].sent_at, hits[0].message_id).token
            links["previous"] = "/search?" + urlencode({**form, **prev})
        if result.more:
            nxt: dict[str, str | int] = {"offset": result.offset + query.limit}
            if hits and hits[-1].sent_at is not None:
                nxt["before"] = Position(hits[-1].sent_at, hits[-1].message_id).token
            links["next"] = "/search?" + urlencode({**form, **nxt})
    return deps.render(
        request,
        "search/search.html",
        {
            "form": form,
            "result": result,
            "errors": errors,
            "links": links,
            "mark": highlighter(query.words),
        },
    )
