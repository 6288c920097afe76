"""A fast parser for the FETCH responses the IMAP connector asks for, and nothing else.

imapclient's `parse_fetch_response` lexes every byte in Python (a char-by-char lexer with
iterators per token): for a 15 KB message that is ~50 us of CPU, more than reading it off
the socket. The connector only ever requests a handful of items, and servers answer them in
one regular shape, e.g. (Dovecot):

    * 1 FETCH (UID 1 FLAGS (\\Seen $Label1) INTERNALDATE "26-Nov-2026 06:48:44 +0000" BODY[] {3866}
    <3866 bytes>)

`parse_fetch` reads exactly that grammar from imaplib's records (see below) with a few
regular expressions, and returns what `parse_fetch_response(records, False, True)` would:
{msg_id: {b"SEQ": seq, item: value, ...}}, keyed by UID when there is one, responses for the
same id merged in order. For anything outside the grammar it returns None, and the caller
falls back to imapclient for the whole response, so oddities stay imapclient's business:

- items other than UID, FLAGS, INTERNALDATE, RFC822.SIZE, MODSEQ and BODY[] (Gmail's
  X-GM-*, ENVELOPE, BODY[HEADER...]...), lower-case item names;
- anything but one space between tokens, nested lists, quoted strings outside
  INTERNALDATE, backslash escapes in quoted strings, numbers with leading zeros;
- a body that is a quoted string, a literal whose length is not the announced one;
- an INTERNALDATE not of the form "dd-Mon-yyyy hh:mm:ss +zzzz" (or an impossible one, or
  "-0000", which imapclient turns into a naive datetime).

Values are imapclient's: atoms are bytes, except NIL -> None and digit strings without a
leading zero -> int (a keyword "2024" is the int 2024, as with imapclient); FLAGS is a tuple;
MODSEQ a 1-tuple; INTERNALDATE an aware datetime (the same instant imapclient gives, with a
`datetime.timezone` instead of imapclient's FixedOffset).

imaplib's records: each untagged FETCH line is one item of the list, without "* " and
without "FETCH" (b'1 (UID 1 FLAGS ())'); a line ending in a literal marker {n} becomes a
(line, literal) tuple, and the rest of the response after the literal is the next record
(b")" in the shape above).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

FetchRecord = bytes | tuple[bytes, bytes] | None
FetchData = dict[int, dict[bytes, object]]

_NUM = rb"(0|[1-9][0-9]*)"
_HEAD = re.compile(_NUM + rb" \(")
# One item and its value; `lastindex` says which (the numbers in parse_fetch). An atom in a
# FLAGS list has no space, control character, '"', '%', '(', ')', '[' or '{': imapclient's
# lexer gives those a meaning.
_ITEM = re.compile(
    rb"UID " + _NUM  # 1
    + rb"|RFC822\.SIZE " + _NUM  # 2
    + rb'|FLAGS \(([^\x00-\x1f"%(){\[]*)\)'  # 3
    + rb'|INTERNALDATE "([^"\\\x00-\x1f]*)"'  # 4
    + rb"|INTERNALDATE (NIL)"  # 5
    + rb"|MODSEQ \(" + _NUM + rb"\)"  # 6
    + rb"|BODY\[\] \{" + _NUM + rb"\}\Z"  # 7
    + rb"|BODY\[\] (NIL)"  # 8
)  # fmt: skip
_MONTHS = {m: i for i, m in enumerate((b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul",
                                        b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"), 1)}  # fmt: skip
_DATE = re.compile(
    rb"([0-9]{2})-(" + b"|".join(_MONTHS) + rb")-([1-9][0-9]{3}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})\Z"
)
_ZONES: dict[int, timezone] = {}
_FLAG_LISTS: dict[bytes, tuple[object, ...]] = {}
_CACHE_MAX = 4096


class _Unusual(Exception):
    """The response leaves the fast grammar: let imapclient parse it."""


def parse_fetch(records: Sequence[FetchRecord]) -> FetchData | None:
    """imaplib's FETCH records parsed as imapclient would, or None: see the module docstring."""
    if len(records) == 1 and records[0] is None:  # imaplib's "no FETCH response at all"
        return {}
    try:
        return _parse(records)
    except _Unusual:
        return None


def _parse(records: Sequence[FetchRecord]) -> FetchData:
    out: FetchData = {}
    count, i = len(records), 0
    item_match = _ITEM.match
    while i < count:
        text, literal = _record(records[i])
        i += 1
        head = _HEAD.match(text)
        if head is None:
            raise _Unusual
        key = seq = int(head[1])
        msg: dict[bytes, object] = {b"SEQ": seq}
        pos = head.end()
        while True:
            m = item_match(text, pos)
            if m is None:
                raise _Unusual
            kind = m.lastindex
            value = m[kind or 0]
            end = m.end()
            if kind == 1:
                key = int(value)
            elif kind == 3:
                msg[b"FLAGS"] = _flags(value)
            elif kind == 4:
                msg[b"INTERNALDATE"] = _date(value)
            elif kind == 7:
                if literal is None or len(literal) != int(value) or i >= count:
                    raise _Unusual
                msg[b"BODY[]"] = literal
                text, literal = _record(records[i])  # the response goes on after the literal
                i += 1
                end = 0
            elif kind == 2:
                msg[b"RFC822.SIZE"] = int(value)
            elif kind == 6:
                msg[b"MODSEQ"] = (int(value),)
            else:  # 5, 8: NIL
                msg[b"INTERNALDATE" if kind == 5 else b"BODY[]"] = None
            sep = text[end : end + 1]
            if sep == b" ":
                pos = end + 1
            elif sep == b")" and end + 1 == len(text) and literal is None:
                break
            else:
                raise _Unusual
        if key in out:
            out[key].update(msg)
        else:
            out[key] = msg
    return out


def _record(record: FetchRecord) -> tuple[bytes, bytes | None]:
    if isinstance(record, bytes):
        return record, None
    if isinstance(record, tuple) and len(record) == 2:
        return record
    raise _Unusual


def _flags(text: bytes) -> tuple[object, ...]:
    flags = _FLAG_LISTS.get(text)
    if flags is None:
        atoms = text.split(b" ") if text else []
        if b"" in atoms:  # two spaces, or a space at either end
            raise _Unusual
        flags = tuple(_atom(a) for a in atoms)
        if len(_FLAG_LISTS) >= _CACHE_MAX:
            _FLAG_LISTS.clear()
        _FLAG_LISTS[text] = flags
    return flags


def _atom(token: bytes) -> object:
    """imapclient's value of an unquoted atom."""
    if token == b"NIL":
        return None
    if token.isdigit() and (token[:1] != b"0" or len(token) == 1):
        return int(token)
    return token


def _date(text: bytes) -> datetime:
    """An INTERNALDATE "dd-Mon-yyyy hh:mm:ss +zzzz" (RFC 3501 date-time, two-digit day) as an
    aware datetime. Raises _Unusual for any other form, so the caller can fall back."""
    m = _DATE.match(text)
    if m is None:
        raise _Unusual
    day, month, year, hour, minute, second, sign, zh, zm = m.groups()
    offset = int(zh) * 3600 + int(zm) * 60
    if sign == b"-":
        if not offset:  # "-0000": imapclient (email.utils) answers a naive datetime
            raise _Unusual
        offset = -offset
    zone = _ZONES.get(offset)
    try:
        if zone is None:
            zone = _ZONES.setdefault(offset, timezone(timedelta(seconds=offset)))
        return datetime(
            int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), 0, zone
        )
    except ValueError:  # 31-Feb, 25:00, an offset of a day or more: imapclient decides
        raise _Unusual from None
