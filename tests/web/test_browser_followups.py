"""My follow-ups in a real Chromium against a real `mailmanager web`: sign in through the
emailed link, snooze from the page, act on a follow-up from the digest's link (confirmation
page, then done), French and English UI, the keyboard's first stop is the skip link; a
screenshot of each page, axe finds no serious or critical violation, no console error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mailmanager.db import models
from mailmanager.notify import actionlinks
from tests.web import browser
from tests.web.support import NOW, WebServer, link_in

DONE = re.compile(r"^[ ]+(?:Fait) : (\S+)\r?$", re.M)


def _sign_in(server: WebServer, watch: browser.Watch, page: Any, email: str, lang: str) -> None:
    words = {
        "fr": ("Adresse e-mail", "Recevoir le lien", "Me connecter"),
        "en": ("Email address", "Send me the link", "Sign me in"),
    }[lang]
    page.goto(f"{server.url}/followups")
    assert page.url.endswith("/signin?next=/followups")
    watch.check(page, f"signin-{lang}")
    before = len(server.mails_to(email))
    page.get_by_label(words[0]).fill(email)
    page.get_by_role("button", name=words[1]).click()
    page.wait_for_load_state()
    watch.check(page, f"signin-sent-{lang}")
    page.goto(link_in(server.wait_mail(email, before)))
    watch.check(page, f"signin-confirm-{lang}")
    page.get_by_role("button", name=words[2]).click()
    page.wait_for_url("**/followups")


def _status(server: WebServer, rid: int) -> str:
    with server.session() as s:
        return str(s.get(models.Reminder, rid).status)  # type: ignore[union-attr]


def test_follow_ups_in_chromium(
    web_server: WebServer, chromium: Any, watch: browser.Watch, artifacts_dir: Path
) -> None:
    digest = web_server.send_digest("alice@example.com")
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    done_links = DONE.findall(text)
    assert len(done_links) == len(web_server.template.alice_reminders)
    print(f"artifacts: {artifacts_dir}")

    # French: alice signs in by the emailed link and sees her follow-ups.
    page = watch.page(chromium, locale="fr-FR")
    _sign_in(web_server, watch, page, "alice@example.com", "fr")
    assert page.get_by_role("heading", level=1).inner_text() == "Mes relances"
    watch.check(page, "followups-fr")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Aller au contenu"

    # Snooze the first due follow-up from the page.
    first = page.locator("li.followup").first
    rid = int(first.get_attribute("data-id"))
    first.get_by_role("button", name="Reporter 3 jours").click()
    page.wait_for_url("**/followups?ok=snooze_3d&n=1")
    assert "C'est fait : 1 relance(s)" in page.get_by_role("status").inner_text()
    assert _status(web_server, rid) == "snoozed"
    upcoming = page.locator("section", has=page.get_by_role("heading", name="À venir (1)"))
    assert upcoming.locator(f"#followup-{rid}").count() == 1
    watch.check(page, "followups-snoozed-fr")

    # The digest's "done" link of another follow-up, opened where no one is signed in.
    key = actionlinks.load_key(str(web_server.secret_file))
    claims = {u: actionlinks.verify(key, u.rsplit("/a/", 1)[1], NOW) for u in done_links}
    link = next(u for u, c in claims.items() if c.reminder_id != rid)
    other = claims[link].reminder_id
    phone = watch.page(chromium, locale="fr-FR")
    phone.goto(link)
    assert phone.get_by_role("heading", level=1).inner_text() == (
        "Marquer cette relance comme faite ?"
    )
    watch.check(phone, "digest-link-confirm-fr")
    assert _status(web_server, other) == "sent"  # the GET changed nothing
    phone.get_by_role("button", name="Marquer comme faite").click()
    phone.wait_for_load_state()
    assert "La relance est marquée comme faite." in phone.locator("main").inner_text()
    watch.check(phone, "digest-link-done-fr")
    assert _status(web_server, other) == "done"
    page.reload()
    assert page.locator(f"#followup-{other}").count() == 0

    # English: bob, with his own single follow-up; done with the keyboard.
    en = watch.page(chromium, locale="en-US")
    _sign_in(web_server, watch, en, "bob@example.com", "en")
    assert en.get_by_role("heading", level=1).inner_text() == "My follow-ups"
    assert "Due now (1)" in en.locator("main").inner_text()
    watch.check(en, "followups-en")
    en.locator(f"#followup-{web_server.template.bob_reminder}").get_by_role(
        "button", name="Done", exact=True
    ).focus()
    en.keyboard.press("Enter")
    en.wait_for_url("**/followups?ok=done&n=1")
    assert _status(web_server, web_server.template.bob_reminder) == "done"
    assert "No follow-up waiting" in en.locator("main").inner_text()
    watch.check(en, "followups-empty-en")

    watch.assert_no_console_errors()
    assert len(watch.shots) == 12
