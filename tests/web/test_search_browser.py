"""The search page in a real Chromium, against a real `mailmanager web` process over the synced
sample mailbox (alice's), with Acme Industrie on a client record: alice searches in French
(words marked in the results, filters by company and dates, two pages, a result opened), bob
in English finds her Acme threads by subject only and never her words. A screenshot per
page; no console error; axe-core finds no serious or critical violation (`tests.web.browser`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailmanager.db import models
from mailmanager.web.search import highlighter
from tests.web import browser
from tests.web.support import WebServer

SNIPPET = re.compile(r'<span class="snippet">(.*?)</span>', re.S)


@pytest.fixture(scope="module")
def seeded(web_server: WebServer) -> WebServer:
    """Acme Industrie (acme-industrie.fr) as a client, and the mail matched again: alice's
    threads with Hélène Dubois are then on a client record, which colleagues see as
    metadata (the default `[web] visibility`)."""
    with web_server.session() as s:
        acme = models.Company(name="Acme Industrie")
        s.add(acme)
        s.flush()
        s.add(models.CompanyDomain(company_id=acme.id, domain="acme-industrie.fr"))
        s.commit()
    web_server.cli("match", "--all")
    return web_server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser.launch() as launched:
        yield launched


def signed_in(server: WebServer, watch: browser.Watch, chromium: Any, email: str) -> Any:
    """A page of a new browser context holding `email`'s session (signed in through the
    emailed link by `WebServer.sign_in`; the sign-in pages have their own browser test)."""
    client = server.sign_in(email)
    token = client.cookies.get("mm_session")
    client.close()
    page = watch.page(chromium)
    page.context.add_cookies([{"name": "mm_session", "value": token, "url": server.url}])
    return page


def search(page: Any, button: str, **fields: str) -> None:
    """Fill the form's fields (by label) and submit it."""
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()


def shot(page: Any, artifacts: Path, name: str) -> None:
    """A screenshot only (the page's template had its axe check in this run)."""
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def rows(page: Any) -> Any:
    return page.locator("table.search-results tbody tr")


def test_a_salesperson_searches_filters_pages_and_opens_a_result(
    seeded: WebServer, chromium: Any, artifacts_dir: Path
) -> None:
    watch = browser.Watch(artifacts_dir)
    alice = signed_in(seeded, watch, chromium, "alice@example.com")
    alice.goto(f"{seeded.url}/search")
    assert alice.locator("h1").inner_text() == "Rechercher dans les messages"
    watch.check(alice, "search-form-fr")

    # Words: each hit has them marked, in its subject or its excerpt.
    search(alice, "Rechercher", **{"Mots (objet, extrait)": "devis"})
    assert alice.url.startswith(f"{seeded.url}/search?q=devis")
    found = rows(alice).count()
    assert found > 1
    assert alice.locator("h2").inner_text() == f"Résultats 1–{found}"
    for i in range(found):
        marks = rows(alice).nth(i).locator("mark").all_inner_texts()
        assert marks and all(m.lower().startswith("devis") for m in marks), marks
    watch.check(alice, "search-results-fr")

    # Filters: the company narrows to Acme's threads; a date range narrows again.
    search(alice, "Rechercher", **{"Société (nom ou domaine)": "acme"})
    acme = rows(alice).count()
    assert 0 < acme < found
    for text in rows(alice).all_inner_texts():
        assert "Dubois" in text or "acme-industrie.fr" in text, text
    search(alice, "Rechercher", Du="2026-10-14", Au="2026-10-31")
    dated = rows(alice).count()
    assert 0 < dated < acme
    for text in alice.locator("table.search-results tbody td:first-child").all_inner_texts():
        day, month, _year = map(int, text.split()[0].split("/"))
        assert month == 10 and 14 <= day <= 31, text  # (none of them near midnight UTC)
    watch.check(alice, "search-filtered-fr")

    # Paging: every message of two months, 25 a page.
    alice.goto(f"{seeded.url}/search")
    search(alice, "Rechercher", Du="2026-10-01", Au="2026-11-30")
    assert rows(alice).count() == 25
    first_page = rows(alice).all_inner_texts()
    alice.get_by_role("link", name="Page suivante").click()
    alice.wait_for_url("**offset=25*")
    assert alice.locator("h2").inner_text().startswith("Résultats 26–")
    assert not set(rows(alice).all_inner_texts()) & set(first_page)
    shot(alice, artifacts_dir, "search-page-2-fr")  # the same page as above, for axe
    alice.get_by_role("link", name="Page précédente").click()
    alice.wait_for_url("**offset=0*")
    assert rows(alice).all_inner_texts() == first_page

    # Open a result: its thread.
    link = rows(alice).first.locator("a").first
    subject = link.inner_text()
    link.click()
    alice.wait_for_url("**/threads/*")
    assert alice.locator("h1").inner_text() == subject
    shot(alice, artifacts_dir, "search-opened-thread-fr")  # axe: test_records_browser
    watch.assert_no_console_errors()


def test_a_colleague_finds_subjects_never_content(
    seeded: WebServer, chromium: Any, artifacts_dir: Path
) -> None:
    # What alice finds of her own mail, which bob must not: her excerpts of the Acme
    # threads, a word found only in their bodies, and her threads on no client record.
    client = seeded.sign_in("alice@example.com")
    mine = client.get("/search", params={"q": "devis", "company": "acme"}).text
    excerpts = [html.unescape(re.sub(r"</?mark>", "", s)) for s in SNIPPET.findall(mine)]
    assert excerpts, "alice sees her own excerpts"
    for private in ("remise", "Durand"):
        assert "Résultats 1–" in client.get("/search", params={"q": private}).text, private
    client.close()

    watch = browser.Watch(artifacts_dir)
    bob = signed_in(seeded, watch, chromium, "bob@example.com")
    bob.goto(f"{seeded.url}/search")
    assert bob.locator("h1").inner_text() == "Search the mail"
    search(bob, "Search", **{"Words (subject, excerpt)": "devis"})
    assert rows(bob).count() > 0  # her Acme threads, on a client record: metadata
    assert bob.locator(".snippet").count() == 0
    for text in rows(bob).all_inner_texts():
        assert "Content for its mailbox owner only" in text
        assert "Durand" not in text  # her prospect, on no client record
    page = html.unescape(bob.content())
    for excerpt in excerpts:
        assert excerpt[:60] not in page
    watch.check(bob, "search-colleague-en")
    for private in ("remise", "Durand"):
        bob.goto(f"{seeded.url}/search")
        search(bob, "Search", **{"Words (subject, excerpt)": private})
        assert bob.locator("p.empty").inner_text() == "No message found.", private
    watch.check(bob, "search-nothing-en")
    watch.assert_no_console_errors()


def test_marks_keep_the_text_escaped() -> None:
    mark = highlighter("devis equip")
    marked = mark("RE : <b>Devis</b> – équipement & Devisé")
    assert str(marked) == (
        "RE : &lt;b&gt;<mark>Devis</mark>&lt;/b&gt; – <mark>équipement</mark> &amp; "
        "<mark>Devisé</mark>"
    )
    assert str(highlighter("")("a<b")) == "a&lt;b"
