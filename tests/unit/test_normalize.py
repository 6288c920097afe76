"""Address and domain normalization (`mailmanager.normalize`), table-driven."""

from __future__ import annotations

import socket

import pytest

from mailmanager.mail import normalize


@pytest.mark.parametrize(
    ("address", "key", "key_without_plus"),
    [
        # case and IDN: the domain is lower-cased and turned into its A-label
        ("Jean.Dupont@ACME.fr", "jean.dupont@acme.fr", "jean.dupont@acme.fr"),
        ("<jean@acme.fr>", "jean@acme.fr", "jean@acme.fr"),
        ("Anna@München.DE", "anna@xn--mnchen-3ya.de", "anna@xn--mnchen-3ya.de"),
        ("info@xn--mnchen-3ya.de", "info@xn--mnchen-3ya.de", "info@xn--mnchen-3ya.de"),
        ("josé@café.fr", "josé@xn--caf-dma.fr", "josé@xn--caf-dma.fr"),
        # Gmail: dots never matter, googlemail.com is gmail.com, +tags are dropped
        ("J.Dupont+devis@gmail.com", "jdupont@gmail.com", "jdupont+devis@gmail.com"),
        ("j.dupont@GoogleMail.com", "jdupont@gmail.com", "jdupont@gmail.com"),
        ("+only@gmail.com", "+only@gmail.com", "+only@gmail.com"),
        # Google Workspace (a company domain): dots and +tags are the company's business
        ("j.dupont+x@acme-industrie.fr", "j.dupont+x@acme-industrie.fr", None),
        # the other providers that deliver user+tag to user; their dots do matter
        ("a.b+news@outlook.fr", "a.b@outlook.fr", "a.b+news@outlook.fr"),
        ("a+news@hotmail.co.uk", "a@hotmail.co.uk", "a+news@hotmail.co.uk"),
        ("a+news@live.com", "a@live.com", "a+news@live.com"),
        ("a+news@msn.com", "a@msn.com", "a+news@msn.com"),
        ("a+news@icloud.com", "a@icloud.com", "a+news@icloud.com"),
        ("a+news@me.com", "a@me.com", "a+news@me.com"),
        ("a+news@fastmail.com", "a@fastmail.com", "a+news@fastmail.com"),
        ("a+news@proton.me", "a@proton.me", "a+news@proton.me"),
        ("a+news@protonmail.com", "a@protonmail.com", "a+news@protonmail.com"),
        ("a+news@yandex.ru", "a@yandex.ru", "a+news@yandex.ru"),
        ("a+news@zohomail.com", "a@zohomail.com", "a+news@zohomail.com"),
        # ...and not the others
        ("a+news@orange.fr", "a+news@orange.fr", None),
        ("a+news@yahoo.com", "a+news@yahoo.com", None),
        ("a+news@me.co.uk", "a+news@me.co.uk", None),
        # not addresses
        ("jean", None, None),
        ("jean@", None, None),
        ("@acme.fr", None, None),
        ("jean@localhost", None, None),
        ("a@b@acme.fr", None, None),
        ("jean dupont@acme.fr", None, None),
        ('"jean"@acme.fr', None, None),
        ("", None, None),
    ],
)
def test_match_key(address: str, key: str | None, key_without_plus: str | None) -> None:
    """`key_without_plus` is the key with `strip_plus=False`; None: the same as `key`."""
    assert normalize.match_key(address) == key
    expected = key if key_without_plus is None else key_without_plus
    assert normalize.match_key(address, strip_plus=False) == expected


@pytest.mark.parametrize(
    ("domain", "registrable", "public"),
    [
        ("mail.acme.co.uk", "acme.co.uk", False),
        ("acme.co.uk", "acme.co.uk", False),
        ("co.uk", "co.uk", True),
        ("smtp.eu.acme.com", "acme.com", False),
        ("ACME.COM.", "acme.com", False),
        ("interieur.gouv.fr", "interieur.gouv.fr", False),
        ("mail.interieur.gouv.fr", "interieur.gouv.fr", False),
        ("gouv.fr", "gouv.fr", True),
        ("foo.blogspot.com", "foo.blogspot.com", False),  # PSL private section
        ("www.foo.blogspot.com", "foo.blogspot.com", False),
        ("blogspot.com", "blogspot.com", True),
        ("x.city.kawasaki.jp", "city.kawasaki.jp", False),  # wildcard with exception
        ("mail.München.de", "xn--mnchen-3ya.de", False),
        ("shop.example.xn--p1ai", "example.xn--p1ai", False),
        ("com", "com", True),
        ("[192.0.2.1]", "[192.0.2.1]", False),
    ],
)
def test_registrable_domain(domain: str, registrable: str, public: bool) -> None:
    assert normalize.registrable_domain(domain) == registrable
    assert normalize.is_public_suffix(domain) is public


@pytest.mark.parametrize(
    ("domain", "free"),
    [
        ("gmail.com", True),
        ("googlemail.com", True),
        ("outlook.fr", True),
        ("hotmail.fr", True),
        ("orange.fr", True),
        ("wanadoo.fr", True),
        ("free.fr", True),
        ("laposte.net", True),
        ("sfr.fr", True),
        ("gmx.de", True),
        ("yahoo.fr", True),
        ("icloud.com", True),
        ("proton.me", True),
        ("jean@GMAIL.com", True),  # an address is accepted too
        ("smtp.free.fr", True),  # subdomains of a free-mail domain
        ("acme-industrie.fr", False),
        ("google.com", False),  # the company, not its mail service
        ("microsoft.com", False),
        ("orange-business.com", False),
        ("example.com", False),
        ("not a domain", False),
    ],
)
def test_is_free_mail(domain: str, free: bool) -> None:
    assert normalize.is_free_mail(domain) is free


@pytest.mark.parametrize(
    ("address", "role", "system"),
    [
        ("noreply@acme.fr", True, True),
        ("no-reply@accounts.google.com", True, True),
        ("no_reply@acme.fr", True, True),
        ("noreply-dmarc-support@google.com", True, True),
        ("donotreply@acme.fr", True, True),
        ("do-not-reply@acme.fr", True, True),
        ("ne-pas-repondre@impots.gouv.fr", True, True),
        ("nepasrepondre@acme.fr", True, True),
        ("MAILER-DAEMON@mx.acme.fr", True, True),
        ("postmaster@acme.fr", True, True),
        ("bounce@acme.fr", True, True),
        ("bounces+12345-abcd=acme.fr@sendgrid.net", True, True),
        ("bounce-mc.us5_1234.5678-jean=acme.fr@mail123.mcsv.net", True, True),
        ("python-list-bounces@python.org", True, True),
        ("python-list-request@python.org", True, True),
        ("owner-announce@lists.example.org", True, True),
        ("notifications@github.com", True, True),
        ("notification@facebookmail.com", True, True),
        ("info@acme.fr", True, False),
        ("contact@acme.fr", True, False),
        ("sales@acme.com", True, False),
        ("support+fr@acme.com", True, False),
        ("hello@startup.io", True, False),
        ("admin@acme.fr", True, False),
        ("billing@acme.com", True, False),
        ("office@acme.at", True, False),
        ("compta@acme.fr", True, False),
        ("comptabilite@acme.fr", True, False),
        ("facturation@acme.fr", True, False),
        ("jean.dupont@acme.fr", False, False),
        ("noreen@acme.ie", False, False),  # starts like "no reply", is a person
        ("nora.bounce@acme.fr", False, False),
        ("bountyhunter@acme.fr", False, False),
        ("infographie@acme.fr", False, False),
        ("jean", False, False),  # bare local parts are judged too
        ("postmaster", True, True),
    ],
)
def test_role_and_system_senders(address: str, role: bool, system: bool) -> None:
    assert normalize.is_role_address(address) is role
    assert normalize.is_system_sender(address) is system


def test_nothing_reaches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public suffix list is the package's bundled copy: no socket is ever opened."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    normalize._psl.cache_clear()
    assert normalize.registrable_domain("a.b.acme.co.uk") == "acme.co.uk"
    assert normalize.is_free_mail("orange.fr")


def test_the_quick_no_for_free_mail_agrees_with_the_long_way() -> None:
    """`is_free_mail` answers most ASCII domains without IDNA or the public-suffix list;
    the answer is the long way's for every spelling that could trip it."""
    names = [
        *sorted(normalize.FREE_MAIL_DOMAINS)[:200],
        "GMAIL.COM",
        "gmail.com.",
        "mail.free.fr",
        "x@Mail.Orange.FR",
        "@yahoo.fr",
        " gmx.de ",
        "acme.fr",
        "gmail.com.evil.example",
        "notgmail.com",
        "co.uk",
        "acme.co.uk",
        "[127.0.0.1]",
        "xn--mnchen-3ya.de",
        "münchen.de",
        "ＧＭＡＩＬ.com",
        "gmail.cοm",
        "",
        "@",
        "..",
        "a..b",
    ]
    for name in names:
        domain = name.rpartition("@")[2]
        assert normalize.is_free_mail(name) is normalize._is_free_mail(domain), name
    assert normalize.is_free_mail("GMAIL.COM") and not normalize.is_free_mail("notgmail.com")
