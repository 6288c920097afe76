"""Raw RFC 822 bytes → an immutable `ParsedMessage`. Never raises on bad input.

CONTRACT (other modules rely on exactly these names): `parse(raw, provider_date=None) ->
ParsedMessage | Quarantined`, the dataclasses `Address`, `Attachment`, `BounceInfo`,
`ParsedMessage`, `Quarantined`, and the helpers `normalize_subject`, `subject_has_prefix`,
`normalize_message_id`, `normalize_address` (from `mailmanager.addresses`) and `body_text`.

How a message is read, cheaply (the sync pipeline needs thousands of messages a second):

1. The header block is split off at the first blank line and unfolded here (RFC 5322 §2.2.3);
   raw 8-bit header bytes are read as UTF-8, else windows-1252. Only what has no header
   block at all (empty input, binary junk, an Outlook .msg OLE2 file) is `Quarantined`.
2. The MIME tree is walked by finding boundary lines with `bytes.find` (RFC 2046 §5.1.1);
   only part *headers* are parsed, for the attachment summary and the classification.
   Only the first text part is transfer-decoded (at most `_SNIPPET_SOURCE_BYTES` of it),
   for the snippet; `body_text` decodes the whole of it when asked.
3. Dates, ids, subject and addresses are read from the few headers we need.
4. `mailmanager.classify` labels auto-replies, bulk mail, bounces; bounce reports are
   read in full (they are small and rare).

Each repair is recorded in `ParsedMessage.defects` as a short snake_case name.

Dates: a `Date:` header is rejected when unparseable, when its offset exceeds 14 h, when it
is more than 48 h after `provider_date` (or now), or when it has no zone at all ("naive").
Then come `provider_date` (date_source="provider"), the newest `Received:` date
("received"), and last, for a naive header date only, that date read as UTC
(date_source="header", defect "date_no_zone" kept). `-0000` is UTC (RFC 5322 §3.3).
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import collapse_rfc2231_value, decode_params, parsedate_tz

import charset_normalizer
from selectolax.lexbor import LexborHTMLParser

from mailmanager import addresses, classify

__all__ = [
    "Address",
    "Attachment",
    "BounceInfo",
    "ParsedMessage",
    "Quarantined",
    "body_text",
    "normalize_address",
    "normalize_message_id",
    "normalize_subject",
    "parse",
    "subject_has_prefix",
]

logger = logging.getLogger(__name__)

Headers = classify.Headers
normalize_address = addresses.normalize_address  # part of this module's contract


@dataclass(frozen=True)
class Address:
    """One mailbox address. `email` is the match key form: lower-cased, IDNA A-label domain.

    `name` is the decoded display name ("" when none). `display_email` keeps the Unicode
    domain for display.
    """

    email: str
    name: str = ""
    display_email: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int  # decoded size in bytes when cheap to know, else encoded size


@dataclass(frozen=True)
class BounceInfo:
    """What a bounce (DSN or a non-standard one) says failed."""

    recipients: tuple[str, ...]  # failed recipients, normalised like Address.email
    permanent: bool  # 5.x.x / "failed" → True; 4.x.x / "delayed" → False
    status: str = ""  # e.g. "5.1.1"
    original_message_id: str | None = None  # normalised, when the bounce quotes it


@dataclass(frozen=True)
class ParsedMessage:
    """Everything the pipeline needs from one message; bodies decoded only as far as needed."""

    message_id: str  # normalised: the first <...> token, without the brackets, case kept
    message_id_synthetic: bool  # True when the message had none: "{sha256}@missing.invalid"
    in_reply_to: tuple[str, ...]  # normalised ids, garbage dropped
    references: tuple[str, ...]  # normalised ids, in header order, duplicates dropped
    subject: str  # RFC 2047-decoded, whitespace folded
    subject_normalized: str  # reply/forward prefixes stripped, case-folded, spaces folded
    subject_had_prefix: bool  # the subject started with a reply/forward prefix
    date: datetime | None  # UTC-aware; None only if neither header nor provider date usable
    date_source: str  # "header", "provider", "received" (newest Received:), or "none"
    from_: tuple[Address, ...]
    sender: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    snippet: str  # first ~200 characters of the body text, whitespace folded
    attachments: tuple[Attachment, ...]
    is_auto_reply: bool  # RFC 3834 / vendor headers / out-of-office subjects (fr, en, de)
    is_out_of_office: bool  # an auto-reply that is an absence notice
    is_bulk: bool  # List-Id, List-Unsubscribe, Precedence bulk/list/junk, ...
    is_bounce: bool
    is_calendar: bool  # contains text/calendar or application/ics
    bounce: BounceInfo | None
    list_id: str | None
    size: int  # len(raw)
    sha256: str  # hex digest of raw
    defects: tuple[str, ...]  # short names of what was wrong and repaired


@dataclass(frozen=True)
class Quarantined:
    """A byte string that has no usable header block; kept with its reason, never dropped."""

    reason: str
    size: int
    sha256: str


# --- Text decoding: charsets (RFC 2045/2046) and encoded words (RFC 2047) -----------------

# Labels mail clients write that Python does not know, or knows as a narrower charset than
# the one actually used (WHATWG Encoding Standard: latin-1 and ascii labels mean windows-1252).
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "ks_c_5601-1989": "cp949",
    "euc-kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "iso_8859-1": "cp1252", "latin1": "cp1252",
    "latin-1": "cp1252", "us-ascii": "utf-8", "ascii": "utf-8", "ansi_x3.4-1968": "utf-8",
    "x-sjis": "cp932", "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932",
    "windows-874": "cp874", "tis-620": "cp874", "big5": "cp950", "iso-8859-9": "cp1254",
    "unicode-1-1-utf-7": "utf-7", "x-unknown": "", "unknown-8bit": "", "x-user-defined": "",
    "iso-8859-8-i": "iso-8859-8", "utf8": "utf-8", "x-mac-roman": "mac-roman",
}  # fmt: skip
_FALLBACK_CHARSET = "cp1252"


def _codec(charset: str | None) -> str | None:
    """A Python codec name for a MIME charset label; None when unknown."""
    label = (charset or "utf-8").strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    # A few codec names (base64, zlib, rot13) are not text encodings; never use those.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, charset: str | None, defects: list[str], final: bool = True) -> str:
    """Decode `data` in `charset`, falling back to UTF-8, charset_normalizer, then replacement.

    With `final=False` a multibyte sequence cut at the end of `data` is dropped silently.
    """
    codec = _codec(charset)
    if codec is None:
        defects.append("unknown_charset")
        if len(data) >= 32:
            best = charset_normalizer.from_bytes(data[:65536]).best()
            if best is not None and best.encoding:
                return data.decode(best.encoding, "replace")
        codec = "utf-8"
    for name in (codec, "utf-8") if codec != "utf-8" else ("utf-8", _FALLBACK_CHARSET):
        try:
            return codecs.getincrementaldecoder(name)("strict").decode(data, final)
        except UnicodeError:
            defects.append("charset_mismatch")
        except LookupError:
            break
    defects.append("charset_decode_error")
    if len(data) >= 32:
        best = charset_normalizer.from_bytes(data[:65536]).best()
        if best is not None and best.encoding:
            return data.decode(best.encoding, "replace")
    return codecs.getincrementaldecoder(codec)("replace").decode(data, final)


_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+?)\?([QqBb])\?([^?]*)\?=")


def _word_bytes(encoding: str, text: str) -> bytes:
    if encoding in "Qq":
        return binascii.a2b_qp(text.encode("utf-8"), header=True)
    packed = "".join(text.split()).encode("ascii", "ignore").rstrip(b"=")
    packed = packed[: len(packed) - len(packed) % 4 if len(packed) % 4 == 1 else len(packed)]
    return binascii.a2b_base64(packed + b"=" * (-len(packed) % 4))


def decode_words(value: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded words in `value`, tolerating what mailers get wrong.

    Adjacent words in the same charset are joined *before* decoding, because many mailers
    split a multibyte character across two words; whitespace between encoded words is
    dropped (RFC 2047 §6.2). An undecodable word is kept as it was written.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = b""
    pending_charset: str | None = None
    last_end = 0
    for m in _ENCODED_WORD_RE.finditer(value):
        gap = value[last_end : m.start()]
        charset = m.group(1).split("*", 1)[0]
        try:
            chunk = _word_bytes(m.group(2), m.group(3))
        except (binascii.Error, ValueError):
            defects.append("bad_encoded_word")
            chunk = None
        joined = pending_charset is not None and not gap.strip()
        if chunk is not None and joined and charset.lower() == (pending_charset or "").lower():
            pending += chunk
        else:
            if pending_charset is not None:
                out.append(decode_bytes(pending, pending_charset, defects))
                pending, pending_charset = b"", None
            if not joined:
                out.append(gap)
            if chunk is None:
                out.append(m.group(0))
            else:
                pending, pending_charset = chunk, charset
        last_end = m.end()
    if pending_charset is not None:
        out.append(decode_bytes(pending, pending_charset, defects))
    out.append(value[last_end:])
    return "".join(out)


# --- Header blocks (RFC 5322 §2.2) ----------------------------------------------------------

_HEADER_LINE_RE = re.compile(r"([!-9;-~]+)[ \t]*:(.*)", re.DOTALL)
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _split_block(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body) split at the first empty line."""
    if data.startswith(b"\n"):
        return b"", data[1:]
    if data.startswith(b"\r\n"):
        return b"", data[2:]
    lf = data.find(b"\n\n")
    crlf = data.find(b"\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[: crlf + 1], data[crlf + 3 :]
    if lf >= 0:
        return data[: lf + 1], data[lf + 2 :]
    return data, b""


def _read_headers(data: bytes, defects: list[str]) -> tuple[Headers, bytes]:
    """Parse the header block at the start of `data`; returns (headers, body).

    As in the stdlib feedparser, a line that is neither a header nor a continuation ends
    the block ("missing_header_body_separator") and starts the body.
    """
    block, body = _split_block(data)
    headers: Headers = {}
    text = block.decode("latin-1")
    name: str | None = None
    parts: list[str] = []
    offset = 0
    for line in text.split("\n"):
        length = len(line) + 1
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if name is None:
                defects.append("leading_continuation_line")
            else:
                parts.append(line)
        elif not line:
            pass
        else:
            m = _HEADER_LINE_RE.match(line)
            if m is None:
                defects.append("missing_header_body_separator")
                body = block[offset:] + b"\n" + body if body else block[offset:]
                break
            if name is not None:
                _store(headers, name, parts, defects)
            name, parts = m.group(1).lower(), [m.group(2)]
        offset += length
    if name is not None:
        _store(headers, name, parts, defects)
    return headers, body


def _store(headers: Headers, name: str, parts: list[str], defects: list[str]) -> None:
    value = "".join(parts).strip()
    if not value.isascii():
        # Raw 8-bit header (RFC 6532 allows UTF-8; older mailers wrote their local charset).
        raw = value.encode("latin-1")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            defects.append("raw_8bit_header")
            value = raw.decode(_FALLBACK_CHARSET, "replace")
    headers.setdefault(name, []).append(value)


def _quarantine_reason(raw: bytes) -> str | None:
    if not raw.strip():
        return "empty"
    if raw.startswith(_OLE2_MAGIC):
        return "outlook_msg_ole2"
    return None


# --- MIME structure (RFC 2045, RFC 2046) ----------------------------------------------------

MAX_DEPTH = 20
MAX_PARTS = 500
_SNIPPET_SOURCE_BYTES = 32768
_NOT_BASE64 = bytes(
    sorted(
        set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    )
)
_FIRST_DELIMITER_RE = re.compile(rb"\s*--([!-~]{1,70}?)(?:--)?[ \t]*\r?\n")
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')
_BLOCK_END_RE = re.compile(r"(?i)<(?:br|/p|/div|/tr|/li|/h[1-6]|/blockquote|/table)\b[^>]*>")
_REPORT_PARTS = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
)


def _content_params(value: str) -> tuple[str, dict[str, str]]:
    """(lower-cased main value, parameters) of a Content-Type/-Disposition value."""
    main, _, _ = value.partition(";")
    pairs = [(k.lower(), v.strip()) for k, v in _PARAM_RE.findall(value)]
    params: dict[str, str] = {}
    if any("*" in k for k, _ in pairs):
        # RFC 2231 continuations and charset-tagged values.
        for key, param in decode_params([(main, ""), *pairs])[1:]:
            params.setdefault(key, collapse_rfc2231_value(param).strip('"'))
    else:
        for key, param in pairs:
            if param.startswith('"'):
                param = param[1:-1] if param.endswith('"') and len(param) > 1 else param[1:]
                param = param.replace('\\"', '"').replace("\\\\", "\\")
            params.setdefault(key, param)
    return main.strip().lower(), params


def _split_multipart(body: bytes, boundary: str, defects: list[str]) -> list[bytes] | None:
    """The parts between `--boundary` delimiter lines; None when there is no delimiter."""
    try:
        delim = b"--" + boundary.encode("latin-1")
    except UnicodeEncodeError:
        delim = b"--" + boundary.encode("utf-8")
    n = len(body)
    marks: list[tuple[int, int, bool]] = []  # (line start, content start, closing)
    pos = 0
    while True:
        i = body.find(delim, pos)
        if i < 0:
            break
        if i and body[i - 1] != 0x0A:
            pos = i + 1
            continue
        j = i + len(delim)
        closing = body.startswith(b"--", j)
        j += 2 if closing else 0
        while j < n and body[j] in b" \t\r":
            j += 1
        if j < n and body[j] != 0x0A and not closing:
            pos = i + 1  # a longer boundary that shares this prefix
            continue
        marks.append((i, min(j + 1, n), closing))
        if closing:
            break
        pos = j
    if not marks:
        return None
    if not marks[-1][2]:
        defects.append("missing_closing_boundary")
    parts: list[bytes] = []
    for k, (_, start, closing) in enumerate(marks):
        if closing:
            break
        end = marks[k + 1][0] if k + 1 < len(marks) else n
        part = body[start:end]
        if part.endswith(b"\r\n"):
            part = part[:-2]
        elif part.endswith(b"\n"):
            part = part[:-1]
        parts.append(part)
    return parts


def _transfer_decode(
    data: bytes, cte: str, defects: list[str], limit: int | None = None
) -> tuple[bytes, bool]:
    """(decoded bytes, truncated) for a Content-Transfer-Encoding (RFC 2045 §6)."""
    if cte == "base64":
        # Anything outside the base64 alphabet is dropped first (RFC 2045 §6.8 says to
        # ignore it), so the padding arithmetic below sees only real characters.
        packed = data.translate(None, _NOT_BASE64)
        if limit is not None and len(packed) > limit:
            packed, cut = packed[: limit - limit % 4], True
        else:
            cut = False
        packed = packed.replace(b"=", b"")
        if len(packed) % 4 == 1:
            defects.append("bad_base64")
            packed = packed[:-1]
        try:
            return binascii.a2b_base64(packed + b"=" * (-len(packed) % 4)), cut
        except binascii.Error:
            defects.append("bad_base64")
            return b"", cut
    cut = limit is not None and len(data) > limit
    if cut:
        data = data[:limit]
    if cte == "quoted-printable":
        return binascii.a2b_qp(data), cut
    if cte not in ("", "7bit", "8bit", "binary"):
        defects.append("unknown_transfer_encoding")
    return data, cut


def _decoded_size(data: bytes, cte: str) -> int:
    if cte == "base64":
        return len(data.translate(None, _NOT_BASE64)) * 3 // 4
    return len(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body (selectolax/lexbor), one line per block, spaces folded."""
    tree = LexborHTMLParser(_BLOCK_END_RE.sub(lambda m: m.group(0) + "\n", html))
    tree.strip_tags(["script", "style", "head", "title", "template"])
    root = tree.body or tree.root
    text = root.text(separator="", strip=False) if root is not None else ""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


@dataclass
class _Doc:
    """What one walk over a message collects (internal, mutable)."""

    defects: list[str]
    headers: Headers
    attachments: list[Attachment]
    delivery_status: list[bytes]
    report_type: str | None = None
    original_message_id: str | None = None
    is_calendar: bool = False
    parts: int = 0
    plain: tuple[bytes, str, str | None] | None = None  # (body, cte, charset)
    html: tuple[bytes, str, str | None] | None = None
    other_text: tuple[bytes, str, str | None] | None = None
    text: str = ""


def _visit(doc: _Doc, headers: Headers, body: bytes, depth: int, default: str) -> None:
    ctype_value = headers.get("content-type", [default])[0]
    ctype, params = _content_params(ctype_value)
    if "/" not in ctype:
        if "content-type" in headers:
            doc.defects.append("bad_content_type")
        ctype = default
    cte = headers.get("content-transfer-encoding", [""])[0].strip().lower()
    if ctype.startswith("multipart/"):
        boundary = params.get("boundary")
        parts = _split_multipart(body, boundary, doc.defects) if boundary else None
        if parts is None:
            # A declared boundary that never occurs, while the body opens with a delimiter
            # line: the mailer wrote the wrong one. Use the one it actually used.
            opening = _FIRST_DELIMITER_RE.match(body)
            if opening is not None:
                boundary = opening.group(1).decode("latin-1")
                parts = _split_multipart(body, boundary, doc.defects)
                doc.defects.append("boundary_mismatch")
        if parts is None:
            doc.defects.append("boundary_not_found" if boundary else "multipart_without_boundary")
            doc.other_text = doc.other_text or (body, cte, params.get("charset"))
            return
        if depth >= MAX_DEPTH:
            doc.defects.append("mime_too_deep")
            return
        if ctype == "multipart/report" and doc.report_type is None:
            doc.report_type = params.get("report-type", "").lower()
        inner_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        for part in parts:
            doc.parts += 1
            if doc.parts > MAX_PARTS:
                doc.defects.append("too_many_parts")
                return
            part_headers, part_body = _read_headers(part, doc.defects)
            _visit(doc, part_headers, part_body, depth + 1, inner_default)
        return
    disposition, dparams = _content_params(headers.get("content-disposition", [""])[0])
    filename = dparams.get("filename") or params.get("name") or ""
    if "=?" in filename:
        filename = decode_words(filename, doc.defects)
    calendar = ctype in ("text/calendar", "application/ics")
    doc.is_calendar = doc.is_calendar or calendar
    if ctype == "message/delivery-status":
        doc.delivery_status.append(_transfer_decode(body, cte, doc.defects)[0])
        return
    if ctype in ("message/disposition-notification", "message/feedback-report"):
        return  # the machine-readable half of an MDN (RFC 8098) or ARF report (RFC 5965)
    if ctype in _REPORT_PARTS:
        if doc.original_message_id is None:
            inner, _ = _read_headers(_transfer_decode(body, cte, doc.defects)[0], [])
            ids = inner.get("message-id")
            doc.original_message_id = ids[0] if ids else None
        if ctype.endswith("headers"):
            return
    elif ctype.startswith("text/") and not calendar and disposition != "attachment":
        found = (body, cte, params.get("charset"))
        if not filename:
            if ctype == "text/plain":
                doc.plain = doc.plain or found
            elif ctype == "text/html":
                doc.html = doc.html or found
            else:
                doc.other_text = doc.other_text or found
            return
        doc.other_text = doc.other_text or found  # a named inline text part: last resort
    doc.attachments.append(
        Attachment(filename=filename, content_type=ctype, size=_decoded_size(body, cte))
    )


def _read(raw: bytes, full_text: bool) -> _Doc:
    """Walk `raw`: headers, MIME structure, and the body text (whole or snippet-sized)."""
    defects: list[str] = []
    data = raw
    if data.startswith(b"\xef\xbb\xbf"):
        defects.append("utf8_bom")
        data = data[3:]
    if data[:1].isspace():
        defects.append("leading_whitespace")
        data = data.lstrip()
    if data.startswith(b"From "):
        defects.append("mbox_from_line")
        newline = data.find(b"\n")
        data = data[newline + 1 :] if newline >= 0 else b""
    headers, body = _read_headers(data, defects)
    doc = _Doc(defects=defects, headers=headers, attachments=[], delivery_status=[])
    if not headers:
        return doc
    _visit(doc, headers, body, 0, "text/plain")
    limit = None if full_text else _SNIPPET_SOURCE_BYTES
    chosen = doc.plain or doc.html or doc.other_text
    if chosen is not None:
        payload, cut = _transfer_decode(chosen[0], chosen[1], defects, limit)
        text = decode_bytes(payload, chosen[2], defects, final=not cut)
        doc.text = html_to_text(text) if chosen is doc.html else text
    return doc


# --- Message-IDs (RFC 5322 §3.6.4) -------------------------------------------------------

_ANGLE_ID_RE = re.compile(r"<([^<>]*)>")
_BARE_ID_RE = re.compile(r"[^\s<>\"(),;:]+@[^\s<>\"(),;:]+")
_WS_RE = re.compile(r"\s+")
MAX_REFERENCES = 200


def _id_tokens(value: str) -> list[str]:
    """Every id in `value`: the `<...>` tokens, or bare `x@y` words when there are none."""
    tokens = [_WS_RE.sub("", t) for t in _ANGLE_ID_RE.findall(value)]
    if not tokens and "<" not in value:
        tokens = _BARE_ID_RE.findall(value)
    return [t for t in tokens if t and len(t) <= 998]


def normalize_message_id(s: str | None) -> str | None:
    """The first `<...>` token of `s` without brackets (case kept); None when there is none."""
    if not s:
        return None
    tokens = _id_tokens(s)
    return tokens[0] if tokens else None


def _id_list(values: list[str], own_id: str, defects: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        for token in _id_tokens(value):
            if token != own_id:
                seen.setdefault(token, None)
    ids = list(seen)
    if len(ids) > MAX_REFERENCES:
        # Keep the root and the most recent ancestors: what a threader needs (JWZ §"Threading").
        defects.append("too_many_references")
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return tuple(ids)


# --- Subjects -----------------------------------------------------------------------------

_PREFIX = (
    r"(?:re|fwd?|fw|tr|r[ée]f|aw|wg|sv|vs|antw|rif|r|i|回复|答复|转发)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]"
)
_LIST_TAG = r"\[[^\[\]]{0,80}\]"
_LEAD_RE = re.compile(rf"\s*(?:(?P<p>{_PREFIX})|{_LIST_TAG})", re.IGNORECASE)


def _strip_prefixes(s: str) -> tuple[str, bool]:
    had_prefix = False
    pos = 0
    while True:
        m = _LEAD_RE.match(s, pos)
        if m is None or m.end() == pos:
            return s[pos:], had_prefix
        had_prefix = had_prefix or m.group("p") is not None
        pos = m.end()


def normalize_subject(s: str) -> str:
    """`s` without its leading reply/forward prefixes and list tags, case-folded, spaces folded.

    Strips any number of, nested or interleaved: Re, Fwd, Fw, TR, Réf, AW, WG, SV, VS, Antw,
    RIF, R, I (all only before ':'), 回复/答复/转发, counters ("Re[2]:", "Re(3):") and
    "[list-tag]" blocks.
    """
    rest, _ = _strip_prefixes(s)
    return " ".join(rest.casefold().split())


def subject_has_prefix(s: str) -> bool:
    """True when `s` starts (after list tags) with a reply or forward prefix."""
    return _strip_prefixes(s)[1]


# --- Dates (RFC 5322 §3.3) ----------------------------------------------------------------

_MAX_OFFSET = 14 * 3600
_MAX_FUTURE = timedelta(hours=48)
_EXPLICIT_UTC_RE = re.compile(r"[+-]0000\b|\b(?:UT|UTC|GMT|Z)\b", re.IGNORECASE)
_EXTRA_ZONES = {
    "CET": 1, "CEST": 2, "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "WET": 0, "WEST": 1,
    "BST": 1, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8, "AEST": 10, "AEDT": 11, "IST": 5.5,
}  # fmt: skip
_ZONE_WORD_RE = re.compile(r"\d:\d\d(?::\d\d)?\s+([A-Za-z]{3,4})\b")


def _parse_date(value: str, reference: datetime) -> tuple[datetime | None, str | None]:
    """(UTC datetime, None) or (None or naive-as-UTC datetime, defect name)."""
    try:
        fields = parsedate_tz(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        fields = None
    if fields is None:
        return None, "bad_date"
    offset = fields[9] or 0
    naive = False
    if offset == 0 and _EXPLICIT_UTC_RE.search(value) is None:
        # parsedate_tz says 0 for "-0000", for unknown zone names and for no zone at all.
        word = _ZONE_WORD_RE.search(value)
        hours = _EXTRA_ZONES.get(word.group(1).upper()) if word else None
        if hours is None:
            naive = True
        else:
            offset = int(hours * 3600)
    if abs(offset) > _MAX_OFFSET:
        return None, "date_bad_offset"
    try:
        year = fields[0]
        if year < 1970:
            return None, "bad_date"
        local = datetime(year, *fields[1:6], tzinfo=timezone(timedelta(seconds=offset)))
        when = local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None, "bad_date"
    if when - reference > _MAX_FUTURE:
        return None, "date_in_future"
    if naive:
        return when, "date_no_zone"
    return when, None


def _received_date(values: list[str], reference: datetime) -> datetime | None:
    best: datetime | None = None
    for value in values[:30]:
        _, sep, stamp = value.rpartition(";")
        if not sep:
            continue
        when, defect = _parse_date(stamp, reference)
        if when is not None and defect is None and (best is None or when > best):
            best = when
    return best


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _pick_date(
    headers: Headers, provider_date: datetime | None, defects: list[str]
) -> tuple[datetime | None, str]:
    provider = _utc(provider_date) if provider_date is not None else None
    reference = provider or datetime.now(UTC)
    raw = headers.get("date")
    naive_date: datetime | None = None
    if raw:
        when, defect = _parse_date(raw[0], reference)
        if defect is None and when is not None:
            return when, "header"
        defects.append(defect or "bad_date")
        if defect == "date_no_zone":
            naive_date = when
    else:
        defects.append("no_date")
    if provider is not None:
        return provider, "provider"
    received = _received_date(headers.get("received", []), reference)
    if received is not None:
        return received, "received"
    if naive_date is not None:
        return naive_date, "header"
    return None, "none"


# --- Addresses ------------------------------------------------------------------------------

_ROLES = ("from", "sender", "reply-to", "to", "cc", "bcc")


def _addresses(headers: Headers, name: str, defects: list[str]) -> tuple[Address, ...]:
    values = headers.get(name)
    if not values:
        return ()
    found, problems = addresses.split_address_list(", ".join(values))
    for problem in problems:
        if problem not in defects:
            defects.append(problem)
    out = []
    for raw_name, key, display in found:
        display_name = raw_name
        if "=?" in raw_name:
            display_name = decode_words(raw_name, defects)
        out.append(Address(email=key, name=" ".join(display_name.split()), display_email=display))
    return tuple(out)


# --- Snippets -------------------------------------------------------------------------------

SNIPPET_CHARS = 200
_ATTRIBUTION_RE = re.compile(
    r"^[ \t]*(?:On|Le|Am|El|Il|Op|Den|W dniu)\b[^\n]{0,240}?(?:\n[^\n]{0,240}?)?"
    r"(?:wrote|a écrit|schrieb|escribió|ha scritto|schreef|skrev|napisał)\s*:[ \t]*$"
    r"|^[ \t]*-{2,}\s*(?:Original Message|Message d'origine|Ursprüngliche Nachricht|"
    r"Mensaje original|Messaggio originale|Forwarded message|Message transféré)\s*-{2,}"
    r"|^[ \t]*_{20,}[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)


def make_snippet(text: str) -> str:
    """The first ~200 characters of the new text: quoted lines and quoted history skipped."""
    cut = _ATTRIBUTION_RE.search(text)
    head = text[: cut.start()] if cut is not None else text
    lines = [line for line in head.splitlines() if not line.lstrip().startswith(">")]
    folded = " ".join(" ".join(lines).split())
    if not folded:
        folded = " ".join(text.split())
    if len(folded) <= SNIPPET_CHARS:
        return folded
    clipped = folded[:SNIPPET_CHARS]
    space = clipped.rfind(" ")
    return clipped[:space] if space > SNIPPET_CHARS - 30 else clipped


# --- Entry points ---------------------------------------------------------------------------


def body_text(raw: bytes) -> str:
    """The full decoded human body: the first text/plain part, else the HTML part as text.

    Never raises; gives "" when there is no text.
    """
    try:
        return _read(raw, full_text=True).text
    except Exception:
        logger.warning("body text failed", extra={"action": "parse_body_text_failed"})
        return ""


def parse(raw: bytes, provider_date: datetime | None = None) -> ParsedMessage | Quarantined:
    """Parse `raw`; see the module docstring. Never raises.

    Returns `Quarantined` (with a reason) for input that has no usable header block.
    """
    digest = hashlib.sha256(raw).hexdigest()
    try:
        return _parse(raw, digest, provider_date)
    except Exception as exc:  # a bug here must not stop a sync: keep the bytes, say why
        logger.exception(
            "parser failed", extra={"action": "parse_failed", "sha256": digest, "size": len(raw)}
        )
        return Quarantined(
            reason=f"parser_error: {type(exc).__name__}", size=len(raw), sha256=digest
        )


def _parse(raw: bytes, digest: str, provider_date: datetime | None) -> ParsedMessage | Quarantined:
    reason = _quarantine_reason(raw)
    doc = _read(raw, full_text=False) if reason is None else None
    if doc is None or not doc.headers:
        reason = reason or "no_header_block"
        logger.info(
            "message quarantined",
            extra={"action": "parse_quarantined", "reason": reason, "sha256": digest},
        )
        return Quarantined(reason=reason, size=len(raw), sha256=digest)
    headers = doc.headers
    defects = doc.defects

    raw_id = headers.get("message-id")
    message_id = normalize_message_id(raw_id[0]) if raw_id else None
    synthetic = message_id is None
    if message_id is None:
        defects.append("bad_message_id" if raw_id else "no_message_id")
        message_id = f"{digest}@missing.invalid"
    in_reply_to = _id_list(headers.get("in-reply-to", []), message_id, defects)
    references = _id_list(headers.get("references", []), message_id, defects)

    raw_subject = headers.get("subject")
    subject = decode_words(raw_subject[0], defects) if raw_subject else ""
    subject = " ".join(subject.split())
    rest, had_prefix = _strip_prefixes(subject)

    date, date_source = _pick_date(headers, provider_date, defects)
    roles = {role: _addresses(headers, role, defects) for role in _ROLES}
    senders = [a.email for a in (*roles["from"], *roles["sender"])]
    labels = classify.classify(
        classify.Evidence(
            headers=headers,
            subject=subject,
            sender_emails=tuple(senders),
            recipient_emails=tuple(a.email for a in roles["to"]),
            report_type=doc.report_type,
            delivery_status=tuple(doc.delivery_status),
            original_message_id=normalize_message_id(doc.original_message_id),
            text=doc.text,
        )
    )
    bounce = None
    if labels.is_bounce:
        bounce = BounceInfo(
            recipients=labels.bounce_recipients,
            permanent=labels.bounce_permanent,
            status=labels.bounce_status,
            original_message_id=normalize_message_id(labels.original_message_id),
        )
    return ParsedMessage(
        message_id=message_id,
        message_id_synthetic=synthetic,
        in_reply_to=in_reply_to,
        references=references,
        subject=subject,
        subject_normalized=" ".join(rest.casefold().split()),
        subject_had_prefix=had_prefix,
        date=date,
        date_source=date_source,
        from_=roles["from"],
        sender=roles["sender"],
        reply_to=roles["reply-to"],
        to=roles["to"],
        cc=roles["cc"],
        bcc=roles["bcc"],
        snippet=make_snippet(doc.text),
        attachments=tuple(
            Attachment(filename=a.filename, content_type=a.content_type, size=a.size)
            for a in doc.attachments
        ),
        is_auto_reply=labels.is_auto_reply,
        is_out_of_office=labels.is_out_of_office,
        is_bulk=labels.is_bulk,
        is_bounce=labels.is_bounce,
        is_calendar=doc.is_calendar,
        bounce=bounce,
        list_id=labels.list_id,
        size=len(raw),
        sha256=digest,
        defects=tuple(dict.fromkeys(defects)),
    )
