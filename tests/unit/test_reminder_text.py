"""Reading message text for reminders: expects a reply?, closers, out-of-office return dates."""

from __future__ import annotations

import email.policy
import re
from datetime import UTC, date, datetime
from email.message import EmailMessage

import hypothesis
import pytest
from hypothesis import strategies as st

from mailmanager.mail import parsing
from mailmanager.mail import replies as rt
from tests.conftest import examples

RECEIVED = datetime(2026, 11, 16, 10, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("body", "expects", "reason"),
    [
        ("Merci, bonne journée\n\nAlice", False, "closing words only"),
        ("Merci beaucoup !\nBien cordialement,\nAlice Martin", False, "closing words only"),
        ("Thanks!\n\nBest regards,\nBob", False, "closing words only"),
        ("Bien reçu, merci.", False, "closing words only"),
        ("Cordialement", False, "closing words only"),
        ("Voici notre proposition.", False, "no question or request"),
        (
            "Ci-joint le devis. N'hésitez pas si vous avez des questions.",
            False,
            "no question or request",
        ),
        (
            "Please find attached our offer. Let me know if you have any questions.",
            False,
            "no question or request",
        ),
        ("See https://example.com/?q=1 for details.", False, "no question or request"),
        ("Pourriez-vous me confirmer la date de livraison ?", True, "question or request"),
        ("Merci de me confirmer la commande.", True, "question or request"),
        (
            "Bonjour,\nvous trouverez le devis ci-joint. Dans l'attente de votre retour.",
            True,
            "question or request",
        ),
        ("Could you send us the purchase order.", True, "question or request"),
        ("Let me know what you think.", True, "question or request"),
        ("Please confirm the delivery address.", True, "question or request"),
        ("Quand pouvons-nous nous appeler ?", True, "question or request"),
        # Only the new text counts: the question is in the quoted message.
        (
            "Bien reçu, merci !\n\n"
            "Le lun. 2 nov. 2026 à 10:00, Jean Dupont <jean@acme.fr> a écrit :\n"
            "> Pouvez-vous me rappeler ?\n",
            False,
            "closing words only",
        ),
        (
            "Noted, thanks.\n\n-----Original Message-----\nFrom: Jean\nSent: Monday\n"
            "Could you call me?\n",
            False,
            "closing words only",
        ),
        ("Thanks.\n-- \nAlice Martin\nCould you? (a signature)\n", False, "closing words only"),
        (
            "Merci.\n\nDe : Jean Dupont\nEnvoyé : lundi 2 novembre\nÀ : Alice\nObjet : devis\n"
            "Pourriez-vous ?",
            False,
            "closing words only",
        ),
    ],
)
def test_expectation(body: str, expects: bool, reason: str) -> None:
    assert rt.expectation(body) == rt.Expectation(expects, reason)


def test_a_calendar_answer_expects_nothing() -> None:
    assert rt.expectation("Could you confirm?", calendar_reply=True).expects is False


def _invite(method: str, as_param: bool) -> bytes:
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"], m["To"], m["Subject"] = "jean@acme.fr", "alice@example.com", "Accepted: Demo"
    m.set_content("Jean has accepted.")
    ics = f"BEGIN:VCALENDAR\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    params = {"method": method} if as_param else {}
    m.add_attachment(ics.encode(), maintype="text", subtype="calendar", params=params)
    return m.as_bytes()


@pytest.mark.parametrize(
    ("raw", "answered"),
    [
        (_invite("REPLY", as_param=False), True),
        (_invite("REPLY", as_param=True), True),
        (_invite("REQUEST", as_param=False), False),
        (b"From: a@b.c\r\nSubject: x\r\n\r\nMETHOD:REPLY\r\n", False),
    ],
)
def test_calendar_reply_is_read_from_the_icalendar_part(raw: bytes, answered: bool) -> None:
    found = parsing.parse(raw)
    assert isinstance(found, parsing.ParsedMessage) and found.text_facts is not None
    expected = "calendar answer" if answered else "no question or request"
    assert found.text_facts == rt.TextFacts(rt.Expectation(False, expected))
    # Read again from the bytes (messages stored before ingest kept the facts): the same.
    assert parsing.text_facts(raw, out_of_office=False, received=None) == found.text_facts


@pytest.mark.parametrize(
    ("body", "back"),
    [
        ("Je suis absent, de retour le 23 novembre.", date(2026, 11, 23)),
        ("Je suis absent jusqu'au 27/11.", date(2026, 11, 28)),
        ("Absente jusqu\u2019au 27/11 inclus.", date(2026, 11, 28)),
        ("Je serai absente du 20 au 27 novembre.", date(2026, 11, 28)),
        ("De retour au bureau le lundi 23 novembre.", date(2026, 11, 23)),
        ("I am out of the office, back on November 23.", date(2026, 11, 23)),
        ("Out of office, returning 11/27.", date(2026, 11, 27)),
        ("I'm away from November 20 until November 27.", date(2026, 11, 28)),
        ("Back on Monday 23rd November 2026.", date(2026, 11, 23)),
        ("I will be back on Monday.", date(2026, 11, 23)),
        ("Back on 2026-12-01.", date(2026, 12, 1)),
        ("Je suis en congés jusqu'au 4 janvier.", date(2027, 1, 5)),
        ("Thank you for your message. I'm out until Nov 30th, 2026.", date(2026, 12, 1)),
        # No return phrase, or a date in the past: unknown.
        ("Je suis en congés. Pour toute urgence : 01.23.45.67.89", None),
        ("Message envoyé le 12 novembre.", None),
        ("De retour le 2 novembre.", None),
        ("Out of office.", None),
    ],
)
def test_return_date(body: str, back: date | None) -> None:
    assert rt.return_date(body, RECEIVED) == back


def _message(body: str, subject: str = "Devis", **headers: str) -> parsing.ParsedMessage:
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"], m["To"], m["Subject"] = "jean@acme.fr", "alice@example.com", subject
    m["Date"] = "Mon, 16 Nov 2026 10:00:00 +0000"
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    found = parsing.parse(m.as_bytes())
    assert isinstance(found, parsing.ParsedMessage)
    return found


def test_the_parser_reads_the_text_facts_once() -> None:
    asked = _message("Pourriez-vous me confirmer la commande ?")
    assert asked.text_facts == rt.TextFacts(rt.Expectation(True, "question or request"))
    # The question comes after more text than the snippet decodes: the whole body is read.
    long = _message("Voici le détail.\n" + "Ligne de détail, sans question.\n" * 2000 + "OK ?")
    assert long.text_facts is not None and long.text_facts.expectation == rt.Expectation(
        True, "question or request"
    )
    # An absence notice: its return date, read against the notice's own date.
    away = _message("Je suis absent, de retour le 23 novembre.", "Absent du bureau")
    assert away.is_out_of_office and away.text_facts is not None
    assert away.text_facts.return_date == date(2026, 11, 23)


@pytest.mark.parametrize(
    "headers",
    [
        {"List_Id": "<news.acme.fr>"},  # list mail
        {"Auto_Submitted": "auto-replied"},  # an auto-reply that is no absence notice
    ],
)
def test_bodies_no_rule_reads_are_not_read(headers: dict[str, str]) -> None:
    assert _message("Could you confirm?", **headers).text_facts is None


@hypothesis.settings(max_examples=examples(500), deadline=None)
@hypothesis.given(st.lists(st.sampled_from([*" \n\t@.:/ahptw", "http://", "https://", "www."])))
def test_links_and_addresses_are_found_as_the_general_pattern_finds_them(
    pieces: list[str],
) -> None:
    text = "".join(pieces)
    general = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+")  # tried at every position
    assert rt._URL.sub(" ", text) == general.sub(" ", text)


# The general forms of two shortcuts in `replies`: every pattern tried on every line, and
# every closing formula tried everywhere.
_QUOTE_STARTS = [
    re.compile(r"^\s*(?:on|le)\b.{0,300}\b(?:wrote|a écrit|a ecrit)\s*:\s*$", re.I),
    re.compile(
        r"^\s*-{2,}\s*(?:original message|message d'origine|mail original|forwarded message|"
        r"message transféré|courriel original)\s*-{2,}",
        re.I,
    ),
    re.compile(r"^\s*_{8,}\s*$"),
    re.compile(r"^\s*(?:sent from my|envoyé de mon|envoyé depuis|get outlook for)\b", re.I),
]


def _general_new_text(body: str) -> str:
    lines = body.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        joined = line + " " + (lines[i + 1] if i + 1 < len(lines) else "")
        if re.match(r"^--\s*$", line) or any(p.match(line) for p in _QUOTE_STARTS):
            break
        if _QUOTE_STARTS[0].match(joined.strip()) and "@" in joined:
            break
        if rt._HEADER_BLOCK.match(line) and any(
            rt._HEADER_NEXT.match(n) for n in lines[i + 1 : i + 4]
        ):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _general_is_pure_closer(text: str) -> bool:
    folded = rt._fold(text)
    if not folded or "?" in folded:
        return False
    rest, found = rt._CLOSER_RE.subn(" ", folded)
    return found > 0 and len(rt._WORD.findall(rest)) <= 3


_LINES = [
    "Bonjour Jean,", "Merci, bonne journée", "Pourriez-vous confirmer ?", "", "  ", "\r",
    "Le 2 nov. 2026 à 10:00, Jean Dupont <jean@acme.fr> a écrit :", "Le 2 nov. 2026, Jean",
    "<jean@acme.fr> a écrit :", "On Mon, Nov 2, 2026, Jean wrote:", "-----Original Message-----",
    "-- ", "--", "________________", "Sent from my iPhone", "Envoyé de mon iPhone",
    "From: Jean", "De : Jean", "*From:* Jean", "Sent: Monday", "Objet : Devis", "> quoted",
    "  > quoted", "Alice", "c'est noté, bon week-end", "merci2 Jean", "@",
]  # fmt: skip
_WORDS = [*rt._CLOSERS, "Jean", "Alice", "commande", "2", "x_y", "merci2", "-", ",", "!", "'"]


@hypothesis.settings(max_examples=examples(500), deadline=None)
@hypothesis.given(st.lists(st.sampled_from(_LINES), max_size=8))
def test_the_new_text_is_found_as_every_pattern_on_every_line_finds_it(lines: list[str]) -> None:
    body = "\n".join(lines)
    assert rt.new_text(body) == _general_new_text(body)


@hypothesis.settings(max_examples=examples(500), deadline=None)
@hypothesis.given(st.lists(st.sampled_from(_WORDS), max_size=9), st.sampled_from([" ", ", "]))
def test_closers_are_found_as_every_formula_everywhere_finds_them(
    words: list[str], sep: str
) -> None:
    text = sep.join(words)
    assert rt.is_pure_closer(text) == _general_is_pure_closer(text)


def test_a_long_text_is_read_at_both_ends_only() -> None:
    """The parser runs the heuristics on every synced message: of a long text they read the
    first and last `TEXT_BUDGET` characters, where a request opens or closes a message."""
    filler = "Ligne de détail, sans demande.\n" * 300  # some 9,000 characters
    assert rt.expectation("Pouvez-vous confirmer la date ?\n" + filler).expects
    assert rt.expectation(filler + "Qu'en pensez-vous ?\n").expects
    assert not rt.expectation(filler + "Pouvez-vous confirmer ?\n" + filler).expects
    short = "Bonjour,\n" + "Une ligne.\n" * 20 + "Pouvez-vous confirmer ?\n" + "Une ligne.\n" * 20
    assert rt.expectation(short).expects  # shorter than two budgets: read whole
