"""Builds small realistic RFC 5322 messages for tests."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make(
    sender: str,
    to: str | list[str],
    subject: str,
    body: str = "Bonjour,\nVoici notre proposition.\n",
    msgid: str | None = None,
    reply_to: str | list[str] | None = None,
    at: datetime | None = None,
    cc: str | list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A message; `reply_to` is the Message-ID(s) answered (In-Reply-To + References)."""
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = sender
    m["To"] = to if isinstance(to, str) else ", ".join(to)
    if cc:
        m["Cc"] = cc if isinstance(cc, str) else ", ".join(cc)
    m["Subject"] = subject
    m["Date"] = format_datetime(at or T0)
    if msgid is not None:
        m["Message-ID"] = f"<{msgid}>"
    if reply_to:
        refs = [reply_to] if isinstance(reply_to, str) else reply_to
        m["In-Reply-To"] = f"<{refs[-1]}>"
        m["References"] = " ".join(f"<{r}>" for r in refs)
    for name, value in (headers or {}).items():
        m[name] = value
    m.set_content(body)
    return m.as_bytes()


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)
