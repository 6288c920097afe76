"""`mail.copies`: what makes two items with one Message-ID the same message (issue #16)."""

from __future__ import annotations

from datetime import UTC, datetime

from mailmanager.mail import copies

NOV_2 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOV_2_LATER = datetime(2026, 11, 2, 9, 0, 1, tzinfo=UTC)

HEAD = b"From: jean@acme.fr\r\nMessage-ID: <m@acme.fr>\r\n\r\n"


def test_copies_of_one_body_have_one_digest() -> None:
    body = b"Bonjour,\r\nle devis est joint.\r\n"
    digest = copies.body_digest(HEAD + body)
    assert copies.body_digest(b"Received: from mx\r\nX-Spam: 1\r\n" + HEAD + body) == digest
    assert copies.body_digest((HEAD + body).replace(b"\r\n", b"\n")) == digest
    assert copies.body_digest(HEAD + body + b"\r\n \r\n\t\r\n") == digest
    assert copies.body_digest(HEAD + body.replace(b"joint", b"faux")) != digest


def test_line_ends_read_alike_across_hashing_steps() -> None:
    body = b"x" * ((1 << 20) - 1) + b"\r\n" + b"y" * 10
    for head in (HEAD, HEAD[:-2] + b"\r\n\r\n"):
        crlf = copies.body_digest(head + body)
        assert crlf == copies.body_digest(head + body.replace(b"\r\n", b"\n"))
    assert copies.body_digest(b"Subject: only headers\r\n") == copies.body_digest(HEAD)


def test_same_message_needs_the_raw_bytes_or_headers_and_body() -> None:
    fp, other = ("jean@acme.fr", NOV_2, "devis"), ("jean@acme.fr", NOV_2, "autre")
    assert copies.same_message(("a", "a"), (fp, other), ("x", "y"))
    assert copies.same_message(("a", "b"), (fp, fp), ("x", "x"))
    assert not copies.same_message(("a", "b"), (fp, fp), ("x", "y"))  # a forged body
    assert not copies.same_message(("a", "b"), (fp, other), ("x", "x"))  # forged headers
    assert copies.same_message(("a", "b"), (fp, fp), (None, "y"))  # body unknown


def test_a_copy_whose_date_is_its_own_arrival_time_is_still_the_same_message() -> None:
    # A future or missing Date gives each copy its own arrival time as date: two mailboxes
    # synced by two workers used to keep two messages (found by the fault suite, #15).
    a, b = ("jean@acme.fr", NOV_2, "devis"), ("jean@acme.fr", NOV_2_LATER, "devis")
    assert copies.same_message(("a", "b"), (a, b), ("x", "x"))
    assert not copies.same_message(("a", "b"), (a, b), ("x", "y"))  # a forged body
    assert not copies.same_message(("a", "b"), (a, b), (None, "x"))  # body unknown: dates
