"""What the parser hands out is always storable, and reading a message costs time linear in
its size, whatever it holds (issue #16)."""

from __future__ import annotations

import time

from mailmanager.mail import mime, parsing, storable

UTF7_SURROGATE = "=?utf-7?Q?+2D0-?="


def parsed(raw: bytes, **kwargs: int) -> parsing.ParsedMessage:
    p = parsing.parse(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(p, parsing.ParsedMessage), p
    return p


def message(headers: str, body: bytes = b"Bonjour\r\n") -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in s


def test_a_lone_surrogate_never_leaves_the_parser() -> None:
    raw = message(
        f"From: {UTF7_SURROGATE} <jean@acme.fr>\nTo: a@example.com\n"
        f"Subject: Devis {UTF7_SURROGATE}\nMessage-ID: <s@acme.fr>\n"
        'Content-Type: text/plain; charset="utf-7"\n',
        b"Bonjour +2D0- fin\r\n",
    )
    p = parsed(raw)
    assert p.subject == "Devis \ufffd"
    assert p.from_[0].name == "\ufffd" and p.from_[0].email == "jean@acme.fr"
    assert p.snippet == "Bonjour \ufffd fin"
    assert encodable(parsing.body_text(raw))


def test_nul_characters_are_dropped() -> None:
    p = parsed(message("From: Je\x00an <jean@acme.fr>\nSubject: De\x00vis\nMessage-ID: <n@x>\n",
                       b"Bon\x00jour\r\n"))  # fmt: skip
    assert p.subject == "Devis" and p.from_[0].name == "Jean" and p.snippet == "Bonjour"


def test_a_long_message_id_is_hashed_the_same_way_wherever_it_appears() -> None:
    long_id = "".join(chr(0x4E00 + i * 7919 % 20000) for i in range(900)) + "@acme.fr"
    first = parsed(message(f"From: jean@acme.fr\nMessage-ID: <{long_id}>\n"))
    reply = parsed(
        message(
            f"From: a@example.com\nMessage-ID: <r@x>\nIn-Reply-To: <{long_id}>\n"
            f"References: <root@x> <{long_id}>\n"
        )
    )
    assert len(first.message_id.encode()) <= storable.MAX_ID_BYTES
    assert first.message_id.startswith(long_id[:20]) and first.message_id != long_id
    assert reply.in_reply_to == (first.message_id,)
    assert reply.references == ("root@x", first.message_id)
    # Short ids, and ids of many ASCII characters under the limit, are kept as they are.
    assert storable.identifier("a" * 900) == "a" * 900
    assert storable.identifier(first.message_id) == first.message_id


def test_deeply_nested_html_is_read_in_linear_time() -> None:
    levels = 64000
    html = ("<div>" * levels + "Bonjour &amp; merci" + "</div>" * levels).encode()
    raw = message("From: jean@acme.fr\nMessage-ID: <d@x>\nContent-Type: text/html\n", html)
    started = time.perf_counter()
    p = parsed(raw)
    text = parsing.body_text(raw)
    assert time.perf_counter() - started < 1.0
    # The snippet is read from the first 32 KB: only <div>s there.
    assert p.snippet == "" and text == "Bonjour & merci"


def test_unclosed_tags_cost_linear_time() -> None:
    for html in ("<br" * 200000, "<" * 300000, "<script>" * 50000 + "x", "<b>" * 64000):
        started = time.perf_counter()
        mime.html_to_text(html)
        assert time.perf_counter() - started < 1.0, html[:20]


def test_ordinary_html_still_reads_as_before() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><p>Bonjour&nbsp;"
        "<b>Jean</b></p><div>Ligne 2</div></body></html>"
    )
    assert mime.html_to_text(html) == "Bonjour Jean\nLigne 2"


def test_a_message_over_the_size_limit_is_read_from_its_headers_only() -> None:
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nGros devis\r\n--b\r\n" + b"x" * 200_000
    raw = message(
        "From: Jean <jean@acme.fr>\nTo: a@example.com\nSubject: Gros fichier\n"
        'Message-ID: <big@x>\nContent-Type: multipart/mixed; boundary="b"\n',
        body,
    )
    p = parsed(raw, max_size=100_000)
    assert p.subject == "Gros fichier" and p.from_[0].email == "jean@acme.fr"
    assert p.message_id == "big@x" and p.size == len(raw)
    assert "too_large" in p.defects and p.attachments == ()
    assert p.snippet.startswith("[Message too large:")
    stub = mime.oversize_stub(raw)
    assert len(stub) < 1000 and b"Subject: Gros fichier" in stub
    assert parsed(raw, max_size=len(raw)).snippet == "Gros devis"  # at the limit: read whole


def test_utf16_without_its_bom_decodes_with_replacement_instead_of_failing() -> None:
    # Even the "replace" error handler refuses UTF-16 data without a byte-order mark: the
    # message used to be quarantined as a parser error instead of being stored.
    defects: list[str] = []
    text = mime.decode_bytes(b"\xd8\x00 odd length \xdc", "utf-16", defects)
    assert "odd length" in text and "charset_decode_error" in defects
    raw = message(
        "From: a@acme.fr\nTo: b@example.com\nSubject: =?utf-16?Q?+2D0-=FF?= devis\n"
        "Message-ID: <u16@x>\nContent-Type: text/plain; charset=utf-16\n",
        b"\xff\x00\xd8 corps\r\n",
    )
    p = parsed(raw)
    assert p.subject.endswith("devis") and p.message_id == "u16@x"


def test_a_flood_of_delimiter_lines_costs_the_memory_of_the_part_cap_only() -> None:
    # 2 million delimiter lines in 48 MB used to cost ~280 MB: every part was cut out before
    # the walk stopped at MAX_PARTS.
    import tracemalloc

    raw = message(
        'From: a@acme.fr\nMessage-ID: <flood@x>\nContent-Type: multipart/mixed; boundary="b"\n',
        b"--b\r\n" * 200_000 + b"--b--\r\n",
    )
    tracemalloc.start()
    try:
        p = parsed(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "too_many_parts" in p.defects and p.message_id == "flood@x"
    assert peak < 8_000_000, peak
