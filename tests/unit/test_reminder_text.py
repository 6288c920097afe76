"""Reading message text for reminders: expects a reply?, closers, out-of-office return dates."""

from __future__ import annotations

import email.policy
from datetime import UTC, date, datetime
from email.message import EmailMessage

import pytest

from mailmanager.reminders import text as rt

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


def test_calendar_reply_is_read_from_the_icalendar_part() -> None:
    assert rt.is_calendar_reply(_invite("REPLY", as_param=False))
    assert rt.is_calendar_reply(_invite("REPLY", as_param=True))
    assert not rt.is_calendar_reply(_invite("REQUEST", as_param=False))
    assert not rt.is_calendar_reply(b"From: a@b.c\r\nSubject: x\r\n\r\nMETHOD:REPLY\r\n")


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
