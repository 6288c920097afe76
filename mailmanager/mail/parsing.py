"""Raw RFC 822 bytes → an immutable `ParsedMessage`. Never raises on bad input.

CONTRACT (other modules rely on exactly these names): `parse(raw, provider_date=None,
max_size=None) -> ParsedMessage | Quarantined`, the dataclasses `Address`, `Attachment`,
`BounceInfo`, `ParsedMessage`, `Quarantined`, and the helpers `normalize_subject`,
`subject_has_prefix`, `normalize_message_id`, `normalize_address` (from
`mailmanager.addresses`), `body_text` and `text_facts`.

How a message is read, cheaply (the sync pipeline needs thousands of messages a second):

1. `mailmanager.mime` splits off and unfolds the header block, walks the MIME tree and
   decodes only the first text part, for the snippet (see its docstring); `body_text` has it
   decode the whole of that part. Only what has no header block at all (empty input, binary
   junk, an Outlook .msg OLE2 file) is `Quarantined`.
2. Dates, ids, subject and addresses are read from the few headers we need.
3. `mailmanager.classify` labels auto-replies, bulk mail, bounces; bounce reports are
   read in full (they are small and rare).
4. `mailmanager.replies` reads what the reminder rules need in the body (does it expect a
   reply, when is an absent sender back), in the text step 1 decoded (decoded again, whole,
   only when it was longer than the snippet needs), for the messages a rule can read:
   not list mail, bounces, nor auto-replies other than absence notices (none of these is
   ever the message a reminder is about). Ingest stores these facts on the message.

Each repair is recorded in `ParsedMessage.defects` as a short snake_case name.

What leaves the parser is storable (`mailmanager.mail.storable`): no lone surrogates, no NUL
characters, and ids too long for a database index kept as a prefix plus their SHA-256.

Dates: a `Date:` header is rejected when unparseable, when its offset exceeds 14 h, when it
is more than 48 h after `provider_date` (or now), or when it has no zone at all ("naive").
Then come `provider_date` (date_source="provider"), the newest `Received:` date
("received"), and last, for a naive header date only, that date read as UTC
(date_source="header", defect "date_no_zone" kept). `-0000` is UTC (RFC 5322 §3.3).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_tz

from mailmanager.mail import addresses, classify, mime, replies, storable

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
    "text_facts",
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
    # What the reminder rules read in the body (see point 4 above); None when not read.
    text_facts: replies.TextFacts | None


@dataclass(frozen=True)
class Quarantined:
    """A byte string that has no usable header block; kept with its reason, never dropped."""

    reason: str
    size: int
    sha256: str


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
    # Ids are indexed: one too long for the index is kept as a prefix and a hash of it.
    return [storable.identifier(t) for t in tokens if t and len(t) <= 998]


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
            display_name = mime.decode_words(raw_name, defects)
        out.append(Address(email=key, name=" ".join(display_name.split()), display_email=display))
    return tuple(out)


# --- Snippets -------------------------------------------------------------------------------

SNIPPET_CHARS = 200
# Every repeat is bounded, so a match is never longer than _ATTRIBUTION_SPAN characters.
_ATTRIBUTION_RE = re.compile(
    r"^[ \t]{0,40}(?:On|Le|Am|El|Il|Op|Den|W dniu)\b[^\n]{0,240}?(?:\n[^\n]{0,240}?)?"
    r"(?:wrote|a écrit|schrieb|escribió|ha scritto|schreef|skrev|napisał)\s{0,40}:[ \t]{0,40}$"
    r"|^[ \t]{0,40}-{2,100}\s{0,40}(?:Original Message|Message d'origine|"
    r"Ursprüngliche Nachricht|Mensaje original|Messaggio originale|Forwarded message|"
    r"Message transféré)\s{0,40}-{2}"
    r"|^[ \t]{0,40}_{20,200}[ \t]{0,40}$",
    re.MULTILINE | re.IGNORECASE,
)
_ATTRIBUTION_SPAN = 700
_SNIPPET_WINDOW = 1700  # characters looked at first; the rest only when they are needed


def make_snippet(text: str) -> str:
    """The first ~200 characters of the new text: quoted lines and quoted history skipped."""
    if len(text) > _SNIPPET_WINDOW:
        # Long bodies: work on a prefix. A match that starts before `safe` lies wholly in
        # the window, so the window's first such match is the text's first; and when the
        # complete lines before it already give more than a snippet, the rest cannot
        # change it. Otherwise (a long quote on top, say) fall through to the whole text.
        safe = _SNIPPET_WINDOW - _ATTRIBUTION_SPAN
        window = text[:_SNIPPET_WINDOW]
        cut = _ATTRIBUTION_RE.search(window)
        end = cut.start() if cut is not None and cut.start() < safe else safe
        lines = window[:end].splitlines()
        if end == safe:
            lines = lines[:-1]  # maybe cut in the middle
        folded = _fold(lines)
        if len(folded) > SNIPPET_CHARS:
            return _clip(folded)
    cut = _ATTRIBUTION_RE.search(text)
    head = text[: cut.start()] if cut is not None else text
    folded = _fold(head.splitlines())
    if not folded:
        folded = " ".join(text.split())
    return _clip(folded)


def _fold(lines: list[str]) -> str:
    """The words of the lines that are not quoted (">"), joined by single spaces."""
    return " ".join(" ".join(line for line in lines if not line.lstrip().startswith(">")).split())


def _clip(folded: str) -> str:
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
        return storable.text(mime.read(raw, full_text=True).text)
    except Exception:
        logger.warning("body text failed", extra={"action": "parse_body_text_failed"})
        return ""


def text_facts(raw: bytes, out_of_office: bool, received: datetime | None) -> replies.TextFacts:
    """What the reminder rules read in the body of `raw` (see `ParsedMessage.text_facts`),
    read from the bytes again: for messages stored before ingest kept these facts. Never
    raises; an unreadable body reads as "".
    """
    try:
        doc = mime.read(raw, full_text=True)
    except Exception:
        logger.warning("body text failed", extra={"action": "parse_body_text_failed"})
        return replies.text_facts("", False, out_of_office, received)
    return replies.text_facts(doc.text, doc.calendar_reply, out_of_office, received)


def _text_facts(
    doc: mime.Doc, labels: classify.Labels, date: datetime | None
) -> replies.TextFacts | None:
    """See point 4 of the module docstring."""
    if labels.is_bulk or labels.is_bounce or (labels.is_auto_reply and not labels.is_out_of_office):
        return None
    try:
        body = mime.whole_text(doc)
    except Exception:
        logger.warning("body text failed", extra={"action": "parse_body_text_failed"})
        body = ""
    return replies.text_facts(body, doc.calendar_reply, labels.is_out_of_office, date)


def parse(
    raw: bytes,
    provider_date: datetime | None = None,
    max_size: int | None = None,
    truncated_size: int | None = None,
    problem: str | None = None,
) -> ParsedMessage | Quarantined:
    """Parse `raw`; see the module docstring. Never raises.

    Returns `Quarantined` (with a reason) for input that has no usable header block. A
    message over `max_size` bytes is read from its headers only, with a note for its body
    (`mime.oversize_stub`, defect "too_large"; `size` and `sha256` stay those of `raw`).
    `truncated_size` says `raw` is only the header block of a message of that many bytes
    (the connector fetched no more, `spi.RawMessage.truncated`): read the same way, with
    that `size`. `problem` is the connector's reason for not handing over a message
    (`spi.RawMessage.problem`): the item is quarantined with it, unread.
    """
    digest = hashlib.sha256(raw).hexdigest()
    if problem:
        return Quarantined(reason=storable.text(problem)[:500], size=len(raw), sha256=digest)
    too_large = truncated_size is not None or (max_size is not None and len(raw) > max_size)
    size = len(raw) if truncated_size is None else truncated_size
    try:
        if too_large:
            found = _parse(mime.oversize_stub(raw, size), digest, provider_date)
            if isinstance(found, ParsedMessage):
                found = replace(found, size=size, defects=(*found.defects, "too_large"))
        else:
            found = _parse(raw, digest, provider_date)
        # Everything the parser hands out is storable text (see `mailmanager.mail.storable`).
        return storable.value(found)
    except Exception as exc:  # a bug here must not stop a sync: keep the bytes, say why
        logger.exception(
            "parser failed", extra={"action": "parse_failed", "sha256": digest, "size": len(raw)}
        )
        return Quarantined(
            reason=f"parser_error: {type(exc).__name__}", size=len(raw), sha256=digest
        )


def _parse(raw: bytes, digest: str, provider_date: datetime | None) -> ParsedMessage | Quarantined:
    reason = mime.quarantine_reason(raw)
    doc = mime.read(raw, full_text=False) if reason is None else None
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
    subject = mime.decode_words(raw_subject[0], defects) if raw_subject else ""
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
        text_facts=_text_facts(doc, labels, date),
    )
