"""Outbound mail on the wire: header sanitising, MIME building, one SMTP connection.

Every header of an outbound reminder is built here from a *sanitised* `str`, never from a
header object of a parsed message. CPython 3.11.7 (this project's floor on Debian 12) is
affected by CVE-2024-6923 (python/cpython gh-121650): a header value holding an RFC 2047
encoded word such as `=?UTF-8?Q?=0A?=` is decoded when it is set and then folded with a
raw newline, so `Subject: Deal =?UTF-8?Q?=0A?=Bcc: x@example.com` is emitted as two header
lines, `Bcc:` included. `sanitize` therefore strips control characters, collapses
whitespace, caps the length and breaks every `=?` so no encoded word survives; and
`build_message` re-parses what it produced and refuses to return a message whose header
lines are not exactly the ones it wrote (`HeaderError`), whatever the Python version.

`Connection` speaks SMTP with TLS verified by default (`security = "tls"` is implicit TLS
on port 465, RFC 8314; `"starttls"` upgrades on 587, RFC 3207, and fails if the server
does not offer it; `"none"` is accepted by the config for loopback only), and logs in with
a password or an OAuth2 bearer token (XOAUTH2, as Gmail and Microsoft 365 expect).
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from types import TracebackType

from mailmanager.config import SmtpConfig
from mailmanager.errors import MailmanagerError

_SPACE = re.compile(r"\s+")
_WHITESPACE = str.maketrans({c: " " for c in "\t\n\v\f\r\u00a0\u202f\u2007"})
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


class SendError(MailmanagerError):
    """Raised when the SMTP server cannot be reached or does not accept a message.

    `permanent` is True for a 5xx answer to the envelope or the data (sending it again
    cannot help); `connection` is True when the connection is unusable (connect, TLS or
    login failed, or it dropped): the caller stops using it. `code` is the SMTP reply code.
    """

    def __init__(self, message: str, permanent: bool, connection: bool, code: int = 0) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.connection = connection
        self.code = code


class HeaderError(MailmanagerError):
    """Raised by `build_message` when its output would not carry exactly the headers it set."""


def _strip(value: str) -> str:
    # Fast paths: printable text (no Cc/Cf/Zl/Zp) needs nothing; the usual line breaks,
    # tabs and no-break spaces become spaces (whitespace is collapsed afterwards anyway).
    if value.isprintable():
        return value
    value = value.translate(_WHITESPACE)
    if value.isprintable():
        return value
    # Cc: C0/C1 controls (CR, LF, NUL...); Cf: invisible format characters (bidi overrides);
    # Zl/Zp: U+2028/U+2029, which str.splitlines() treats as line breaks.
    return "".join(
        " " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
        for c in value
        if unicodedata.category(c) != "Cf"
    )


def one_line(value: str, limit: int = 200) -> str:
    """`value` on one line: controls removed, whitespace collapsed, at most `limit` chars."""
    if value.isprintable() and "  " not in value:
        text = value.strip()  # the usual case: in printable text only " " is whitespace
    else:
        text = _SPACE.sub(" ", _strip(value)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sanitize(value: str, limit: int = 200) -> str:
    """A header-safe `str` from untrusted text (a synced subject, a display name).

    Encoded words left in the text are decoded first (so a mis-decoded subject still reads
    well), then controls are removed, whitespace collapsed, every `=?` broken into `= ?`
    (CVE-2024-6923, see the module docstring) and the result capped at `limit` characters.
    """
    text = value
    for _ in range(3 if "=?" in text else 0):  # an encoded word may decode to another one
        decoded = _ENCODED_WORD.sub(_decode_word, text)
        if decoded == text:
            break
        text = decoded
    text = one_line(text, 10 * limit).replace("=?", "= ?").replace("?=", "? =")
    return one_line(text, limit)


def _decode_word(match: re.Match[str]) -> str:
    try:
        return str(make_header(decode_header(match[0])))
    except (ValueError, LookupError, UnicodeError):
        return match[0]


@dataclass(frozen=True)
class Outgoing:
    """One email to send: sanitised at build time, whatever its fields hold."""

    message_id: str  # "<...@domain>", pre-assigned when the email was queued
    sender: str  # "Name <addr>" or "addr", from [smtp] from
    recipient: str
    recipient_name: str
    subject: str
    text: str
    html: str
    date: datetime


def address_of(sender: str) -> str:
    """The bare address of a `From` value ("Name <a@b>" → "a@b")."""
    return email.utils.parseaddr(sender)[1]


def _address(name: str, addr: str) -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=sanitize(name, 100), username=local, domain=domain)


def build_message(out: Outgoing) -> bytes:
    """The RFC 5322 bytes of `out`: multipart/alternative, text then HTML, UTF-8.

    Raises `HeaderError` if the result would hold a header line it did not set (an
    injection attempt the sanitiser missed): such a message is never sent.
    """
    msg = EmailMessage(policy=email.policy.SMTP)
    sender_name, sender_addr = email.utils.parseaddr(out.sender)
    msg["From"] = _address(sender_name, sender_addr)
    msg["To"] = _address(out.recipient_name, out.recipient)
    msg["Subject"] = sanitize(out.subject)
    msg["Date"] = email.utils.format_datetime(out.date)
    msg["Message-ID"] = "<" + re.sub(r"[^\w.@+-]", "", out.message_id.strip("<>")) + ">"
    # RFC 3834 §5: machine-generated, so auto-responders stay silent; Exchange/Outlook
    # honour X-Auto-Response-Suppress instead (MS-OXCMAIL §2.2.3.2.20).
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(out.text, cte="quoted-printable")
    if out.html:
        msg.add_alternative(out.html, subtype="html", cte="quoted-printable")
    data = msg.as_bytes()
    parsed = BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    if sorted(k.lower() for k in parsed) != sorted(k.lower() for k in msg):
        raise HeaderError(f"refusing to send {out.message_id}: unexpected header lines")
    return data


def _tls_context(cfg: SmtpConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cfg.ssl_ca_file:
        context.load_verify_locations(cafile=cfg.ssl_ca_file)
    return context


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
    return one_line(f"{exc.smtp_code} {text}", 300)


class Connection:
    """One SMTP session; `open()` connects, secures and logs in, `send()` delivers.

    Use as a context manager. Secrets are read from the config when `open()` runs.
    """

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect, start TLS and log in. Raises `SendError` (connection=True) on failure."""
        cfg = self.cfg
        password, token = cfg.secrets()
        try:
            smtp: smtplib.SMTP
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    cfg.host, cfg.effective_port, timeout=cfg.timeout, context=_tls_context(cfg)
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.effective_port, timeout=cfg.timeout)
            self._smtp = smtp
            smtp.ehlo()
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SendError(
                        f"{cfg.host} does not offer STARTTLS", permanent=False, connection=True
                    )
                smtp.starttls(context=_tls_context(cfg))
                smtp.ehlo()
            if token is not None and cfg.username:
                sasl = f"user={cfg.username}\x01auth=Bearer {token}\x01\x01"
                # On failure the server sends a 334 JSON challenge: answer empty, then the
                # 535 arrives (https://developers.google.com/gmail/imap/xoauth2-protocol).
                smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else sasl)
            elif password is not None and cfg.username:
                smtp.login(cfg.username, password)
        except SendError:
            self.close()
            raise
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise SendError(f"login refused: {_reply(exc)}", False, True, exc.smtp_code) from exc
        except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            self.close()
            what = f"{type(exc).__name__}: {exc}"
            raise SendError(
                f"cannot connect to {cfg.host}:{cfg.effective_port}: {what}", False, True
            ) from exc

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        """Deliver `data`; return the server's reply to DATA ("250 ...").

        Raises `SendError`: permanent for a 5xx reply, connection-level when it dropped.
        """
        if self._smtp is None:
            self.open()
        smtp = self._smtp
        assert smtp is not None
        try:
            code, resp = smtp.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, resp, sender)
            code, resp = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({recipient: (code, resp)})
            code, resp = smtp.data(data)  # raises SMTPDataError unless 354 then 250
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._reset()
            reply = one_line(f"{code} {text.decode('utf-8', 'replace')}", 300)
            raise SendError(f"recipient refused: {reply}", code >= 500, False, code) from exc
        except smtplib.SMTPResponseException as exc:
            lost = exc.smtp_code == 421  # RFC 5321 §3.8: the server is closing the channel
            if lost:
                self.close()
            else:
                self._reset()
            raise SendError(
                f"refused: {_reply(exc)}", exc.smtp_code >= 500, lost, exc.smtp_code
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise SendError(f"connection lost: {type(exc).__name__}: {exc}", False, True) from exc
        return one_line(f"{code} {resp.decode('utf-8', 'replace')}", 300)

    def _reset(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self._smtp is None:
            return
        smtp, self._smtp = self._smtp, None
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
