"""Digest rendering and outbound headers, without a database: wording per locale and kind,
HTML autoescaping, and header sanitising against injection (CVE-2024-6923 on this Python)."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmanager.notify import digest, outbox, smtp
from mailmanager.reminders import evaluation as reminders

ALICE = digest.Recipient("alice@example.com", "Alice Martin", "fr", "Europe/Paris")
BOB = digest.Recipient("bob@example.com", "Bob Smith", "en", "Europe/London")
HEADERS = ["auto-submitted", "content-type", "date", "from", "message-id", "mime-version",
           "subject", "to", "x-auto-response-suppress"]  # fmt: skip


def item(**changes: object) -> reminders.DigestItem:
    values: dict[str, object] = {
        "reminder_id": 12,
        "kind": "awaiting_reply",
        "thread_id": 3,
        "subject": "Devis portes coupe-feu",
        "contact_name": "Élodie Durand",
        "contact_email": "elodie@client.fr",
        "company_name": "Durand & Fils",
        "opportunity_ref": "OPP-2041",
        "opportunity_title": "Renouvellement",
        "waiting_since": datetime(2026, 11, 3, 9, tzinfo=UTC),
        "business_days_waiting": 4,
        "last_from": "Alice Martin",
        "last_snippet": "Bonjour,\r\nvoici le devis <b>révisé</b>",
        "reason": "No reply",
        "mailbox": "alice",
        "cycle": 1,
        "escalated_from": None,
    }
    values.update(changes)
    return reminders.DigestItem(**values)  # type: ignore[arg-type]


def test_french_digest_names_everything_an_item_needs() -> None:
    r = digest.render([item()], ALICE, "ACME")
    assert r.subject == "[mailmanager] 1 relance à faire"
    assert "Vous avez 1 relance à faire :" in r.text
    assert "Vous attendez une réponse de Élodie Durand, depuis 4 jours ouvrés" in r.text
    assert "(dernier échange le 03/11/2026)" in r.text
    assert "Contact : Élodie Durand <elodie@client.fr> — Durand & Fils" in r.text
    assert "Opportunité : OPP-2041 — Renouvellement" in r.text
    assert "« Bonjour, voici le devis <b>révisé</b> »" in r.text  # one line, not escaped
    assert "[#12]" in r.text and "pour ACME" in r.text


@pytest.mark.parametrize(
    ("kind", "fr", "en"),
    [
        ("awaiting_reply", "Vous attendez une réponse de", "You are waiting for a reply from"),
        ("needs_response", "Élodie Durand attend votre réponse", "Élodie Durand is waiting for"),
        ("dormant_opportunity", "Plus aucun échange", "No exchange on this opportunity"),
        ("at_risk_client", "la relation est à risque", "the account is at risk"),
        ("bounced", "n'a pas été distribué", "could not be delivered"),
    ],
)
def test_each_kind_says_why_in_both_languages(kind: str, fr: str, en: str) -> None:
    assert fr in digest.render([item(kind=kind)], ALICE).text
    assert en in digest.render([item(kind=kind)], BOB).text


@pytest.mark.parametrize(
    ("days", "fr", "en"),
    [(0, "depuis aujourd'hui", "since today"), (1, "depuis 1 jour ouvré", "for 1 business day"),
     (7, "depuis 7 jours ouvrés", "for 7 business days")],
)  # fmt: skip
def test_waiting_time_and_plurals(days: int, fr: str, en: str) -> None:
    assert fr in digest.render([item(business_days_waiting=days)], ALICE).text
    assert en in digest.render([item(business_days_waiting=days)], BOB).text
    three = [item(reminder_id=i) for i in range(3)]
    assert digest.render(three, ALICE).subject == "[mailmanager] 3 relances à faire"
    assert digest.render(three, BOB).subject == "[mailmanager] 3 follow-ups due"
    assert digest.render(three[:1], BOB).subject == "[mailmanager] 1 follow-up due"


def test_escalation_repeat_and_unknown_locale() -> None:
    r = digest.render([item(escalated_from="bob@example.com", repeat=1)], ALICE)
    assert "Escalade : la relance de bob@example.com est restée sans suite." in r.text
    assert "(2e rappel)" in r.text
    german = digest.Recipient("c@example.com", "Carl", "de", "Europe/Berlin")
    assert digest.render([item()], german).subject == "[mailmanager] 1 follow-up due"
    with pytest.raises(ValueError):
        digest.render([], ALICE)


def test_html_part_escapes_text_from_synced_mail() -> None:
    evil = item(
        contact_name="<script>alert(1)</script>",
        subject="<img src=x onerror=alert(1)>",
        last_snippet="</li><a href='javascript:x'>clic</a>",
    )
    html = digest.render([evil], ALICE).html
    assert "<script>" not in html and "<img" not in html and "<a href" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; attend" not in html  # awaiting_reply wording
    assert "Vous attendez une réponse de &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Deal =?UTF-8?Q?=0A?=Bcc: injected@example.com", "Deal Bcc: injected@example.com"),
        ("Deal\r\nBcc: injected@example.com", "Deal Bcc: injected@example.com"),
        ("=?UTF-8?B?PT9VVEYtOD9RPz0wQT89?=Bcc: x@y", "Bcc: x@y"),  # an encoded encoded word
        ("Caf=?UTF-8?Q?=C3=A9?= crème", "Café crème"),
        ("a\x00b\u202ec\u2028d\te", "a bc d e"),  # controls → space, bidi dropped
        ("left =? and ?= over", "left = ? and ? = over"),
        ("x" * 300, "x" * 199 + "…"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert smtp.sanitize(raw) == clean


def _build(subject: str, name: str) -> bytes:
    out = smtp.Outgoing(
        message_id=outbox.message_id("digest:2026-11-10T08:30:alice@example.com", "mm@example.com"),
        sender="Mailmanager <mm@example.com>",
        recipient="alice@example.com",
        recipient_name=name,
        subject=subject,
        text="Bonjour é\n",
        html="<p>é</p>",
        date=datetime(2026, 11, 10, 7, 35, tzinfo=UTC),
    )
    return smtp.build_message(out)


def test_injected_subject_and_name_emit_no_header() -> None:
    data = _build(
        "Deal =?UTF-8?Q?=0A?=Bcc: injected@example.com",
        'Evil =?UTF-8?Q?=0D=0A?=Bcc: x@example.com "\r\nCc: y@example.com',
    )
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert sorted(k.lower() for k in msg) == HEADERS
    assert msg["Subject"] == "Deal Bcc: injected@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["alice@example.com"]
    assert (
        msg["Message-ID"] == _build("x", "y").split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    )


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=300), name=st.text(max_size=120))
def test_any_subject_or_name_yields_exactly_our_headers(subject: str, name: str) -> None:
    data = _build(subject, name)
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert sorted(k.lower() for k in msg) == HEADERS
    assert [a.addr_spec for a in msg["To"].addresses] == ["alice@example.com"]
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])


def test_message_id_is_stable_per_key_and_domain() -> None:
    a = outbox.message_id("digest:2026-11-10T08:30:alice@example.com", "MM <mm@example.com>")
    assert a == outbox.message_id("digest:2026-11-10T08:30:alice@example.com", "mm@example.com")
    assert a.startswith("<mailmanager.") and a.endswith("@example.com>")
    assert a != outbox.message_id("digest:2026-11-10T14:00:alice@example.com", "mm@example.com")


def test_a_dormant_opportunity_item_without_a_contact_shows_its_company_as_company() -> None:
    """Issue #17: the company of a dormant opportunity without a contact used to be shown
    as the contact ("Contact : Globex UK") under a "(sans objet)" heading."""
    dormant = item(
        kind="dormant_opportunity",
        thread_id=None,
        subject="OPP-7 — Extension Londres",
        contact_name="",
        contact_email="",
        company_name="Globex UK",
        opportunity_ref="OPP-7",
        opportunity_title="Extension Londres",
        last_snippet="",
    )
    fr = digest.render([dormant], ALICE).text
    assert "1. OPP-7 — Extension Londres  [#12]" in fr and "Société : Globex UK" in fr
    assert "Contact :" not in fr and "Opportunité :" not in fr
    en = digest.render([dormant], BOB).text
    assert "1. OPP-7 — Extension Londres  [#12]" in en and "Company: Globex UK" in en
    assert "Contact:" not in en and "Opportunity:" not in en
    html = digest.render([dormant], ALICE).html
    assert "Société : Globex UK" in html and "Contact :" not in html
