"""A stored message opened for a person to read: its bodies, attachments and headers.

The sync reads messages with the fast reader in `mime`, which decodes only the first text
part. Reading one message on screen asks more: the HTML body, every attachment's bytes, the
inline images an HTML body points at (`cid:`, RFC 2392), every header. That is one message
at a time, so the stdlib parser (`email.policy.default`) does it; the text itself is decoded
with `mime.decode_bytes` and `mime.decode_words`, which never raise on what mailers get
wrong. The walk is bounded like the sync's (`mime.MAX_DEPTH`, `mime.MAX_PARTS`).

Parts are numbered in walk order over the leaves (a forwarded `message/rfc822` is one leaf,
downloaded as an .eml file); the number is what a download asks for. The first text/plain
and text/html leaves that are not attachments are the bodies; every other leaf is listed.
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
from dataclasses import dataclass
from email.message import EmailMessage, Message

from mailmanager.mail import mime, storable

__all__ = [
    "INLINE_IMAGE_TYPES",
    "Opened",
    "Part",
    "html_with_images",
    "inline_images",
    "open_message",
    "part_data",
]

log = logging.getLogger(__name__)

# Raster images a browser shows from a data: URL without running anything (not SVG).
INLINE_IMAGE_TYPES = frozenset(
    ("image/png", "image/gif", "image/jpeg", "image/pjpeg", "image/webp", "image/bmp")
)
MAX_INLINE_BYTES = 10_000_000  # inline images of one message shown, in total


@dataclass(frozen=True)
class Part:
    """A leaf that is not a body: an attachment or an inline part."""

    index: int
    content_type: str
    filename: str
    content_id: str  # without the angle brackets; "" when none
    inline: bool  # Content-Disposition inline, or referenced as cid: without a disposition
    size: int  # decoded bytes


@dataclass(frozen=True)
class Opened:
    text: str  # the text/plain body, else the HTML body as text
    html: str | None  # the HTML body as written (unsafe: see `sanitize.clean`)
    parts: tuple[Part, ...]
    headers: tuple[tuple[str, str], ...]  # (name, decoded value) in message order


_TOO_BIG = frozenset(("mime_too_deep", "too_many_parts"))


def _parse(raw: bytes) -> EmailMessage | None:
    """The stdlib's reading of `raw`; None when the fast reader finds it nested deeper or
    split in more parts than the sync reads (the stdlib parser recurses, and takes seconds
    over tens of thousands of parts, forwarded messages' included, which the fast reader
    does not open: hence the count of Content-Type fields): such a message shows as its
    first text only."""
    if raw.lower().count(b"content-type:") > mime.MAX_PARTS:
        return None
    if _TOO_BIG.intersection(mime.read(raw, full_text=False).defects):
        return None
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except RecursionError:
        return None
    assert isinstance(msg, EmailMessage)
    return msg


def _leaves(msg: Message, depth: int, out: list[Message]) -> None:
    if len(out) >= mime.MAX_PARTS:
        return
    if msg.is_multipart() and msg.get_content_type() != "message/rfc822":
        if depth >= mime.MAX_DEPTH:
            return
        payload = msg.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                _leaves(sub, depth + 1, out)
        return
    out.append(msg)


def _data(part: Message) -> bytes:
    """The decoded bytes of a leaf; a forwarded message as it was written."""
    try:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0].as_bytes(policy=email.policy.compat32)
            return b""
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    except Exception:  # a malformed part reads as empty, never as an error page
        log.info("unreadable part", extra={"action": "part_unreadable"})
        return b""


def _text(part: Message) -> str:
    charset = part.get_content_charset()
    return storable.text(mime.decode_bytes(_data(part), charset, []))


def _header(part: Message, name: str) -> str:
    try:
        value = part.get(name)
    except Exception:
        return ""
    return "" if value is None else str(value)


def _describe(part: Message, index: int) -> Part:
    try:
        filename = part.get_filename() or ""
    except Exception:
        filename = ""
    disposition = (part.get_content_disposition() or "").lower()
    content_id = _header(part, "Content-ID").strip().strip("<>").strip()
    return Part(
        index=index,
        content_type=part.get_content_type(),
        filename=storable.text(mime.decode_words(filename, [])) if "=?" in filename else filename,
        content_id=content_id,
        inline=disposition == "inline" or (bool(content_id) and disposition != "attachment"),
        size=len(_data(part)),
    )


def _is_body(part: Message, wanted: str) -> bool:
    if part.get_content_type() != wanted:
        return False
    try:
        named = bool(part.get_filename())
    except Exception:
        named = False
    return not named and part.get_content_disposition() != "attachment"


def _walk(raw: bytes) -> tuple[EmailMessage | None, list[Message], int | None, int | None]:
    msg = _parse(raw)
    leaves: list[Message] = []
    if msg is not None:
        _leaves(msg, 0, leaves)
    plain = next((i for i, p in enumerate(leaves) if _is_body(p, "text/plain")), None)
    html = next((i for i, p in enumerate(leaves) if _is_body(p, "text/html")), None)
    return msg, leaves, plain, html


def open_message(raw: bytes) -> Opened:
    """Bodies, listed parts and headers of `raw`. Never raises on malformed mail."""
    msg, leaves, plain, html = _walk(raw)
    if msg is None:
        doc = mime.read(raw, full_text=True)
        return Opened(
            text=storable.text(mime.whole_text(doc)),
            html=None,
            parts=(),
            headers=tuple(
                (name, storable.text(mime.decode_words(value, [])))
                for name, values in doc.headers.items()
                for value in values
            ),
        )
    html_text = _text(leaves[html]) if html is not None else None
    if plain is not None:
        text = _text(leaves[plain])
    else:
        text = mime.html_to_text(html_text) if html_text else ""
    parts = tuple(_describe(p, i) for i, p in enumerate(leaves) if i not in (plain, html))
    headers = tuple(
        (name, storable.text(mime.decode_words(" ".join(str(value).split()), [])))
        for name, value in msg.raw_items()
    )
    return Opened(text=text, html=html_text, parts=parts, headers=headers)


def part_data(raw: bytes, index: int) -> tuple[Part, bytes] | None:
    """The listed part numbered `index` and its decoded bytes; None when there is no such
    part (bodies are not parts)."""
    _, leaves, plain, html = _walk(raw)
    if index < 0 or index >= len(leaves) or index in (plain, html):
        return None
    return _describe(leaves[index], index), _data(leaves[index])


def _images(leaves: list[Message]) -> dict[str, str]:
    out: dict[str, str] = {}
    total = 0
    for part in leaves:
        cid = _header(part, "Content-ID").strip().strip("<>").strip()
        ctype = part.get_content_type()
        if not cid or ctype not in INLINE_IMAGE_TYPES:
            continue
        data = _data(part)
        total += len(data)
        if total > MAX_INLINE_BYTES:
            break
        out[cid] = f"data:{ctype};base64,{base64.b64encode(data).decode('ascii')}"
    return out


def inline_images(raw: bytes) -> dict[str, str]:
    """Content-ID → `data:` URL of each raster image part with a Content-ID, at most
    `MAX_INLINE_BYTES` in total (those beyond are left out)."""
    return _images(_walk(raw)[1])


def html_with_images(raw: bytes) -> tuple[str | None, dict[str, str]]:
    """The HTML body as written (None when there is none) and `inline_images`, from one
    reading of `raw`."""
    _, leaves, _, html = _walk(raw)
    if html is None:
        return None, {}
    return _text(leaves[html]), _images(leaves)
