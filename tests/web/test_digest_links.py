"""The signed links of reminder digests: in both parts of a real digest sent to the SMTP sink,
a GET that changes nothing, a POST that acts once, and clear pages for expired, replayed,
tampered links or a reminder that is not the link's user's. Plus the signing helper itself
and the digest's wording with and without `[web] base_url`."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailmanager import config
from mailmanager.db import models
from mailmanager.notify import actionlinks, digest
from mailmanager.reminders import evaluation
from tests.web.support import NOW, WebServer, csrf_of

R = models.Reminder
LINE = re.compile(
    r"^[ ]+(Ouvrir la conversation|Reporter de 3 jours|Fait|Ignorer) : (\S+)\r?$", re.M
)
LABELS = {"Ouvrir la conversation": "open", "Reporter de 3 jours": "snooze", "Fait": "done"}


@pytest.fixture(scope="module")
def digest_mail(web_server: WebServer) -> EmailMessage:
    return web_server.send_digest("alice@example.com")


@pytest.fixture(scope="module")
def links(web_server: WebServer, digest_mail: EmailMessage) -> dict[tuple[int, str], str]:
    """(reminder id, action) -> link, read from the digest's plain-text part."""
    key = actionlinks.load_key(str(web_server.secret_file))
    body = digest_mail.get_body(("plain",))
    assert body is not None
    found = {}
    for label, url in LINE.findall(body.get_content()):
        claim = actionlinks.verify(key, url.rsplit("/a/", 1)[1], NOW)
        assert claim.user == "alice@example.com"
        assert claim.action == LABELS.get(label, "dismiss")
        found[claim.reminder_id, claim.action] = url.replace(web_server.url, "")
    return found


def _status(server: WebServer, rid: int) -> str:
    with server.session() as s:
        return str(s.get(R, rid).status)  # type: ignore[union-attr]


def test_every_item_carries_its_links_in_both_parts(
    web_server: WebServer, digest_mail: EmailMessage, links: dict[tuple[int, str], str]
) -> None:
    ids = set(web_server.template.alice_reminders)
    assert {rid for rid, _ in links} == ids
    assert {a for _, a in links} == {"open", "snooze", "done", "dismiss"}
    assert len(links) == 4 * len(ids)
    html = digest_mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for path in links.values():
        assert f'href="{web_server.url}{path}"' in html
    text = digest_mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Toutes vos relances : {web_server.url}/followups" in text
    assert f'<a href="{web_server.url}/followups">Toutes vos relances</a>' in html
    assert "mailmanager reminders snooze" not in text + html


def test_a_get_changes_nothing_and_the_post_acts_once(
    web_server: WebServer, links: dict[tuple[int, str], str]
) -> None:
    rid = web_server.template.alice_reminders[0]
    path = links[rid, "done"]
    before = _status(web_server, rid)
    with web_server.client() as scanner:  # a mail security scanner fetches the link
        for _ in range(2):
            page = scanner.get(path)
            assert page.status_code == 200
            assert "Marquer cette relance comme faite ?" in page.text
            assert 'method="post"' in page.text
    assert _status(web_server, rid) == before
    with web_server.client() as person:  # no session: the link alone authorises the action
        page = person.get(path)
        done = person.post(path, data={"csrf": csrf_of(page.text)})
        assert done.status_code == 200
        assert "La relance est marquée comme faite." in done.text
        assert _status(web_server, rid) == "done"
        replay = person.post(path, data={"csrf": csrf_of(page.text)})
        assert replay.status_code == 410 and "a déjà servi" in replay.text
        assert person.get(path).status_code == 410
        assert person.get("/followups").status_code == 303  # and it signed no one in


def test_snooze_and_dismiss_links(web_server: WebServer, links: dict[tuple[int, str], str]) -> None:
    snoozed, dismissed = web_server.template.alice_reminders[1:3]
    with web_server.client() as person:
        for rid, action in ((snoozed, "snooze"), (dismissed, "dismiss")):
            page = person.get(links[rid, action])
            reply = person.post(links[rid, action], data={"csrf": csrf_of(page.text)})
            assert reply.status_code == 200, reply.text
    with web_server.session() as s:
        r = s.get(R, snoozed)
        assert r is not None and r.status == "snoozed" and r.snoozed_until is not None
        assert NOW + timedelta(days=3) <= r.snoozed_until <= NOW + timedelta(days=3, minutes=10)
    assert _status(web_server, dismissed) == "dismissed"


def test_an_open_link_leads_to_the_conversation(
    web_server: WebServer, links: dict[tuple[int, str], str]
) -> None:
    rid = web_server.template.alice_reminders[3]
    with web_server.session() as s:
        thread = s.get(R, rid).thread_id  # type: ignore[union-attr]
    with web_server.client() as person:
        reply = person.get(links[rid, "open"])
        assert reply.status_code == 303
        assert reply.headers["location"] == f"/threads/{thread}"


def test_a_closed_follow_up_says_so(
    web_server: WebServer, links: dict[tuple[int, str], str]
) -> None:
    rid = web_server.template.alice_reminders[4]
    with web_server.session() as s, s.begin():
        s.get(R, rid).status = "done"  # type: ignore[union-attr]
    with web_server.client() as person:
        page = person.get(links[rid, "dismiss"])
        assert page.status_code == 410 and "déjà close" in page.text
        token = csrf_of(person.get("/signin").text)
        assert person.post(links[rid, "dismiss"], data={"csrf": token}).status_code == 410


def test_expired_tampered_and_foreign_links(web_server: WebServer) -> None:
    key = actionlinks.load_key(str(web_server.secret_file))
    rid = web_server.template.alice_reminders[5]
    expired = actionlinks.sign(key, "alice@example.com", rid, "done", NOW - timedelta(days=15))
    valid = actionlinks.sign(key, "alice@example.com", rid, "done", NOW)
    payload, mac = valid.split(".")
    forged = actionlinks.sign(b"k" * 32, "alice@example.com", rid, "done", NOW)
    bobs = actionlinks.sign(key, "alice@example.com", web_server.template.bob_reminder, "done", NOW)
    with web_server.client() as person:
        token = csrf_of(person.get("/signin").text)
        page = person.get(f"/a/{expired}")
        assert page.status_code == 410 and "a expiré" in page.text
        assert person.post(f"/a/{expired}", data={"csrf": token}).status_code == 410
        # Each part's first character changed: a last character holds unused bits, so "A"
        # for a final "B", "C" or "D" decoded to the same MAC (1 run in 16 took it as valid).
        p0, m0 = ("f" if payload[0] == "e" else "e"), ("B" if mac[0] == "A" else "A")
        for bad in (f"{p0}{payload[1:]}.{mac}", f"{payload}.{m0}{mac[1:]}", forged, "nonsense"):
            page = person.get(f"/a/{bad}")
            assert page.status_code == 400 and "link is not valid" in page.text, bad
            assert person.post(f"/a/{bad}", data={"csrf": token}).status_code == 400
        # Genuinely signed, but for a reminder that is not alice's: refused, unchanged.
        assert person.get(f"/a/{bobs}").status_code == 404
        assert person.post(f"/a/{bobs}", data={"csrf": token}).status_code == 404
        assert person.post(f"/a/{valid}", data={}).status_code == 403  # no CSRF token
    assert _status(web_server, web_server.template.bob_reminder) == "pending"
    assert _status(web_server, rid) in ("pending", "sent")


# --- the signing helper and the digest templates, in process --------------------------------


def test_sign_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "web.key"
    key = actionlinks.load_key(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert actionlinks.load_key(str(path)) == key  # created once, then read
    token = actionlinks.sign(key, "a@example.com", 7, "snooze", NOW)
    claim = actionlinks.verify(key, token, NOW + timedelta(days=13))
    assert (claim.user, claim.reminder_id, claim.action) == ("a@example.com", 7, "snooze")
    assert claim.expires_at == NOW + timedelta(days=14)
    with pytest.raises(actionlinks.LinkError, match="expired"):
        actionlinks.verify(key, token, NOW + timedelta(days=14))
    with pytest.raises(actionlinks.LinkError, match="invalid"):
        actionlinks.verify(os.urandom(32), token, NOW)
    assert token != actionlinks.sign(key, "a@example.com", 7, "snooze", NOW)  # a nonce each
    os.chmod(path, 0o644)
    with pytest.raises(actionlinks.SecretFileError, match="chmod 600"):
        actionlinks.load_key(str(path))


def _item() -> evaluation.DigestItem:
    return evaluation.DigestItem(
        reminder_id=12,
        kind="awaiting_reply",
        thread_id=3,
        subject="Quote",
        contact_name="Jean",
        contact_email="jean@client.test",
        company_name="",
        opportunity_ref="",
        opportunity_title="",
        waiting_since=NOW - timedelta(days=4),
        business_days_waiting=4,
        last_from="Alice",
        last_snippet="Any news?",
        reason="",
        mailbox="alice",
        cycle=1,
        escalated_from=None,
        repeat=0,
    )


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_digest_wording_with_and_without_the_web(tmp_path: Path, locale: str) -> None:
    user = digest.Recipient("a@example.com", "A", locale, "Europe/Paris")
    plain = digest.render([_item()], user)
    assert "mailmanager reminders snooze|dismiss|done ID" in plain.text
    assert "/a/" not in plain.text + plain.html
    key = actionlinks.load_key(str(tmp_path / "k"))
    linker = actionlinks.Linker("https://crm.example.com", key, "a@example.com", NOW)
    linked = digest.render([_item()], user, links=linker)
    assert "mailmanager reminders" not in linked.text + linked.html
    assert linked.text.count("https://crm.example.com/a/") == 4
    assert linked.html.count('href="https://crm.example.com/a/') == 4
    assert "https://crm.example.com/followups" in linked.text
    assert ("Reporter de 3 jours" if locale == "fr" else "Snooze 3 days") in linked.html
    no_thread = digest.render_immediate(
        dataclasses.replace(_item(), thread_id=None), user, links=linker
    )
    assert no_thread.text.count("https://crm.example.com/a/") == 3  # no "open" link


def test_digest_expiry_counts_from_the_digest(tmp_path: Path) -> None:
    key = actionlinks.load_key(str(tmp_path / "k"))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    url = actionlinks.Linker("http://x", key, "a@example.com", at).url(1, "done")
    claim = actionlinks.verify(key, url.rsplit("/", 1)[1], at)
    assert claim.expires_at == at + actionlinks.LIFETIME


def test_links_only_with_a_base_url_and_a_readable_key(tmp_path: Path) -> None:
    base = '[[users]]\nemail = "a@example.com"\nname = "A"\n'
    plain = config.loads(base, base_dir=str(tmp_path))
    assert actionlinks.linker(plain, "a@example.com", NOW) is None
    web = config.loads(
        base + '[web]\nbase_url = "https://crm.example.com/"\nsecret_file = "k.key"\n',
        base_dir=str(tmp_path),
    )
    linker = actionlinks.linker(web, "a@example.com", NOW)
    assert linker is not None and linker.base_url == "https://crm.example.com"
    assert (tmp_path / "k.key").exists()  # created next to the configuration
    os.chmod(tmp_path / "k.key", 0o644)
    assert actionlinks.linker(web, "a@example.com", NOW) is None  # logged; digest unlinked
