"""Client record, thread, message and review pages in a real Chromium, against a real
`mailmanager web` process over the synced sample mailbox (alice's), with CRM records added
and the mail matched again: open a client record and find a thread, open the thread and a
message (its HTML in the sandboxed frame), accept a review item, and be refused another
salesperson's message by direct URL. A screenshot per page; no console error; axe-core
finds no serious or critical violation (`tests.web.browser`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailmanager.db import models
from tests.web import browser
from tests.web.support import WebServer


def _seed_crm(server: WebServer) -> dict[str, int]:
    """Acme Industrie (Hélène Dubois, two open opportunities) and Globex, then match."""
    with server.session() as s:
        acme = models.Company(name="Acme Industrie")
        globex = models.Company(name="Globex")
        s.add_all([acme, globex])
        s.flush()
        s.add(models.CompanyDomain(company_id=acme.id, domain="acme-industrie.fr"))
        s.add(models.CompanyDomain(company_id=globex.id, domain="globex.co.uk"))
        helene = models.Contact(first_name="Hélène", last_name="Dubois", company_id=acme.id)
        s.add(helene)
        s.flush()
        s.add(models.ContactEmail(contact_id=helene.id, email="h.dubois@acme-industrie.fr",
                                  display="h.dubois@acme-industrie.fr"))  # fmt: skip
        ids = {"acme": acme.id, "globex": globex.id}
        for ref, title in (("OPP-1001", "Atelier de Lyon"), ("OPP-1002", "Maintenance 2027")):
            opp = models.Opportunity(reference=ref, title=title, company_id=acme.id)
            s.add(opp)
            s.flush()
            s.add(models.OpportunityContact(opportunity_id=opp.id, contact_id=helene.id))
            ids[ref] = opp.id
        s.commit()
    server.cli("match", "--all")
    return ids


@pytest.fixture(scope="module")
def seeded(web_server: WebServer) -> dict[str, int]:
    return _seed_crm(web_server)


def _signed_in(server: WebServer, watch: browser.Watch, chromium: Any, email: str) -> Any:
    """A page of a new browser context holding `email`'s session (signed in through the
    emailed link by `WebServer.sign_in`; the sign-in pages have their own browser test)."""
    client = server.sign_in(email)
    token = client.cookies.get("mm_session")
    client.close()
    page = watch.page(chromium)
    page.context.add_cookies([{"name": "mm_session", "value": token, "url": server.url}])
    return page


def test_record_thread_message_review_and_refusal(
    web_server: WebServer, seeded: dict[str, int], artifacts_dir: Path
) -> None:
    watch = browser.Watch(artifacts_dir)
    with browser.launch() as chromium:
        alice = _signed_in(web_server, watch, chromium, "alice@example.com")

        # Find the client, open the record, find a thread on it.
        alice.goto(f"{web_server.url}/clients")
        alice.get_by_label("Rechercher un client").fill("acme")
        alice.get_by_role("button", name="Rechercher").click()
        alice.get_by_role("link", name="Acme Industrie").first.click()
        alice.wait_for_url(f"**/companies/{seeded['acme']}")
        assert alice.locator("h1").inner_text() == "Acme Industrie"
        watch.check(alice, "records-company")
        thread_link = alice.locator("ol.threads h3 a").first
        subject = thread_link.inner_text()
        thread_link.click()
        alice.wait_for_url("**/threads/*")
        assert alice.locator("h1").inner_text() == subject
        watch.check(alice, "records-thread")

        # A message: its sanitised HTML in the sandboxed frame.
        alice.locator("a", has_text="Lire le message").first.click()
        alice.wait_for_url("**/messages/*")
        message_url = alice.url
        frame = alice.locator("iframe.mail-frame")
        assert frame.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
        assert "Bonjour" in frame.content_frame.locator("body").inner_text()
        watch.check(alice, "records-message")

        # The review queue: accept with the first candidate, one click.
        alice.goto(f"{web_server.url}/review")
        watch.check(alice, "records-review")
        items = alice.locator("li.review-item")
        before = items.count()
        assert before > 0, "the seeded opportunities put Hélène's threads in review"
        items.first.locator("button", has_text="Lier à").first.click()
        alice.wait_for_url("**/review?done=accepted")
        assert alice.get_by_role("status").inner_text().startswith("Conversation liée")
        assert alice.locator("li.review-item").count() == before - 1
        watch.check(alice, "records-review-accepted")
        with web_server.session() as s:
            accepted = s.scalar(
                sa.select(sa.func.count()).where(models.ReviewItem.status == "accepted")
            )
        assert accepted == 1

        # Bob (another salesperson) opens Alice's message by its URL: refused, no content.
        bob = _signed_in(web_server, watch, chromium, "bob@example.com")
        reply = bob.goto(message_url)
        assert reply is not None and reply.status == 403
        assert bob.locator("iframe").count() == 0 and "Bonjour" not in bob.content()
        assert "Private content" in bob.locator("h1").inner_text()
        body = bob.goto(message_url + "/body")
        assert body is not None and body.status == 403 and "Bonjour" not in bob.content()
        watch.check(bob, "records-refused")

    # The only console lines allowed: the browser noting the two refusals asked for above.
    refusals = [e for e in watch.errors if "status of 403" in e and "/messages/" in e]
    assert len(refusals) == 2
    watch.errors = [e for e in watch.errors if e not in refusals]
    watch.assert_no_console_errors()
