"""HTML mail made safe: hostile markup in, nothing that runs or loads out (`mail.sanitize`),
and the parts of a stored message read back for display (`mail.parts`)."""

from __future__ import annotations

import re

import pytest

from mailmanager.mail import parts, sanitize
from tests import recordworld as rw

INLINE = {"logo@acme.fr": "data:image/png;base64,iVBORw0KGgo="}

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<body onload="alert(1)">',
    '<a href="javascript:alert(1)">a</a>',
    '<a href="JaVaScRiPt:alert(1)">a</a>',
    '<a href=" &#106;avascript:alert(1)">a</a>',
    '<a href="vbscript:msgbox(1)">a</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">a</a>',
    '<svg onload="alert(1)"><script>alert(1)</script></svg>',
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">x</maction></math>',
    '<iframe src="https://evil.example/"></iframe>',
    '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/e">',
    '<form action="https://evil.example/"><input name="password"><button>Go</button></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<base href="https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/s.css">',
    "<style>@import url(https://evil.example/s.css); p{background:url(https://x/y)}</style>",
    '<div style="background-image:url(https://evil.example/track.png)">x</div>',
    '<div style="background:u\\72l(https://evil.example/t.png)">x</div>',
    '<div style="width:expression(alert(1))">x</div>',
    '<div style="behavior:url(x.htc)">x</div>',
    '<table background="https://evil.example/bg.png"><tr><td>x</td></tr></table>',
    '<img srcset="https://evil.example/a.png 1x">',
    '<video poster="https://evil.example/p.png"></video><audio src="https://evil.example/a">',
    '<img src="/logout"><a href="/admin">rel</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<!--[if IE]><script>alert(1)</script><![endif]-->",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
]


@pytest.mark.parametrize("html", HOSTILE)
def test_nothing_hostile_survives(html: str) -> None:
    out = sanitize.clean(html, INLINE).html.lower()
    for bad in ("<script", "javascript:", "vbscript:", "onerror", "onload", "<iframe", "<svg",
                "<object", "<embed", "<form", "<input", "<meta", "<base", "<link", "<style",
                "url(", "expression", "evil.example", "srcset", "data:text", "svg+xml",
                "/logout", "/admin", "<math", "poster", "behavior"):  # fmt: skip
        assert bad not in out, (html, out)


def test_remote_images_wait_until_asked_and_inline_images_show() -> None:
    html = ('<p style="color:#c00">Bonjour</p><img src="https://cdn.example/logo.png" alt="L">'
            '<img src="cid:logo@acme.fr"><img src="cid:missing@x"><a href="https://acme.fr">site</a>'
            '<a href="mailto:jane@acme.fr">mail</a>')  # fmt: skip
    blocked = sanitize.clean(html, INLINE)
    assert blocked.remote_images == 1
    assert "cdn.example" not in blocked.html and 'alt="L"' in blocked.html
    assert INLINE["logo@acme.fr"] in blocked.html and "cid:" not in blocked.html
    assert 'style="color:#c00"' in blocked.html  # harmless styling stays
    assert re.search(r'<a [^>]*href="https://acme.fr"', blocked.html)
    assert 'rel="noopener noreferrer"' in blocked.html and 'target="_blank"' in blocked.html
    assert 'href="mailto:jane@acme.fr"' in blocked.html
    allowed = sanitize.clean(html, INLINE, allow_remote=True)
    assert allowed.remote_images == 0 and 'src="https://cdn.example/logo.png"' in allowed.html


def test_parts_of_a_stored_message() -> None:
    raw = rw.html_mail()
    opened = parts.open_message(raw)
    assert opened.text.startswith("Bonjour Alice") and opened.html is not None
    assert "<script>" in opened.html  # as written: the sanitiser's job comes after
    by_name = {p.filename or p.content_id: p for p in opened.parts}
    assert by_name["devis.pdf"].content_type == "application/pdf"
    assert by_name["logo@acme.fr"].inline and not by_name["devis.pdf"].inline
    found = parts.part_data(raw, by_name["devis.pdf"].index)
    assert found is not None and found[1] == b"%PDF-1.4 devis"
    assert parts.part_data(raw, 0) is None  # a body is not a part
    assert parts.part_data(raw, 99) is None
    assert set(parts.inline_images(raw)) == {"logo@acme.fr"}
    html, images = parts.html_with_images(raw)
    assert html == opened.html and images == parts.inline_images(raw)
    assert parts.html_with_images(rw.bob_mail()) == (None, {})
    assert ("Subject", "Devis portes") in opened.headers


def test_malformed_mail_reads_without_error() -> None:
    for raw in (b"", b"garbage", b"Content-Type: multipart/mixed\r\n\r\nno boundary",
                b"Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/html; charset=bogus\r\n\r\n"
                b"<p>\xe9t\xe9</p>"):  # fmt: skip
        opened = parts.open_message(raw)
        assert isinstance(opened.text, str)
    assert ("Subject", "café") in parts.open_message(
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx"
    ).headers


def test_mail_nested_or_split_beyond_the_sync_limits_reads_quickly() -> None:
    deep = b"Subject: deep\r\n" + b"".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode()
        for i in range(3000)
    )
    many = b"Subject: many\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + (
        b"--x\r\nContent-Type: application/octet-stream\r\n\r\nAAAA\r\n" * 20000
    )
    for raw in (deep, many):  # the stdlib parser would recurse too deep, or take seconds
        opened = parts.open_message(raw)
        assert opened.parts == () and opened.html is None
        assert ("subject", raw.split(b"\r\n")[0][9:].decode()) in opened.headers
        assert parts.part_data(raw, 1) is None and parts.inline_images(raw) == {}
