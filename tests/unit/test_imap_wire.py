"""The fast FETCH parser (`connectors.imap_wire`) gives exactly what imapclient gives, or None.

Every case is checked against `imapclient.response_parser.parse_fetch_response(records,
False, True)`, the parser the adapter falls back to; records are shaped as imaplib hands
them over: one item per untagged FETCH line, a (line, literal) tuple where a line ends in
{n}, the rest of the response after a literal as the next item.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from connectors.imap.wire import FetchRecord, parse_fetch

Parsed = dict[int, dict[bytes, object]]


def _norm(value: object) -> object:
    """Datetimes as (instant, offset, aware): imapclient's FixedOffset vs datetime.timezone."""
    if isinstance(value, datetime):
        return ("datetime", value, value.utcoffset())
    if isinstance(value, tuple):
        return tuple(_norm(v) for v in value)
    return value


def _normalised(parsed: Parsed) -> dict[int, dict[bytes, object]]:
    return {k: {item: _norm(v) for item, v in d.items()} for k, d in parsed.items()}


def imapclient_parse(records: list[FetchRecord]) -> Parsed:
    return {int(k): dict(v) for k, v in parse_fetch_response(records, False, True).items()}


def fast_and_same(records: list[FetchRecord]) -> Parsed:
    """parse_fetch's answer, asserting it is not None and equals imapclient's."""
    fast = parse_fetch(records)
    assert fast is not None, records
    assert _normalised(fast) == _normalised(imapclient_parse(records))
    return fast


def falls_back(records: list[FetchRecord]) -> None:
    assert parse_fetch(records) is None


def body(seq: int, uid: int, flags: bytes, date: bytes, raw: bytes) -> list[FetchRecord]:
    head = b"%d (UID %d FLAGS (%s) INTERNALDATE %s BODY[] {%d}" % (seq, uid, flags, date, len(raw))
    return [(head, raw), b")"]


DATE = b'"26-Nov-2026 06:48:44 +0100"'


def test_the_dovecot_shape() -> None:
    records = body(1, 7, b"\\Seen $Label1", DATE, b"Subject: hi\r\n\r\nhello\r\n")
    got = fast_and_same(records)
    assert list(got) == [7]
    assert got[7][b"SEQ"] == 1
    assert got[7][b"FLAGS"] == (b"\\Seen", b"$Label1")
    assert got[7][b"BODY[]"] == b"Subject: hi\r\n\r\nhello\r\n"
    when = got[7][b"INTERNALDATE"]
    assert isinstance(when, datetime)
    assert when.astimezone(UTC) == datetime(2026, 11, 26, 5, 48, 44, tzinfo=UTC)
    assert b"UID" not in got[7]  # keyed by it instead, as imapclient does


def test_a_literal_with_parentheses_and_fetch_lines_inside() -> None:
    raw = b'a)b)\r\n* 3 FETCH (UID 9 FLAGS (\\Deleted))\r\n(((\r\nBODY[] {12}\r\n"x" NIL\r\n'
    got = fast_and_same(body(2, 8, b"\\Seen", DATE, raw) + body(3, 9, b"", DATE, b")"))
    assert got[8][b"BODY[]"] == raw
    assert got[9][b"BODY[]"] == b")"
    assert got[9][b"FLAGS"] == ()


@pytest.mark.parametrize(
    "flags",
    [
        b"",
        b"\\Seen",
        b"\\Recent \\Seen \\Answered \\Flagged \\Draft \\Deleted",
        b"$Forwarded NonJunk $Label1 Junk $MDNSent",
        b"\\*",
        b"2024 0123 0 NIL",  # imapclient: int, bytes (leading zero), int, None
        b"a]b $x}y caf\xc3\xa9 \\Seen\x7f",
    ],
)
def test_flags(flags: bytes) -> None:
    fast_and_same(body(1, 1, flags, DATE, b"x"))
    fast_and_same([b"1 (UID 1 FLAGS (%s))" % flags])


def test_keywords_come_as_imapclient_types() -> None:
    got = fast_and_same([b"1 (UID 1 FLAGS (2024 0123 0 NIL $Label1))"])
    assert got[1][b"FLAGS"] == (2024, b"0123", 0, None, b"$Label1")


def test_unsolicited_fetch_responses_interleaved_merge_in_order() -> None:
    records: list[FetchRecord] = [
        b"5 (FLAGS (\\Seen) MODSEQ (12))",  # no UID: keyed by sequence number
        *body(1, 7, b"\\Recent", DATE, b"one"),
        b"1 (UID 7 FLAGS (\\Seen \\Flagged) MODSEQ (13))",  # later flags for the same UID
        b"2 (UID 8 FLAGS ())",
        *body(2, 8, b"\\Answered", DATE, b"two"),
    ]
    got = fast_and_same(records)
    assert got[7][b"FLAGS"] == (b"\\Seen", b"\\Flagged")
    assert got[7][b"MODSEQ"] == (13,)
    assert got[8][b"FLAGS"] == (b"\\Answered",)
    assert got[5] == {b"SEQ": 5, b"FLAGS": (b"\\Seen",), b"MODSEQ": (12,)}


@pytest.mark.parametrize(
    "records",
    [
        [b"1 (UID 7 RFC822.SIZE 3866)", b"2 (UID 8 RFC822.SIZE 0)"],
        [b"1 (UID 7 FLAGS (\\Seen) MODSEQ (8))"],
        [(b"1 (UID 7 FLAGS (\\Seen) BODY[] {3}", b"abc"), b")"],  # no INTERNALDATE
        [(b"1 (UID 7 BODY[] {3}", b"abc"), b" FLAGS (\\Seen) INTERNALDATE " + DATE + b")"],
        [(b"1 (UID 7 BODY[] {0}", b""), b")"],
        [b"1 (UID 7 FLAGS () INTERNALDATE NIL BODY[] NIL)"],  # a NIL body
        [(b"1 (BODY[] {1}", b"a"), (b" BODY[] {2}", b"bc"), b" UID 4)"],  # two literals
        [b"1 (UID 7)", b"1 (UID 7 UID 9)"],
    ],
)
def test_other_shapes_we_request(records: list[FetchRecord]) -> None:
    fast_and_same(records)


def test_a_nil_body_is_none() -> None:
    got = fast_and_same([b"1 (UID 7 FLAGS () BODY[] NIL)"])
    assert got[7][b"BODY[]"] is None


def test_no_fetch_response_at_all() -> None:
    assert parse_fetch([None]) == {} == imapclient_parse([None])
    assert parse_fetch([]) == {} == imapclient_parse([])


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        (b"26-Nov-2026 06:48:44 +0000", "2026-11-26T06:48:44"),
        (b"01-Jan-2027 00:30:00 +0100", "2026-12-31T23:30:00"),
        (b"29-Feb-2024 23:59:59 -0930", "2024-03-01T09:29:59"),
        (b"15-Jul-1999 12:00:00 +1400", "1999-07-14T22:00:00"),
        (b"15-Jul-1999 12:00:00 +0099", "1999-07-15T10:21:00"),  # 99 minutes, as email.utils
    ],
)
def test_internaldate(text: bytes, utc: str) -> None:
    got = fast_and_same([b'1 (UID 1 INTERNALDATE "%s")' % text])
    when = got[1][b"INTERNALDATE"]
    assert isinstance(when, datetime)
    assert when.astimezone(UTC).replace(tzinfo=None).isoformat() == utc


@pytest.mark.parametrize(
    "text",
    [
        b" 6-Nov-2026 06:48:44 +0000",  # space-padded day (RFC 3501 allows it)
        b"6-Nov-2026 06:48:44 +0000",
        b"26-nov-2026 06:48:44 +0000",
        b"26-Nov-2026 06:48:44 -0000",  # imapclient: naive datetime
        b"31-Feb-2026 06:48:44 +0000",  # imapclient: None
        b"26-Nov-2026 24:00:00 +0000",
        b"26-Nov-2026 06:48:44 +2400",
        b"26-Nov-0099 06:48:44 +0000",
        b"26-Nov-2026 06:48:44",
        b"Thu, 26 Nov 2026 06:48:44 +0000",
        b"",
    ],
)
def test_unusual_internaldates_fall_back(text: bytes) -> None:
    records: list[FetchRecord] = [b'1 (UID 1 INTERNALDATE "%s")' % text]
    falls_back(records)
    imapclient_parse(records)  # and imapclient copes with them its own way


@pytest.mark.parametrize(
    "records",
    [
        # Gmail's items: the labels are quoted strings, the ids 64-bit numbers
        [
            (
                b"1 (X-GM-THRID 1266894439832287888 X-GM-MSGID 1266894439832287889 "
                b'X-GM-LABELS (\\Inbox "Muy Importante" 2024) UID 7 FLAGS (\\Seen) '
                b"INTERNALDATE " + DATE + b" BODY[] {5}",
                b"hello",
            ),
            b")",
        ],
        [b'1 (UID 7 X-GM-LABELS ("a b"))'],
        [b'1 (UID 7 FLAGS (\\Seen) BODY[] "short body")'],  # a quoted-string body
        [b'1 (UID 7 INTERNALDATE "26-Nov-2026 06:48:44 \\"0000")'],  # an escape
        [b"1 (uid 7 flags (\\Seen))"],  # lower-case item names
        [b"1 (UID 7  FLAGS (\\Seen))"],  # two spaces
        [b"1 (UID 7 FLAGS (\\Seen  \\Answered))"],
        [b"1 (UID 7 FLAGS ( \\Seen))"],
        [b"1 (UID 7 FLAGS ((\\Seen)))"],  # nested list
        [b"1 (UID 007 FLAGS (\\Seen))"],  # leading zero
        [b"1 (UID 7 RFC822.SIZE 0100)"],
        [b"1 (UID 7 MODSEQ (8 9))"],
        [b"1 (UID 7 FLAGS (%Seen))"],
        [b"1 (UID 7 FLAGS ({5}))"],
        [b"1 (UID 7 ENVELOPE NIL)"],
        [b"1 (UID 7 BODY[HEADER] NIL)"],
        [b"1 ()"],
        [b"1 (UID 7) "],
        [b"1 (UID 7"],
        [b"1 (UID 7))"],
        [b"x (UID 7)"],
        [(b"1 (UID 7 BODY[] {4}", b"abc"), b")"],  # literal shorter than announced
        [(b"1 (UID 7 BODY[] {3}", b"abc")],  # the response ends with the literal
        [(b"1 (UID 7 FLAGS {3}", b"abc"), b")"],
        [b"1 (UID 7 BODY[] {3})"],  # a literal marker without a literal
        [None, b"1 (UID 7)"],
    ],
)
def test_anything_else_falls_back(records: list[FetchRecord]) -> None:
    falls_back(records)


def test_the_gmail_shape_still_parses_through_imapclient() -> None:
    records: list[FetchRecord] = [
        (b'1 (X-GM-LABELS (\\Inbox "Muy Importante") UID 7 BODY[] {5}', b"hello"),
        b")",
    ]
    falls_back(records)
    assert imapclient_parse(records)[7][b"X-GM-LABELS"] == (b"\\Inbox", b"Muy Importante")


def test_zones_are_fixed_offsets() -> None:
    got = fast_and_same([b'1 (UID 1 INTERNALDATE "26-Nov-2026 06:48:44 -0330")'])
    when = got[1][b"INTERNALDATE"]
    assert isinstance(when, datetime)
    assert when.tzinfo == timezone(-timedelta(hours=3, minutes=30))


# --------------------------------------------------------------- generated responses
_FLAGS = [b"\\Seen", b"\\Recent", b"\\Answered", b"$Label1", b"NonJunk", b"2024", b"0123",
          b"NIL", b"\\*", b"a]b", b"%x", b"(", b'"q"', b"{3}", b"caf\xc3\xa9"]  # fmt: skip
_DATES = [b"26-Nov-2026 06:48:44 +0100", b"01-Jan-1970 00:00:00 -1200",
          b"6-Nov-2026 06:48:44 +0000", b"31-Apr-2026 06:48:44 +0000",
          b"26-Nov-2026 06:48:44 -0000", b"26-Dec-2026 06:48:44",
          b"26-Nov-2026 06:48:44 +2359"]  # fmt: skip
_BODY_BITS = [b"abc", b")", b"(", b"\r\n", b"* 3 FETCH (UID 3 FLAGS ())", b"{5}", b'"', b"\\",
              b"NIL", b" ", b"\x00", b"\xff"]  # fmt: skip
_NUMBERS = [b"0", b"1", b"7", b"42", b"007", b"4294967295", b"x"]

literal_body = st.lists(st.sampled_from(_BODY_BITS), max_size=6).map(b"".join)
item = st.one_of(
    st.sampled_from(_NUMBERS).map(lambda n: [b"UID " + n]),
    st.sampled_from(_NUMBERS).map(lambda n: [b"RFC822.SIZE " + n]),
    st.sampled_from(_NUMBERS).map(lambda n: [b"MODSEQ (" + n + b")"]),
    st.lists(st.sampled_from(_FLAGS), max_size=4).map(lambda f: [b"FLAGS (" + b" ".join(f) + b")"]),
    st.sampled_from(_DATES).map(lambda d: [b'INTERNALDATE "' + d + b'"']),
    st.just([b"INTERNALDATE NIL"]),
    st.just([b"BODY[] NIL"]),
    st.just([b'BODY[] "quoted"']),
    st.just([b'X-GM-LABELS (\\Inbox "a b")']),
    st.just([b"uid 3"]),
    literal_body.map(lambda raw: [b"BODY[] {%d}" % len(raw), raw]),  # [marker, literal]
    st.tuples(literal_body, st.integers(-1, 1)).map(  # a literal of the wrong length
        lambda t: [b"BODY[] {%d}" % max(len(t[0]) + t[1], 0), t[0]]
    ),
)
response = st.tuples(
    st.sampled_from(_NUMBERS[:4]), st.lists(item, max_size=5), st.sampled_from([b" ", b"  "])
)


def _records(responses: list[tuple[bytes, list[list[bytes]], bytes]]) -> list[FetchRecord]:
    """imaplib's records for these responses (literal items are [marker, literal])."""
    records: list[FetchRecord] = []
    for seq, items, sep in responses:
        text = seq + b" ("
        for n, piece in enumerate(items):
            text += (sep if n else b"") + piece[0]
            if len(piece) == 2:
                records.append((text, piece[1]))
                text = b""
        records.append(text + b")")
    return records


@settings(max_examples=3000, deadline=None)
@given(st.lists(response, min_size=1, max_size=3))
def test_generated_responses_parse_as_imapclient_does(
    responses: list[tuple[bytes, list[list[bytes]], bytes]],
) -> None:
    records = _records(responses)
    fast = parse_fetch(records)
    try:
        slow = imapclient_parse(records)
    except (ProtocolError, ValueError, TypeError, AssertionError):
        assert fast is None, records  # imapclient refuses it: so must the fast path (and fall back)
        return
    if fast is not None:
        assert _normalised(fast) == _normalised(slow), records


def test_generated_plain_responses_take_the_fast_path() -> None:
    records = _records([(b"1", [[b"UID 7"], [b"FLAGS (\\Seen)"], [b"BODY[] {3}", b"abc"]], b" ")])
    fast_and_same(records)
