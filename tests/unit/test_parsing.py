"""mailmanager.parsing on small, hand-built messages and a few copied fixtures."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmanager.mail import parsing
from mailmanager.mail.parsing import ParsedMessage, Quarantined

DATA = Path(__file__).resolve().parents[1] / "data" / "parsing"


def build(headers: str, body: str | bytes = "Hello.\n") -> bytes:
    """A message from a header block (one header per line, '\\n' ends) and a body."""
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    return headers.strip("\n").encode("utf-8") + b"\n\n" + raw_body


def parsed(raw: bytes, provider_date: datetime | None = None) -> ParsedMessage:
    result = parsing.parse(raw, provider_date)
    assert isinstance(result, ParsedMessage), result
    return result


BASE = "From: a@example.com\nTo: b@example.org\nMessage-ID: <m1@example.com>\n"


# --- subjects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "normalized", "prefix"),
    [
        ("Quote for Q3", "quote for q3", False),
        ("Re: Quote for Q3", "quote for q3", True),
        ("RE: RE: Re: Quote  for\tQ3", "quote for q3", True),
        ("Re[2]: Quote", "quote", True),
        ("Re(3): Quote", "quote", True),
        ("Fwd: Re: Quote", "quote", True),
        ("FW: quote", "quote", True),
        ("TR : Devis", "devis", True),
        ("Réf. : x", "réf. : x", False),
        ("Réf: Devis", "devis", True),
        ("AW: WG: Angebot", "angebot", True),
        ("SV: VS: Tarjous", "tarjous", True),
        ("Antw: Offerte", "offerte", True),
        ("RIF: R: I: Preventivo", "preventivo", True),
        ("回复：报价", "报价", True),
        ("答复: 转发: 报价", "报价", True),
        ("[maven-dev] Re: [VOTE] Release", "release", True),
        ("Re: Release [VOTE]", "release [vote]", True),
        ("[maven-dev] Release", "release", False),
        ("Re: [maven-dev] Re: Release", "release", True),
        ("Reminder: call", "reminder: call", False),
        ("Ideas for Q3", "ideas for q3", False),
        ("R2-D2 parts", "r2-d2 parts", False),
        ("Rex: the dog", "rex: the dog", False),
        ("", "", False),
        ("STRASSE", "strasse", False),
        ("Straße", "strasse", False),
    ],
)
def test_normalize_subject(subject: str, normalized: str, prefix: bool) -> None:
    assert parsing.normalize_subject(subject) == normalized
    assert parsing.subject_has_prefix(subject) is prefix


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?utf-8?B?UmU6IERldmlz?= =?utf-8?B?IMOpdMOp?=", "Re: Devis été"),
        # A UTF-8 character split across two encoded words (common in the wild).
        ("=?utf-8?B?w6k=?= =?utf-8?B?w6k=?=", "éé"),
        ("=?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?=", "café"),
        ("=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        ("=?iso-8859-1?q?this=20is=20some=20text?=", "this is some text"),
        ("=?utf-8?B?not base64!!?=", "=?utf-8?B?not base64!!?="),
        ("Line\n folded\tsubject", "Line folded subject"),
        ("=?x-unknown?Q?abc?=", "abc"),
    ],
)
def test_subject_decoding(header: str, expected: str) -> None:
    msg = parsed(build(BASE + f"Subject: {header}\n"))
    assert msg.subject == expected


def test_raw_8bit_subject_is_repaired() -> None:
    utf8 = parsed(BASE.encode() + "Subject: Réunion à 10h\n\nx".encode())
    assert utf8.subject == "Réunion à 10h"
    latin1 = parsed(BASE.encode() + "Subject: Réunion\n\nx".encode("latin-1"))
    assert latin1.subject == "Réunion"
    assert "raw_8bit_header" in latin1.defects


# --- message ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<ABC.def@Example.COM>", "ABC.def@Example.COM"),
        ("  <a@b>  <c@d>", "a@b"),
        ("garbage <a@b> more", "a@b"),
        ("a@b", "a@b"),
        ("<a@b", "None"),
        ("no id here", "None"),
        ("", "None"),
        ("<\n a@b>", "a@b"),
    ],
)
def test_normalize_message_id(value: str, expected: str) -> None:
    assert str(parsing.normalize_message_id(value)) == expected


def test_missing_message_id_is_synthetic_from_the_bytes() -> None:
    raw = build("From: a@example.com\nSubject: x\n")
    msg = parsed(raw)
    assert msg.message_id == hashlib.sha256(raw).hexdigest() + "@missing.invalid"
    assert msg.message_id_synthetic
    assert "no_message_id" in msg.defects
    assert not parsed(build(BASE)).message_id_synthetic


def test_references_are_cleaned() -> None:
    refs = " ".join(f"<r{i}@x>" for i in range(300))
    msg = parsed(
        build(
            "From: a@example.com\nMessage-ID: <self@x>\n"
            "In-Reply-To: <p@x> (garbage) <self@x> <p@x>\n"
            f"References: <r0@x> junk <self@x>\n {refs}\n"
        )
    )
    assert msg.in_reply_to == ("p@x",)
    assert len(msg.references) == parsing.MAX_REFERENCES
    assert msg.references[0] == "r0@x"
    assert msg.references[-1] == "r299@x"
    assert "self@x" not in msg.references
    assert len(set(msg.references)) == len(msg.references)
    assert "too_many_references" in msg.defects


# --- dates ----------------------------------------------------------------------------------

PROVIDER = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
RECEIVED = "Received: from x by y; Tue, 3 Nov 2026 11:30:00 +0000\n"


@pytest.mark.parametrize(
    ("date", "provider", "received", "when", "source", "defect"),
    [
        ("Tue, 3 Nov 2026 10:00:00 +0100", None, "", datetime(2026, 11, 3, 9, 0), "header", None),
        ("Tue, 3 Nov 2026 10:00:00 -0000", None, "", datetime(2026, 11, 3, 10, 0), "header", None),
        ("3 Nov 2026 10:00 GMT", None, "", datetime(2026, 11, 3, 10, 0), "header", None),
        ("Tue, 3 Nov 2026 10:00:00 CEST", None, "", datetime(2026, 11, 3, 8, 0), "header", None),
        # +9900 is no offset on Earth: the provider's date wins.
        ("Tue, 3 Nov 2026 10:00:00 +9900", PROVIDER, "", PROVIDER, "provider", "date_bad_offset"),
        ("31 Feb 2026 25:61:00 +0000", PROVIDER, "", PROVIDER, "provider", "bad_date"),
        ("next tuesday", None, RECEIVED, datetime(2026, 11, 3, 11, 30), "received", "bad_date"),
        ("Tue, 3 Nov 2026 10:00:00 +0000", None, "", None, "none", "date_in_future"),
        ("Tue, 3 Nov 2026 10:00:00", PROVIDER, "", PROVIDER, "provider", "date_no_zone"),
        ("Tue, 3 Nov 2026 10:00:00", None, RECEIVED, datetime(2026, 11, 3, 11, 30), "received",
         "date_no_zone"),
        ("Tue, 3 Nov 2026 10:00:00", None, "", datetime(2026, 11, 3, 10, 0), "header",
         "date_no_zone"),
        (None, None, "", None, "none", "no_date"),
    ],
)  # fmt: skip
def test_dates(
    date: str | None,
    provider: datetime | None,
    received: str,
    when: datetime | None,
    source: str,
    defect: str | None,
) -> None:
    header = BASE + received + (f"Date: {date}\n" if date else "")
    reference = provider
    if date is not None and "future" in str(defect):
        reference = datetime(2026, 10, 1, tzinfo=UTC)  # more than 48 h before the header date
    msg = parsed(build(header), reference)
    if reference is not None and reference != provider:
        when = reference
        source = "provider"
    expected = when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
    assert (msg.date, msg.date_source) == (expected, source)
    assert msg.date is None or msg.date.utcoffset() == timedelta(0)
    if defect is not None:
        assert defect in msg.defects
    else:
        assert not any(d.startswith(("date", "bad_date")) for d in msg.defects)


def test_future_date_without_provider_is_checked_against_now() -> None:
    now = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    future = (now + timedelta(days=30)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    with time_machine.travel(now, tick=False):
        msg = parsed(build(BASE + f"Date: {future}\n"))
    assert msg.date is None and msg.date_source == "none"
    assert "date_in_future" in msg.defects


def test_naive_provider_date_is_taken_as_utc() -> None:
    msg = parsed(build(BASE + "Date: junk\n"), datetime(2026, 1, 2, 3, 4))
    assert msg.date == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "key"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("<bob@example.org>", "bob@example.org"),
        ("jörg@bücher.de", "jörg@xn--bcher-kva.de"),
        ("info@MÜNCHEN.de", "info@xn--mnchen-3ya.de"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
        ("x@[192.0.2.1]", "x@[192.0.2.1]"),
        ("x@[999.0.2.1]", None),
        ("root@localhost", None),
        ("no-at-sign", None),
        ("a@b@c.com", None),
        ("a..b@example.com", None),
        (".a@example.com", None),
        ("a b@example.com", None),
        ("a@exa mple.com", None),
        ("a@-bad-.com", None),
        ("a@example.123", None),
        ('"quoted"@example.com', None),
        ("", None),
        ("a@" + "x" * 300 + ".com", None),
    ],
)
def test_normalize_address(addr: str, key: str | None) -> None:
    assert parsing.normalize_address(addr) == key


def test_address_roles_and_names() -> None:
    msg = parsed(
        build(
            "From: =?ISO-8859-1?Q?Moore=2C_Keith?= <Keith@Example.COM>\n"
            "Sender: list-bounces@lists.example.org\n"
            'Reply-To: "Doe, John" <j@d.example>, x@y.example\n'
            'To: "ceo@acme.test" <attacker@evil.test>\n'
            "Cc: carol@example.net (Carol C), carol@example.net\n"
            "Bcc: undisclosed-recipients:;\n"
            "Message-ID: <x@y>\n"
        )
    )
    assert msg.from_ == (parsing.Address("keith@example.com", "Moore, Keith", "Keith@Example.COM"),)
    assert [a.email for a in msg.sender] == ["list-bounces@lists.example.org"]
    assert [(a.name, a.email) for a in msg.reply_to] == [
        ("Doe, John", "j@d.example"),
        ("", "x@y.example"),
    ]
    # The display name never becomes the address: no "acme" here.
    assert [(a.name, a.email) for a in msg.to] == [("ceo@acme.test", "attacker@evil.test")]
    assert [(a.name, a.email) for a in msg.cc] == [("Carol C", "carol@example.net")]
    assert msg.bcc == ()


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.org)<bob@example.org>",
        "alice@example.org(<bob@example.org>",
        "alice@example.com <bob@example.com>",
    ],
)
def test_smuggled_addresses_are_not_accepted(value: str) -> None:
    # CVE-2023-27043: Python 3.11.7's getaddresses reads two addresses out of these.
    msg = parsed(build(f"From: {value}\nMessage-ID: <x@y>\n"))
    assert "bob@example.org" not in [a.email for a in msg.from_]
    assert "bob@example.com" not in [a.email for a in msg.from_]
    assert "ambiguous_address_list" in msg.defects


def test_raw_8bit_address_header() -> None:
    raw = "From: Jörg <joerg@bücher.de>\nTo: x@y.example\n\nhi".encode()
    msg = parsed(raw)
    assert msg.from_ == (parsing.Address("joerg@xn--bcher-kva.de", "Jörg", "joerg@bücher.de"),)
    latin = parsed("From: Jörg <joerg@example.de>\n\nhi".encode("latin-1"))
    assert latin.from_[0].name == "Jörg" and latin.from_[0].email == "joerg@example.de"


def test_unparseable_addresses_are_dropped_with_a_defect() -> None:
    msg = parsed(build("From: john at example.com\nTo: ok@example.com, @@@\n"))
    assert msg.from_ == ()
    assert [a.email for a in msg.to] == ["ok@example.com"]
    assert "bad_address" in msg.defects


# --- bodies ---------------------------------------------------------------------------------


def test_snippet_skips_quotes_and_attribution() -> None:
    msg = parsed(DATA.joinpath("gmail-reply.eml").read_bytes())
    assert msg.snippet == "Hello"
    body = (
        "Bonjour, pouvez-vous m'envoyer le devis =C3=A9t=C3=A9 ?\n\n"
        "Le mar. 3 nov. 2026 =C3=A0 09:00, Bob <bob@example.com> a =C3=A9crit :\n"
        "> ancien texte\n"
    )
    fr = parsed(
        build(
            BASE + "Content-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: quoted-printable\n",
            body,
        )
    )
    assert fr.snippet == "Bonjour, pouvez-vous m'envoyer le devis été ?"


def test_snippet_is_folded_and_short() -> None:
    msg = parsed(build(BASE, "word  \n\n\t" * 200))
    assert len(msg.snippet) <= parsing.SNIPPET_CHARS
    assert msg.snippet.startswith("word word word")
    assert "  " not in msg.snippet


def test_only_quoted_text_still_gives_a_snippet() -> None:
    msg = parsed(build(BASE, "> all quoted\n> here\n"))
    assert msg.snippet == "> all quoted > here"


HTML_ONLY = build(
    BASE + "Content-Type: text/html; charset=windows-1252\n",
    b"<html><head><title>T</title><style>p {color: red}</style></head>"
    b"<body><p>Caf\xe9 <b>cr\xe8me</b></p><div>Second line</div>"
    b"<script>alert(1)</script></body></html>",
)


def test_html_only_body_is_converted_to_text() -> None:
    msg = parsed(HTML_ONLY)
    assert msg.snippet == "Café crème Second line"
    assert parsing.body_text(HTML_ONLY) == "Café crème\nSecond line"


@pytest.mark.parametrize(
    ("charset", "payload", "text", "defect"),
    [
        ("ks_c_5601-1987", "안녕하세요".encode("cp949"), "안녕하세요", None),
        ("gb2312", "你好，世界".encode("gb18030"), "你好，世界", None),
        ("iso-8859-1", "€ cost".encode("cp1252"), "€ cost", None),
        ("us-ascii", "déjà".encode(), "déjà", None),
        ("utf-8", b"caf\xe9 au lait", "café au lait", None),
        ("x-no-such-charset", "Grüße aus München, wie geht es?".encode(), "Grüße",
         "unknown_charset"),
        ("base64", b"not a text encoding", "not a text", "unknown_charset"),
    ],
)  # fmt: skip
def test_charset_fallbacks(charset: str, payload: bytes, text: str, defect: str | None) -> None:
    raw = build(BASE + f"Content-Type: text/plain; charset={charset}\n", payload)
    msg = parsed(raw)
    assert msg.snippet.startswith(text)
    assert parsing.body_text(raw).startswith(text)
    if defect is not None:
        assert defect in msg.defects


def test_multipart_prefers_plain_and_lists_attachments() -> None:
    pdf = b"%PDF-1.4 " + b"x" * 3000
    import base64

    encoded = base64.encodebytes(pdf).decode()
    raw = build(
        BASE + 'Content-Type: multipart/mixed; boundary="outer"\n',
        "preamble\n--outer\n"
        'Content-Type: multipart/alternative; boundary="inner"\n\n'
        "--inner\nContent-Type: text/plain; charset=utf-8\n\nPlain body\n"
        "--inner\nContent-Type: text/html\n\n<p>HTML body</p>\n--inner--\n"
        '--outer\nContent-Type: application/pdf; name="=?utf-8?Q?devis_=C3=A9t=C3=A9.pdf?="\n'
        "Content-Disposition: attachment\nContent-Transfer-Encoding: base64\n\n"
        f"{encoded}\n"
        "--outer\nContent-Type: text/plain\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\n\nhello\n"
        "--outer\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\n"
        "--outer--\nepilogue\n",
    )
    msg = parsed(raw)
    assert msg.snippet == "Plain body"
    assert [(a.filename, a.content_type) for a in msg.attachments] == [
        ("devis été.pdf", "application/pdf"),
        ("résumé.txt", "text/plain"),
        ("", "text/calendar"),
    ]
    assert msg.attachments[0].size == len(pdf)
    assert msg.is_calendar
    assert msg.defects == ("no_date",)


def test_broken_mime_is_tolerated() -> None:
    no_close = parsed(
        build(
            BASE + "Content-Type: multipart/mixed; boundary=b\n",
            "--b\nContent-Type: text/plain\n\nstill here\n--b-longer\nnot a boundary",
        )
    )
    assert no_close.snippet == "still here --b-longer not a boundary"
    assert "missing_closing_boundary" in no_close.defects
    no_boundary = parsed(build(BASE + "Content-Type: multipart/mixed\n", "just text"))
    assert no_boundary.snippet == "just text"
    assert "multipart_without_boundary" in no_boundary.defects
    bad_b64 = parsed(build(BASE + "Content-Transfer-Encoding: base64\n", "SGVsbG8gd29ybGQ=!!!x"))
    assert bad_b64.snippet.startswith("Hello world")


def test_deep_nesting_is_capped() -> None:
    depth = 200
    head = "".join(
        f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n" for i in range(depth)
    )
    raw = build(BASE + "Content-Type: multipart/mixed; boundary=b0\n", head + "text\n")
    msg = parsed(raw)
    assert "mime_too_deep" in msg.defects


# --- classification -------------------------------------------------------------------------


def test_dsn_bounce() -> None:
    msg = parsed(DATA.joinpath("dsn-failed.eml").read_bytes())
    assert msg.is_bounce and not msg.is_auto_reply
    assert msg.bounce == parsing.BounceInfo(
        recipients=("newsletter-request@imusic.com",),
        permanent=True,
        status="",
        original_message_id="31FC7EB4.41C6@netscape.com",
    )


def test_delayed_dsn_is_a_temporary_bounce() -> None:
    msg = parsed(DATA.joinpath("dsn-delayed.eml").read_bytes())
    assert msg.is_bounce
    assert msg.bounce is not None
    assert msg.bounce.recipients == ("foo@example.com",)
    assert msg.bounce.status == "4.0.0" and not msg.bounce.permanent


def test_bounce_with_auto_submitted_is_a_bounce_only() -> None:
    raw = build(
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nTo: me@example.com\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        "Auto-Submitted: auto-replied\nX-Failed-Recipients: Ghost@Example.ORG\n",
        "This message was created automatically by mail delivery software.\n\n"
        "  ghost@example.org\n    SMTP error from remote mail server after RCPT TO:"
        "<ghost@example.org>: 550 5.1.1 User unknown\n\n"
        "------ This is a copy of the message, including all the headers. ------\n"
        "Message-ID: <orig-1@example.com>\n",
    )
    msg = parsed(raw)
    assert msg.is_bounce and not msg.is_auto_reply and not msg.is_out_of_office
    assert msg.bounce == parsing.BounceInfo(
        recipients=("ghost@example.org",),
        permanent=True,
        status="5.1.1",
        original_message_id="orig-1@example.com",
    )


def test_non_standard_bounce_recipients_from_the_text() -> None:
    raw = build(
        "From: MAILER-DAEMON@mx.example.net\nTo: me@example.com\nSubject: failure notice\n",
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
        "<nobody@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\nTo: other@example.org\n",
    )
    msg = parsed(raw)
    assert msg.bounce is not None and msg.bounce.recipients == ("nobody@example.org",)


def test_success_dsn_is_not_a_bounce() -> None:
    raw = build(
        BASE + 'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n',
        "--r\n\nDelivered.\n--r\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; ok@example.org\n"
        "Action: delivered\nStatus: 2.0.0\n--r--\n",
    )
    msg = parsed(raw)
    assert not msg.is_bounce and msg.is_auto_reply


def test_human_mail_about_a_bounce_is_not_a_bounce() -> None:
    msg = parsed(build(BASE + "Subject: Returned mail - can you check?\n"))
    assert not msg.is_bounce


def test_arf_report_is_bulk_not_bounce() -> None:
    msg = parsed(DATA.joinpath("arf.eml").read_bytes())
    assert msg.is_bulk and not msg.is_bounce
    assert "utf8_bom" in msg.defects


def test_mdn_is_an_auto_reply_not_a_bounce() -> None:
    msg = parsed(DATA.joinpath("mdn.eml").read_bytes())
    assert msg.is_auto_reply and not msg.is_bounce and not msg.is_out_of_office
    assert msg.attachments == (parsing.Attachment("", "message/rfc822", 345),)


@pytest.mark.parametrize(
    ("extra", "auto", "oof"),
    [
        ("Auto-Submitted: auto-replied\nSubject: Away until May 5\n", True, True),
        ("Auto-Submitted: auto-generated\nSubject: Your ticket #123\n", True, False),
        ("Auto-Submitted: no\nSubject: hi\n", False, False),
        ("X-Autoreply: yes\nSubject: hi\n", True, True),
        ("X-Autorespond: x\nSubject: hi\n", True, True),
        ("Precedence: auto_reply\nSubject: hi\n", True, False),
        ("Return-Path: <>\nSubject: Thank you for your e-mail\n", True, False),
        ("X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: a@example.com\n"
         "Subject: Nyaan\n", True, True),
        ("X-Auto-Response-Suppress: All\nSubject: Meeting notes\n", False, False),
        ("Subject: Out of Office: Quote for Q3\n", True, True),
        ("Subject: Automatic reply: Quote\n", True, True),
        ("Subject: Auto: Quote\n", True, True),
        ("Subject: Autoreply\n", True, True),
        ("Subject: On vacation\n", True, True),
        ("Subject: Re: blah (Automatic Response)\n", True, True),
        ("Subject: Absence\n", True, True),
        ("Subject: Réponse automatique : Devis\n", True, True),
        ("Subject: Message d'absence\n", True, True),
        ("Subject: Absent du bureau\n", True, True),
        ("Subject: Abwesenheitsnotiz: Angebot\n", True, True),
        ("Subject: Automatische Antwort: Angebot\n", True, True),
        ("Subject: [Automatyczna =?iso-8859-2?Q?odpowied=BC?=] test\n", True, True),
        ("Subject: Absence de réponse sur le devis\n", False, False),
        ("Subject: Out of office next week?\n", False, False),
        ("Subject: Auto - new car quote\n", False, False),
        ("Subject: Re: Out of Office\n", False, False),
    ],
)  # fmt: skip
def test_auto_replies(extra: str, auto: bool, oof: bool) -> None:
    msg = parsed(build(BASE + extra))
    assert (msg.is_auto_reply, msg.is_out_of_office, msg.is_bounce) == (auto, oof, False)


@pytest.mark.parametrize(
    ("extra", "bulk", "list_id"),
    [
        ("List-Id: Maven Developers List <dev.maven.apache.org>\n", True, "dev.maven.apache.org"),
        ("List-Id: <Dev.Example.ORG>\n", True, "dev.example.org"),
        ("List-Id: bare.example.org\n", True, "bare.example.org"),
        ("List-Unsubscribe: <mailto:u@example.com>\n", True, None),
        ("Precedence: bulk\n", True, None),
        ("Precedence: junk\n", True, None),
        ("Precedence: first-class\n", False, None),
        ("Feedback-ID: 1:2:3:esp\n", True, None),
        ("X-Campaign: spring\n", True, None),
        ("", False, None),
    ],
)
def test_bulk(extra: str, bulk: bool, list_id: str | None) -> None:
    msg = parsed(build(BASE + extra))
    assert (msg.is_bulk, msg.list_id) == (bulk, list_id)


# --- quarantine and robustness --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b" \r\n\t\n", "empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "outlook_msg_ole2"),
        (bytes(range(256)) * 4, "no_header_block"),
        (b"just some text\nwithout headers\n", "no_header_block"),
    ],
)
def test_quarantine(raw: bytes, reason: str) -> None:
    result = parsing.parse(raw)
    assert result == Quarantined(
        reason=reason, size=len(raw), sha256=hashlib.sha256(raw).hexdigest()
    )


def test_leading_blank_line_and_mbox_line_are_skipped() -> None:
    msg = parsed(b"\nFrom someone Tue Nov  3 10:00:00 2026\n" + build(BASE + "Subject: s\n"))
    assert msg.subject == "s"
    assert {"leading_whitespace", "mbox_from_line"} <= set(msg.defects)


def test_crlf_message() -> None:
    raw = build(
        BASE + "Subject: crlf\nContent-Type: multipart/mixed; boundary=b\n",
        "--b\nContent-Type: text/plain\n\nbody\n--b--\n",
    ).replace(b"\n", b"\r\n")
    msg = parsed(raw)
    assert (msg.subject, msg.snippet, msg.defects) == ("crlf", "body", ("no_date",))


def test_body_text_never_raises() -> None:
    assert parsing.body_text(b"") == ""
    assert parsing.body_text(b"\x00\xff" * 50) == ""
    assert parsing.body_text(build(BASE, "x" * 100_000)) == "x" * 100_000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_fuzz_random_bytes(raw: bytes) -> None:
    result = parsing.parse(raw)
    assert isinstance(result, (ParsedMessage, Quarantined))
    if isinstance(result, Quarantined):
        assert not result.reason.startswith("parser_error")
    parsing.body_text(raw)


_HEADER_NAMES = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "In-Reply-To",
     "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "List-Id",
     "Auto-Submitted", "Received", "X-Failed-Recipients", "Return-Path"]
)  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        ['multipart/mixed; boundary="b"', "multipart/report; report-type=delivery-status; "
         "boundary=b", "text/plain; charset=x-bad", "base64", "quoted-printable",
         "=?utf-8?B?w6k?=", "=?bogus?Q?=FF?=", "<a@b> <c@d>", "a@b.com (x", '"a" <b@c.de>',
         "Tue, 3 Nov 2026 10:00:00 +9999", "attachment; filename*=utf-8''%FF%FE"]
    ),
)  # fmt: skip
_BODY_LINES = st.sampled_from(
    ["--b", "--b--", "", "Content-Type: message/delivery-status", "Final-Recipient: rfc822; x@y.z",
     "Action: failed", "Status: 5.1.1", "Content-Type: text/html", "<p>hi</p>", "=C3=A9",
     "SGVsbG8=", "> quoted", "On Mon, X wrote:", "\x00\xff"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_HEADER_NAMES, _VALUES), max_size=12),
    st.lists(_BODY_LINES, max_size=30),
    st.sampled_from(["\n", "\r\n"]),
)
def test_fuzz_structured_messages(
    headers: list[tuple[str, str]], body: list[str], newline: str
) -> None:
    text = "".join(f"{name}: {value}{newline}" for name, value in headers)
    raw = (text + newline + newline.join(body)).encode("utf-8", "surrogatepass")
    result = parsing.parse(raw, PROVIDER)
    assert isinstance(result, (ParsedMessage, Quarantined))
    if isinstance(result, ParsedMessage):
        assert result.date is None or result.date.tzinfo is not None
        assert len(result.snippet) <= parsing.SNIPPET_CHARS
        assert all(a.email == parsing.normalize_address(a.email) for a in result.to)
    else:
        assert not result.reason.startswith("parser_error")
