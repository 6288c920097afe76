"""Mailbox address lists → match keys, conservatively.

`normalize_address` turns one address into the *match key* used everywhere in mailmanager:
the local part lower-cased, the domain lower-cased and converted to its IDNA A-label form
(UTS #46, as mail clients and browsers do). Anything that is not plainly `local@domain`
gives None: a wrong key links a message to the wrong customer, a missing one only loses a
participant.

`split_address_list` parses a To/Cc/From header value. The fast path is
`email.utils.getaddresses`; but Python 3.11.7's version has no `strict=` mode
(CVE-2023-27043: `alice@example.org)<bob@example.org>` yields two addresses), so every
result is checked against the top-level commas of the value: on a mismatch each piece is
read alone and only pieces holding exactly one address are kept; a value whose quotes,
parentheses or angle brackets do not balance gives no address at all. Display names are
returned raw (still RFC 2047-encoded); the caller decodes them.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

import idna

# RFC 5322 §3.2.3 atext, plus "." for dot-atoms; non-ASCII letters are allowed (RFC 6531).
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?")
_TLD_RE = re.compile(r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})")
_IPV4_LITERAL_RE = re.compile(r"\[(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\]")
MAX_HEADER_CHARS = 32768


def _valid_local(local: str) -> bool:
    if not local or len(local) > 64 or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    if local.isascii():
        return _LOCAL_RE.fullmatch(local) is not None
    # Internationalised local part: every non-ASCII character must be a letter or digit.
    return all(
        (_LOCAL_RE.fullmatch(ch) is not None) if ch.isascii() else ch.isalnum() for ch in local
    )


def _ascii_domain(domain: str) -> str | None:
    """The lower-cased A-label form of `domain`, or None when it is not a plausible host name."""
    domain = domain.rstrip(".")
    if not domain:
        return None
    literal = _IPV4_LITERAL_RE.fullmatch(domain)
    if literal is not None:
        return domain if all(int(octet) <= 255 for octet in literal.groups()) else None
    if domain.isascii():
        domain = domain.lower()
    else:
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    if len(domain) > 253:
        return None
    labels = domain.split(".")
    if len(labels) < 2 or _TLD_RE.fullmatch(labels[-1]) is None:
        return None
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return None
    return domain


def normalize_address(addr: str) -> str | None:
    """The match key of `addr` (lower-cased, IDNA A-label domain), or None if implausible.

    Accepts an optional pair of angle brackets and surrounding spaces; rejects quoted local
    parts, several "@", dotless domains and anything with spaces or control characters.
    """
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    if len(addr) > 320 or addr.count("@") != 1:
        return None
    local, _, domain = addr.partition("@")
    if not _valid_local(local):
        return None
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        return None
    return f"{local.lower()}@{ascii_domain}"


def _split_top_level(value: str) -> list[str] | None:
    """`value` split at commas outside quotes, comments and angle brackets.

    None when quotes, parentheses or angle brackets do not balance: such a list cannot be
    read unambiguously (this is what CPython's later `strict=True` refuses too).
    """
    if '"' not in value and "(" not in value and ")" not in value and "<" not in value:
        return value.split(",")
    pieces: list[str] = []
    start = depth = 0
    quoted = escaped = angle = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = depth == 0
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
        elif depth:
            continue
        elif ch == "<":
            if angle:
                return None
            angle = True
        elif ch == ">":
            if not angle:
                return None
            angle = False
        elif ch == "," and not angle:
            pieces.append(value[start:i])
            start = i + 1
    if quoted or depth or angle:
        return None
    pieces.append(value[start:])
    return pieces


# The common shapes, read without the general parser: `addr`, `Name <addr>`, `"Name" <addr>`
# (no comments, escapes, groups, routes or spaces in the address). They give exactly what
# getaddresses gives; anything else takes the general path.
_ADDR = r"[^<>()\[\]\\,;:@\"\s]+@[^<>()\[\]\\,;:@\"\s]+"
_SIMPLE_RE = re.compile(
    rf'\s*(?:"([^"\\]*)"|([^<>()\[\]\\,;:@"]*?))\s*<({_ADDR})>\s*|\s*({_ADDR})\s*'
)


def _simple_pairs(pieces: list[str]) -> list[tuple[str, str]] | None:
    out = []
    for piece in pieces:
        found = _SIMPLE_RE.fullmatch(piece)
        if found is None:
            return None
        quoted, phrase, angled, bare = found.groups()
        if bare is not None:
            out.append(("", bare))
        elif quoted is not None:
            out.append((quoted, angled))
        else:
            out.append((" ".join(phrase.split()), angled))
    return out


def _pairs(value: str, defects: list[str]) -> list[tuple[str, str]]:
    pieces = _split_top_level(value)
    if pieces is not None:
        simple = _simple_pairs(pieces)
        if simple is not None:
            return simple
    try:
        pairs = getaddresses([value])
    except RecursionError:  # _parseaddr recurses once per ":" group; hostile input
        pairs = []
    if pieces is not None and len(pairs) == len(pieces):
        return pairs
    # The fast parser and the separators disagree: read each piece alone and keep only
    # those that hold exactly one address ("a@x.test <b@y.test>" holds two: dropped).
    defects.append("ambiguous_address_list")
    if pieces is None:
        return []
    out: list[tuple[str, str]] = []
    for piece in pieces:
        if not piece.strip():
            continue
        found = [pair for pair in getaddresses([piece]) if pair[1]]
        if len(found) == 1:
            out.append(found[0])
    return out


def split_address_list(value: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Parse one address header value.

    Returns `([(raw_display_name, email_key, display_email), ...], defects)`; addresses that
    fail `normalize_address` are dropped with the defect "bad_address", duplicates too.
    """
    defects: list[str] = []
    if not value.strip():
        return [], defects
    if len(value) > MAX_HEADER_CHARS:
        defects.append("address_header_too_long")
        cut = value.rfind(",", 0, MAX_HEADER_CHARS)
        value = value[: cut if cut > 0 else MAX_HEADER_CHARS]
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for name, addr in _pairs(value, defects):
        if not addr:
            continue
        key = normalize_address(addr)
        if key is None:
            if "bad_address" not in defects:
                defects.append("bad_address")
            continue
        if key in seen:
            continue
        seen.add(key)
        out.append((name, key, addr.strip()))
    return out, defects
