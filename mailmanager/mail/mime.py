"""Raw message bytes → headers, MIME structure and body text: the reader under `parsing`.

Why a hand-written MIME reader: speed. The sync pipeline parses thousands of messages a
second, and the stdlib `email` parser (which mail-parser builds on) feeds every message
through line by line in Python and builds a `Message` object for every part before it can
be asked anything. `benchmarks/parse.py` times both on the shared real-mail corpus:
`parsing.parse`, this reader included, runs about five times as fast as
`email.message_from_bytes(raw, policy=email.policy.default)`, which decodes no body at all.
So this module reads only what `mailmanager.parsing` and `mailmanager.classify` need, with
`bytes.find` and a few regular expressions, and decodes as little as it can:

1. Header blocks (RFC 5322 §2.2): a block is split off at the first blank line and unfolded
   (§2.2.3); raw 8-bit header bytes are read as UTF-8, else windows-1252. As in the stdlib
   feedparser, a line that is neither a header nor a continuation ends the block.
2. MIME structure (RFC 2045, RFC 2046): the tree is walked by finding boundary lines with
   `bytes.find` (RFC 2046 §5.1.1); only part *headers* are parsed, for the attachment summary
   and the classification. Only the first text part is transfer-decoded (at most
   `_SNIPPET_SOURCE_BYTES` of it, for the snippet, unless the full text is asked for). Of a
   bounce report, the delivery-status part is decoded in full and the returned message is
   read for its Message-ID (they are small and rare), and a calendar part for its METHOD
   (an invitation answered?). `MAX_DEPTH` and `MAX_PARTS` bound the work one message can
   cause.
3. Text: charsets (RFC 2045/2046) with the labels mail clients really write, falling back to
   UTF-8, charset_normalizer, then replacement characters; RFC 2047 encoded words, tolerating
   what mailers get wrong; HTML bodies turned into text with selectolax/lexbor.

Nothing here raises on bad input: each repair is appended to the caller's `defects` list as a
short snake_case name, which `parsing` keeps in `ParsedMessage.defects`.

Entry points: `read` (one walk over a message, giving a `Doc`), `whole_text`,
`quarantine_reason`, `oversize_stub`, `decode_words`, `decode_bytes` and `html_to_text`.
"""

from __future__ import annotations

import binascii
import codecs
import html as htmllib
import re
from dataclasses import dataclass
from email.utils import collapse_rfc2231_value, decode_params

import charset_normalizer
from selectolax.lexbor import LexborHTMLParser

from mailmanager.mail import classify

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "AttachmentInfo",
    "Doc",
    "decode_bytes",
    "decode_words",
    "html_to_text",
    "oversize_stub",
    "quarantine_reason",
    "read",
    "whole_text",
]

Headers = classify.Headers


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
    try:
        return codecs.getincrementaldecoder(codec)("replace").decode(data, final)
    except UnicodeError:  # even "replace" refuses some input, e.g. UTF-16 without its BOM
        return data.decode("utf-8", "replace")


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


_CONTENT_HEADER_RE = re.compile(rb"(?i)content-(?:type|transfer-encoding)[ \t]*:")
MAX_HEADER_BYTES = 1_048_576


def oversize_stub(raw: bytes, size: int | None = None) -> bytes:
    """What is read and kept of a message over the size limit (`sync.max_message_size`): its
    header block (at most `MAX_HEADER_BYTES` of it) and a plain-text body saying the body
    was left out. The same bytes every time for the same `raw`. `size` is the whole
    message's size when `raw` holds only its headers (fetched so: `spi.RawMessage.truncated`)."""
    block, _ = _split_block(raw[:MAX_HEADER_BYTES])
    kept: list[bytes] = []
    skipping = False
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = _CONTENT_HEADER_RE.match(line) is not None
        if not skipping and line.strip():
            kept.append(line if line.endswith(b"\n") else line + b"\r\n")
    whole = len(raw) if size is None else size
    note = (
        f"[Message too large: {whole} bytes, over the limit (sync.max_message_size);"
        " its body was not read nor stored.]\r\n"
    )
    return b"".join(kept) + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + note.encode()


def quarantine_reason(raw: bytes) -> str | None:
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
# `[^<>]`, not `[^>]`: a tag never spans a "<", so a run of unclosed "<br" costs linear time.
_BLOCK_END_RE = re.compile(r"(?i)<(?:br|/p|/div|/tr|/li|/h[1-6]|/blockquote|/table)\b[^<>]*>")
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
    """The parts between `--boundary` delimiter lines; None when there is no delimiter.

    At most `MAX_PARTS` + 1 parts are cut out (the walk stops past `MAX_PARTS` anyway): two
    million delimiter lines cost the memory of 501 parts, not of two million."""
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
        if len(marks) > MAX_PARTS + 1:  # the part after the last mark ends the slice
            marks.append((i, n, True))  # not read: the walk stops at too_many_parts first
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


MAX_HTML_CHARS = 2_000_000  # HTML beyond this is not read (a few pages of text is plenty)
MAX_HTML_DEPTH = 256  # deeper nesting is read by `_strip_tags`, not by lexbor
_FEW_TAGS = 4096
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*?(/?)>")
_HIDDEN_RE = re.compile(r"(?i)<(/?)(script|style|head|title|template)\b[^<>]*>")
_ANY_TAG_RE = re.compile(r"<[^<>]*>|<[A-Za-z/!][^<>]*$")  # a tag, or one cut at the end
# Elements that hold no content, or whose end tag is often left out: they add no depth.
_NO_DEPTH = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr", "p", "li", "td", "th", "tr", "option", "dd", "dt")
)  # fmt: skip


def _too_deep(html: str) -> bool:
    """True when elements nest deeper than `MAX_HTML_DEPTH`: an HTML parser's tree
    building slows down with the square of the nesting (lexbor takes 11 s for 64k nested
    divs), so such a body is read by `_strip_tags` instead. One linear pass, and none for
    a body of few tags: with at most `_FEW_TAGS` tags, no nesting costs lexbor 20 ms."""
    if html.count("<") <= _FEW_TAGS:
        return False
    depth = 0
    for m in _TAG_RE.finditer(html):
        if m.group(3) or m.group(2).lower() in _NO_DEPTH:
            continue
        depth += -1 if m.group(1) else 1
        if depth > MAX_HTML_DEPTH:
            return True
        depth = max(depth, 0)
    return False


def _strip_tags(html: str) -> str:
    """Text of `html` without an HTML parser, in linear time whatever the nesting: hidden
    elements (script, style...) dropped, block ends made line breaks, other tags removed,
    character references decoded."""
    kept: list[str] = []
    hidden: str | None = None
    pos = 0
    for m in _HIDDEN_RE.finditer(html):
        name = m.group(2).lower()
        if hidden is None and not m.group(1):
            kept.append(html[pos : m.start()])
            hidden = name
        elif hidden == name and m.group(1):
            hidden = None
            pos = m.end()
    if hidden is None:
        kept.append(html[pos:])
    text = _BLOCK_END_RE.sub("\n", "".join(kept))
    return htmllib.unescape(_ANY_TAG_RE.sub("", text))


def html_to_text(html: str, max_chars: int = MAX_HTML_CHARS) -> str:
    """Visible text of an HTML body (selectolax/lexbor), one line per block, spaces folded.

    Linear in the size of `html` whatever its nesting (see `_too_deep`); only the first
    `max_chars` characters are read."""
    html = html[:max_chars]
    if _too_deep(html):
        lines = (" ".join(line.split()) for line in _strip_tags(html).splitlines())
        return "\n".join(line for line in lines if line)
    tree = LexborHTMLParser(_BLOCK_END_RE.sub(lambda m: m.group(0) + "\n", html))
    tree.strip_tags(["script", "style", "head", "title", "template"])
    root = tree.body or tree.root
    text = root.text(separator="", strip=False) if root is not None else ""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment as the walk found it; `parsing` makes it a public `parsing.Attachment`."""

    filename: str
    content_type: str
    size: int  # decoded size in bytes when cheap to know, else encoded size


@dataclass
class Doc:
    """What one walk over a message collects (internal, mutable)."""

    defects: list[str]
    headers: Headers
    attachments: list[AttachmentInfo]
    delivery_status: list[bytes]
    report_type: str | None = None
    original_message_id: str | None = None
    is_calendar: bool = False
    calendar_reply: bool = False  # an iCalendar METHOD:REPLY (RFC 5546 §3.2.3)
    parts: int = 0
    plain: tuple[bytes, str, str | None] | None = None  # (body, cte, charset)
    html: tuple[bytes, str, str | None] | None = None
    other_text: tuple[bytes, str, str | None] | None = None
    text: str = ""
    text_complete: bool = True  # False when `text` is only the start of the part


def _visit(doc: Doc, headers: Headers, body: bytes, depth: int, default: str) -> None:
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
    if calendar and not doc.calendar_reply:
        doc.calendar_reply = _is_reply(params, body, cte)
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
        AttachmentInfo(filename=filename, content_type=ctype, size=_decoded_size(body, cte))
    )


_METHOD_REPLY_RE = re.compile(rb"(?im)^METHOD:\s*REPLY\s*$")


def _is_reply(params: dict[str, str], body: bytes, cte: str) -> bool:
    """True when a calendar part answers an invitation (accepted, declined or tentative):
    METHOD:REPLY as a Content-Type parameter or in the iCalendar text (RFC 5546 §3.2.3)."""
    if params.get("method", "").upper() == "REPLY":
        return True
    return _METHOD_REPLY_RE.search(_transfer_decode(body, cte, [])[0]) is not None


def _chosen_text(doc: Doc, limit: int | None, defects: list[str]) -> tuple[str, bool]:
    """(the body text, True when complete): the first text/plain part, else the HTML part
    as text, else another text part, decoded up to `limit` bytes."""
    chosen = doc.plain or doc.html or doc.other_text
    if chosen is None:
        return "", True
    payload, cut = _transfer_decode(chosen[0], chosen[1], defects, limit)
    text = decode_bytes(payload, chosen[2], defects, final=not cut)
    return (html_to_text(text) if chosen is doc.html else text), not cut


def whole_text(doc: Doc) -> str:
    """`doc.text` in full: decoded again, whole, when `read` kept only its start."""
    return doc.text if doc.text_complete else _chosen_text(doc, None, [])[0]


def read(raw: bytes, full_text: bool) -> Doc:
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
    doc = Doc(defects=defects, headers=headers, attachments=[], delivery_status=[])
    if not headers:
        return doc
    _visit(doc, headers, body, 0, "text/plain")
    limit = None if full_text else _SNIPPET_SOURCE_BYTES
    doc.text, doc.text_complete = _chosen_text(doc, limit, defects)
    return doc
