"""Rendering reminder digests: Jinja2 templates shipped in `mailmanager/templates/`.

Each locale has a plain-text and an HTML template (`digest.fr.txt.j2`, `digest.fr.html.j2`,
`digest.en.*`) and a macro file (`_fr.j2`, `_en.j2`) holding every sentence that depends on
the item: why it is there (by kind), how long it has waited ("depuis 4 jours ouvrés" /
"for 4 business days"), the subject line. HTML templates autoescape; the text ones do not.
Text from synced mail (subjects, names, snippets) is put on one line and capped here; the
subject header is sanitised again when the email is built (`smtp.build_message`).

Rendering is pure: it takes plain values and returns plain values.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from mailmanager.notify import actionlinks, smtp
from mailmanager.reminders import evaluation as reminders

LOCALES = ("fr", "en")
_DATE_FORMAT = {"fr": "%d/%m/%Y", "en": "%d %b %Y"}


@dataclass(frozen=True)
class Recipient:
    """Who a digest is for: the user's address, name, language and time zone."""

    email: str
    name: str
    locale: str
    timezone: str


@dataclass(frozen=True)
class Rendered:
    """A rendered digest: a sanitised one-line subject and both bodies."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class _View:
    """One item as the templates see it: every sentence already worded, plain text."""

    id: int
    kind: str
    subject: str
    why: str
    waited: str
    since: str
    escalated: str
    repeat: str
    contact_line: str
    company: str
    opportunity: str
    last_from: str
    snippet: str
    links: actionlinks.ItemLinks | None = None


def _autoescape(name: str | None) -> bool:
    return name is not None and ".html" in name


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment over the package's templates (built once)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("mailmanager.notify", "templates"),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def locale_of(value: str) -> str:
    """The supported locale for a user's `locale` setting ("en" when unknown)."""
    short = value.lower()[:2]
    return short if short in LOCALES else "en"


def _view(
    item: reminders.DigestItem,
    locale: str,
    tz: zoneinfo.ZoneInfo,
    t: Any,
    links: actionlinks.Linker | None,
) -> _View:
    name = smtp.one_line(item.contact_name, 100)
    address = smtp.one_line(item.contact_email, 200)
    company = smtp.one_line(item.company_name, 100)
    last_from = smtp.one_line(item.last_from, 100)
    contact = name or address or last_from or "?"
    person = f"{name} <{address}>" if name and address else (name or address)
    # The contact line names a person (with their company); a company alone has its own line.
    line = f"{person} — {company}" if person and company else person
    ref, title = smtp.one_line(item.opportunity_ref, 40), smtp.one_line(item.opportunity_title, 120)
    opportunity = f"{ref} — {title}" if ref and title else (ref or title)
    if item.thread_id is None and item.kind == "dormant_opportunity":
        opportunity = ""  # it is the item's heading already (`DigestItem.subject`)
    since = ""
    if item.waiting_since is not None:
        since = t.since(item.waiting_since.astimezone(tz).strftime(_DATE_FORMAT[locale]))
    escalated = smtp.one_line(item.escalated_from or "", 100)
    return _View(
        id=item.reminder_id,
        kind=item.kind,
        subject=smtp.sanitize(item.subject, 150) or t.no_subject(),
        why=t.why(item.kind, contact, smtp.one_line(item.reason, 200)),
        waited=t.waited(item.business_days_waiting),
        since=since,
        escalated=t.escalated(escalated) if escalated else "",
        repeat=t.repeat(item.repeat) if item.repeat else "",
        contact_line=line,
        company="" if person else company,
        opportunity=opportunity,
        last_from=last_from,
        snippet=smtp.one_line(item.last_snippet, 240),
        links=links.item(item.reminder_id, item.thread_id is not None) if links else None,
    )


def _render(
    items: Sequence[reminders.DigestItem],
    user: Recipient,
    org_name: str,
    immediate: bool,
    links: actionlinks.Linker | None,
) -> Rendered:
    env = environment()
    locale = locale_of(user.locale)
    # The macros run here, outside any autoescaping template, so they return plain `str`
    # that the HTML templates then escape (a macro called from an autoescaping template
    # returns Markup without escaping its arguments).
    t: Any = env.get_template(f"_{locale}.j2").module
    views = [_view(i, locale, _zone(user.timezone), t, links) for i in items]
    if immediate:
        first = items[0]
        contact = first.contact_name or first.contact_email or first.last_from
        raw_subject = t.immediate_subject(smtp.one_line(contact, 100), views[0].subject)
    else:
        raw_subject = t.subject(len(views))
    subject = smtp.sanitize(str(raw_subject))
    context = {
        "user_name": smtp.one_line(user.name, 100) or user.email,
        "count": len(views),
        "intro": str(t.intro(len(views))),
        "items": views,
        "org_name": smtp.one_line(org_name, 100),
        "subject": subject,
        "followups_url": links.followups_url if links else "",
    }
    text = env.get_template(f"digest.{locale}.txt.j2").render(context)
    html = env.get_template(f"digest.{locale}.html.j2").render(context)
    return Rendered(subject=subject, text=text, html=html)


def render(
    items: Sequence[reminders.DigestItem],
    user: Recipient,
    org_name: str = "",
    links: actionlinks.Linker | None = None,
) -> Rendered:
    """The digest of `items` for `user`, in the user's language (at least one item). With
    `links` (the web workspace is configured), each item carries its signed action links
    and the footer links to "My follow-ups"; without, the footer names the CLI commands."""
    if not items:
        raise ValueError("a digest needs at least one item")
    return _render(items, user, org_name, immediate=False, links=links)


def render_immediate(
    item: reminders.DigestItem,
    user: Recipient,
    org_name: str = "",
    links: actionlinks.Linker | None = None,
) -> Rendered:
    """A one-item email sent at once (e.g. `needs_response`), naming the thread in its subject."""
    return _render([item], user, org_name, immediate=True, links=links)
