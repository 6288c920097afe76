"""Noise labels for one message: auto-reply, out-of-office, bulk/list, bounce.

Headers decide first, because they are cheap and unambiguous; subjects and bodies only
for what headers leave open. The order matters:

1. **Bounce.** A top-level `multipart/report; report-type=delivery-status` (RFC 6522,
   RFC 3464) whose `message/delivery-status` lists a failed or delayed recipient; or a
   non-standard bounce (sender MAILER-DAEMON/postmaster, `X-Failed-Recipients`, a bounce
   subject). MTAs put `Auto-Submitted: auto-replied` on bounces too: a bounce is a bounce,
   never an auto-reply. A DSN that reports only successful delivery is an auto-reply.
2. **Auto-reply.** `Auto-Submitted` other than `no` (RFC 3834 §5), `X-Autoreply`,
   `X-Autorespond`, `Precedence: auto_reply`, Exchange's own out-of-office
   (`X-Auto-Response-Suppress` together with `X-MS-Exchange-Inbox-Rules-Loop`), Apple's
   `X-Apple-Action: VACATION`, a null `Return-Path: <>` on a message that is no bounce
   (RFC 3834 §3.3 asks responders for it), out-of-office subjects (fr, en, de, and a few
   more), and MDN read receipts (`report-type=disposition-notification`, RFC 8098).
3. **Bulk/list** (independent of the two above): `List-Id` (RFC 2919), `List-Unsubscribe`
   (RFC 2369/8058), `List-Post`, `Precedence: bulk|list|junk`, `Feedback-ID` and ESP
   campaign headers, and ARF abuse reports (`report-type=feedback-report`, RFC 5965),
   which are not bounces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailmanager.mail.addresses import normalize_address

Headers = dict[str, list[str]]

_BOUNCE_SENDER_RE = re.compile(
    r"(?:mailer-?daemon|post_?master|mail-?daemon|mdaemon|mail\.delivery\.system)$", re.IGNORECASE
)
_BOUNCE_SUBJECT_RE = re.compile(
    r"\s*(?:\[[^\]]*\]\s*)?(?:"
    r"undeliver|undelivered mail|returned mail|mail delivery fail|delivery status notification"
    r"|delivery notification|delivery failure|delivery has failed|failure notice"
    r"|message delivery fail|mail system error|non[- ]?delivery|nondeliverable|non remis"
    r"|unzustellbar|unzustellbare|could not send message|warning: could not send"
    r"|delivery (?:report|problem|failed)|mail could not be delivered|returned to sender"
    r"|message not delivered|message could not be delivered|permanent delivery failure"
    r"|delayed mail|delivery delayed|mail delivery (?:problem|error|failure)"
    r"|notificaci[oó]n de estado de entrega|unable to deliver|error sending message"
    r"|mensagem n[aã]o entregue|retour de message|échec de (?:la )?remise"
    r"|delivery status\b|email delivery failure|there was an error sending your mail)",
    re.IGNORECASE,
)
_OOF_SUBJECT_RE = re.compile(
    r"\s*\[?\s*(?:"
    r"out of (?:the )?office(?: autoreply)?|automatic reply|auto[- ]?reply|autoreply|auto"
    r"|auto[- ]?response|automatic response|autorespons\w*|on vacation|vacation(?: reply)?"
    r"|absence|absent du bureau|absente? du bureau|message d'absence|r[ée]ponse automatique"
    r"|abwesenheitsnotiz|automatische antwort|abwesend|automatyczna odpowied[źz]"
    r"|automatisch antwoord|afwezig|respuesta autom[aá]tica|fuera de la oficina"
    r"|risposta automatica|fuori sede|fuori ufficio|resposta autom[aá]tica"
    r")\s*(?:[:：\]\)]|$)",
    re.IGNORECASE,
)
_OOF_SUFFIX_RE = re.compile(
    r"\((?:automatic response|auto[- ]?reply|autoreply|out of office)\)\s*$", re.IGNORECASE
)
# Words that make an already-automatic message an absence notice ("Away until May 5").
_OOF_WORD_RE = re.compile(
    r"\b(?:away|vacation|holiday|absent|absence|out of (?:the )?office|ooo|cong[ée]s"
    r"|urlaub|abwesen\w*|ferien|vacances|vacaciones|ferie)\b",
    re.IGNORECASE,
)
_BULK_HEADERS = (
    "list-id",
    "list-unsubscribe",
    "list-post",
    "feedback-id",
    "x-campaign",
    "x-campaignid",
    "x-campaign-id",
    "x-mailchimp-campaign",
    "x-mc-user",
    "x-sfmc-stack",
    "x-listmember",
)
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_DELAY_RE = re.compile(
    r"delay|deferred|will (?:be )?retr|warning|not yet been delivered|still trying|verzögert",
    re.IGNORECASE,
)
_ORIGINAL_START_RE = re.compile(
    r"^.*(?:copy of the (?:original )?message|original message (?:follows|headers)"
    r"|message headers? follow"
    r"|-{3,} ?original message|headers of the original|header of the original).*$",
    re.IGNORECASE | re.MULTILINE,
)
_TEXT_MESSAGE_ID_RE = re.compile(r"^\s*Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
MAX_BOUNCE_RECIPIENTS = 50
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient")
_SYSTEM_LOCAL_PARTS = ("bounce", "noreply", "no-reply", "mail-noreply", "postmaster", "mailer")


@dataclass(frozen=True)
class Evidence:
    """What `classify` looks at; `text` is the first text body (possibly a prefix)."""

    headers: Mapping[str, list[str]]
    subject: str
    sender_emails: tuple[str, ...]  # From and Sender keys
    recipient_emails: tuple[str, ...]  # To keys
    report_type: str | None  # of the first multipart/report, lower-cased
    delivery_status: tuple[bytes, ...]  # decoded message/delivery-status bodies
    original_message_id: str | None  # normalised Message-ID of the enclosed original
    text: str


@dataclass(frozen=True)
class Labels:
    is_auto_reply: bool
    is_out_of_office: bool
    is_bulk: bool
    is_bounce: bool
    list_id: str | None
    bounce_recipients: tuple[str, ...] = ()
    bounce_permanent: bool = True
    bounce_status: str = ""
    original_message_id: str | None = None  # raw "<...>" or normalised, for the caller


def _first(headers: Mapping[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0].strip() if values else ""


def normalize_list_id(value: str) -> str | None:
    """The list-label.namespace of a List-Id value (RFC 2919 §3), lower-cased."""
    start, end = value.rfind("<"), value.rfind(">")
    label = value[start + 1 : end] if 0 <= start < end else value
    label = "".join(label.split()).lower().strip(".")
    return label or None


def _delivery_blocks(blob: bytes) -> list[list[tuple[str, str]]]:
    """The field blocks of a message/delivery-status body (RFC 3464 §2.1), unfolded."""
    blocks: list[list[tuple[str, str]]] = [[]]
    for line in blob.decode("utf-8", "replace").splitlines():
        fields = blocks[-1]
        if not line.strip():
            if fields:
                blocks.append([])
        elif line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
    return [b for b in blocks if b]


def _records(blobs: tuple[bytes, ...]) -> list[dict[str, str]]:
    """One dict per recipient; a block naming several recipients is split at each."""
    records: list[dict[str, str]] = []
    for blob in blobs:
        for block in _delivery_blocks(blob):
            if sum(name == "final-recipient" for name, _ in block) <= 1:
                if any(name in _RECIPIENT_FIELDS for name, _ in block):
                    records.append({name: value for name, value in reversed(block)})
                continue
            current: dict[str, str] | None = None
            for name, value in block:
                if name in _RECIPIENT_FIELDS:
                    if current is None or name in current or "action" in current:
                        current = {}
                        records.append(current)
                    current[name] = value
                elif current is not None:
                    current.setdefault(name, value)
    return records


def _dsn_failures(blobs: tuple[bytes, ...]) -> tuple[list[str], bool, str, int, int]:
    """(failed recipients, permanent, first status, failures, successes) per RFC 3464."""
    records = _records(blobs)
    recipients: list[str] = []
    permanent, status, failures, successes = False, "", 0, 0
    for record in records:
        action = record.get("action", "").lower().split()[0] if record.get("action") else ""
        match = _STATUS_RE.search(record.get("status", ""))
        code = match.group(0) if match else ""
        if action in ("delivered", "relayed", "expanded") or code.startswith("2"):
            successes += 1
            continue
        if not action and not code:
            continue
        failures += 1
        hard = action == "failed" or code.startswith("5")
        if hard and not code.startswith("4"):
            permanent = True
        status = status or code
        for key in ("final-recipient", "original-recipient"):
            addr = record.get(key, "").rpartition(";")[2]
            email = normalize_address(addr) if addr else None
            if email is not None:
                if email not in recipients:
                    recipients.append(email)
                break
    return recipients, permanent, status, failures, successes


def _text_recipients(text: str, exclude: set[str]) -> list[str]:
    """Addresses a non-standard bounce names before it quotes the original message."""
    cut = _ORIGINAL_START_RE.search(text)
    region = text[: cut.start()] if cut is not None else text[:8000]
    found: list[str] = []
    domains = {email.partition("@")[2] for email in exclude}
    for candidate in _EMAIL_RE.findall(region[:20000]):
        email = normalize_address(candidate.strip("."))
        if email is None or email in exclude or email in found:
            continue
        local, _, domain = email.partition("@")
        if _BOUNCE_SENDER_RE.match(local) and (local.startswith("mail") or domain in domains):
            continue  # "write to postmaster@our-host": the bouncing system, not a recipient
        found.append(email)
        if len(found) >= MAX_BOUNCE_RECIPIENTS:
            break
    return found


def _is_candidate(ev: Evidence, null_sender: bool) -> bool:
    """Does `ev` look like a non-standard bounce (no RFC 3464 failure report)?"""
    h = ev.headers
    local_parts = {email.partition("@")[0] for email in ev.sender_emails}
    if (
        ev.report_type == "delivery-status"
        or "x-failed-recipients" in h
        or any(_BOUNCE_SENDER_RE.match(local) for local in local_parts)
        or _BOUNCE_SENDER_RE.match(_first(h, "from").strip("<> ")) is not None
    ):
        return True
    if _BOUNCE_SUBJECT_RE.match(ev.subject) is None:
        return False
    # A bounce subject: believe it from a null sender, no sender, or a system account
    # ("Mail Delivery System <noreply@...>"), not from a person writing about a bounce.
    return (
        null_sender
        or not ev.sender_emails
        or any(local.startswith(_SYSTEM_LOCAL_PARTS) for local in local_parts)
    )


def _bounce(ev: Evidence, null_sender: bool) -> Labels | None:
    """Labels for a bounce, or None when `ev` is not one."""
    recipients: list[str] = []
    permanent, status, failures, successes = True, "", 0, 0
    if ev.delivery_status:
        recipients, permanent, status, failures, successes = _dsn_failures(ev.delivery_status)
        if successes and not failures:
            return None  # a success report: the caller calls it an auto-reply
    if not failures:
        if not _is_candidate(ev, null_sender):
            return None
        match = _STATUS_RE.search(ev.text[:20000])
        status = match.group(0) if match and not match.group(0).startswith("2") else ""
        delayed = _DELAY_RE.search(ev.subject) is not None
        permanent = status.startswith("5") if status else not delayed
    if not recipients:
        for value in ev.headers.get("x-failed-recipients", []):
            for part in value.split(","):
                email = normalize_address(part)
                if email is not None and email not in recipients:
                    recipients.append(email)
    if not recipients:
        recipients = _text_recipients(ev.text, set(ev.sender_emails) | set(ev.recipient_emails))
    original = ev.original_message_id
    if original is None:
        found = _TEXT_MESSAGE_ID_RE.search(ev.text)
        original = found.group(1) if found else None
    return Labels(
        is_auto_reply=False,
        is_out_of_office=False,
        is_bulk=_is_bulk(ev),
        is_bounce=True,
        list_id=_list_id(ev),
        bounce_recipients=tuple(recipients[:MAX_BOUNCE_RECIPIENTS]),
        bounce_permanent=permanent,
        bounce_status=status,
        original_message_id=original,
    )


def _list_id(ev: Evidence) -> str | None:
    value = _first(ev.headers, "list-id")
    return normalize_list_id(value) if value else None


def _is_bulk(ev: Evidence) -> bool:
    h = ev.headers
    if ev.report_type == "feedback-report":
        return True
    if any(name in h for name in _BULK_HEADERS):
        return True
    return _first(h, "precedence").lower() in ("bulk", "list", "junk")


def _auto_reply(ev: Evidence, null_sender: bool) -> tuple[bool, bool]:
    """(is_auto_reply, is_out_of_office)."""
    h = ev.headers
    if ev.report_type == "disposition-notification":
        return True, False
    subject_oof = (
        _OOF_SUBJECT_RE.match(ev.subject) is not None
        or _OOF_SUFFIX_RE.search(ev.subject) is not None
    )
    auto_submitted = _first(h, "auto-submitted").lower()
    vacation = (
        subject_oof
        or "x-autoreply" in h
        or "x-autorespond" in h
        or "vacation" in auto_submitted
        or "vacation" in _first(h, "x-apple-action").lower()
        or (
            "x-ms-exchange-inbox-rules-loop" in h
            and re.search(r"\b(?:oof|autoreply|all)\b", _first(h, "x-auto-response-suppress"), re.I)
            is not None
        )
    )
    automatic = (
        vacation
        or (bool(auto_submitted) and not auto_submitted.startswith("no"))
        or _first(h, "precedence").lower() == "auto_reply"
        or null_sender
    )
    return automatic, vacation or (automatic and _OOF_WORD_RE.search(ev.subject) is not None)


def classify(ev: Evidence) -> Labels:
    """Label `ev`; see the module docstring for the rules and their order."""
    null_sender = _first(ev.headers, "return-path").replace(" ", "") == "<>"
    bounce = _bounce(ev, null_sender)
    if bounce is not None:
        return bounce
    auto, oof = _auto_reply(ev, null_sender)
    if ev.report_type == "delivery-status":
        auto = True  # a success DSN: machine-made, not a reply
    return Labels(
        is_auto_reply=auto,
        is_out_of_office=oof,
        is_bulk=_is_bulk(ev),
        is_bounce=False,
        list_id=_list_id(ev),
        original_message_id=ev.original_message_id if ev.report_type else None,
    )
