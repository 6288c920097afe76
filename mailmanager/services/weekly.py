"""The weekly activity report: the dashboard's figures by email, once per ISO week (issue #14).

Opt-in per user (`[[users]] weekly_report = true`): a manager gets their team's figures with
a line per person, anyone else their own (`services.kpis`). The report covers the previous
full week (Monday to Sunday on the user's clock) and is due from Monday at the user's first
`digest_times` (else 08:00, local time); a job that did not run on Monday sends it later in
the week. It goes through the outbox under the idempotency key
`weekly:<email>:<year>-W<week>` (the week reported), whose unique index makes it exactly once
even when the job runs twice or on two workers at the same time.

It lives in `services` (not `notify`) because it reads `services.kpis`; it renders with the
notification templates (`notify/templates/weekly.<locale>.{txt,html}.j2`).
"""

from __future__ import annotations

import logging
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config as config_mod
from mailmanager.db import configrows, models, store
from mailmanager.notify import digest, outbox, smtp
from mailmanager.services import access, kpis

log = logging.getLogger(__name__)

DEFAULT_TIME = "08:00"


@dataclass
class WeeklyReport:
    """What one run did: the keys enqueued, and the users skipped (not due, already sent)."""

    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def due_key(user: config_mod.UserConfig, now: datetime) -> str | None:
    """The report's idempotency key when `user`'s report of last week is due at `now`, else
    None (not opted in, or before Monday's first digest time)."""
    if not user.weekly_report:
        return None
    tz = zoneinfo.ZoneInfo(user.timezone)
    local = now.astimezone(tz)
    monday = local.date() - timedelta(days=local.weekday())
    hhmm = user.digest_times[0] if user.digest_times else DEFAULT_TIME
    if local < datetime.combine(monday, time.fromisoformat(hhmm), tzinfo=tz):
        return None
    iso = (monday - timedelta(days=7)).isocalendar()
    return f"weekly:{user.email}:{iso.year}-W{iso.week:02d}"


def _hours(value: float | None, locale: str) -> str:
    if value is None:
        return "—"
    text = f"{value:.1f} h"
    return text.replace(".", ",") if locale == "fr" else text


def render(
    cfg: config_mod.Config, user: config_mod.UserConfig, data: kpis.Dashboard, week: str
) -> digest.Rendered:
    """The report email of `data` for `user`, in their language."""
    env = digest.environment()
    locale = digest.locale_of(user.locale)
    tz = zoneinfo.ZoneInfo(user.timezone)

    def line(f: kpis.Figures) -> dict[str, object]:
        return {
            "name": smtp.one_line(f.name or f.email, 100),
            "median": _hours(f.median_hours, locale),
            "unanswered": f.unanswered,
            "done": f.followups_done,
            "overdue": f.followups_overdue,
            "churn": f.churn,
            "inbound": sum(w.inbound for w in f.weeks),
            "outbound": sum(w.outbound for w in f.weeks),
            "segments": dict(f.segments),
        }

    last_day = (data.end.astimezone(tz) - timedelta(days=1)).date()
    fmt = "%d/%m/%Y" if locale == "fr" else "%d %b %Y"
    context = {
        "user_name": smtp.one_line(user.name, 100) or user.email,
        "week": week,
        "start": data.start.astimezone(tz).strftime(fmt),
        "end": last_day.strftime(fmt),
        "total": line(data.total),
        "people": [line(p) for p in data.people],
        "churn_days": data.churn_days,
        "quiet": [smtp.one_line(q.name, 100) for q in data.total.quiet[:5]],
        "org_name": smtp.one_line(cfg.organization.name, 100),
        "dashboard_url": f"{cfg.web.base_url}/dashboard" if cfg.web.base_url else "",
    }
    subject = smtp.sanitize(
        f"Activité de la semaine {week}" if locale == "fr" else f"Weekly activity, {week}"
    )
    context["subject"] = subject
    text = env.get_template(f"weekly.{locale}.txt.j2").render(context)
    html = env.get_template(f"weekly.{locale}.html.j2").render(context)
    return digest.Rendered(subject=subject, text=text, html=html)


def _taken(session: Session, key: str) -> bool:
    found = session.scalar(
        sa.select(models.OutboxEmail.id).where(models.OutboxEmail.idempotency_key == key)
    )
    return found is not None


def _send_one(
    cfg: config_mod.Config,
    factory: sessionmaker[Session],
    user: config_mod.UserConfig,
    key: str,
    now: datetime,
) -> bool:
    viewer = access.viewer_for(cfg, user.email)
    if viewer is None:
        return False
    with store.session_scope(factory) as s:  # the usual case, read-only: sent already
        if _taken(s, key):
            return False
    try:
        with store.session_scope(factory) as s:
            store.write_first(s)
            if _taken(s, key):
                return False
            data = kpis.dashboard(s, cfg, viewer, now, weeks=1, full_weeks=True)
            rendered = render(cfg, user, data, key.rsplit(":", 1)[1])
            outbox.enqueue(
                s,
                key=key,
                message_id_header=outbox.message_id(key, outbox.default_sender(cfg)),
                recipient=user.email,
                recipient_name=user.name,
                subject=rendered.subject,
                body_text=rendered.text,
                body_html=rendered.html,
                now=now,
            )
    except IntegrityError:  # another worker enqueued it first: theirs stands
        log.info("weekly report taken by another worker", extra={"action": "weekly_race"})
        return False
    return True


def send_weekly_reports(
    session_factory: sessionmaker[Session], cfg: config_mod.Config, now: datetime
) -> WeeklyReport:
    """Enqueue every weekly report due at `now` that is not in the outbox yet."""
    report = WeeklyReport()
    wanted = [u for u in cfg.users if u.weekly_report]
    if not wanted:
        return report
    with store.session_scope(session_factory) as s:
        known = set(s.scalars(sa.select(models.User.email)))
        if any(u.email not in known for u in cfg.users):
            store.write_first(s)
            configrows.ensure_config_rows(s, cfg)
    for user in wanted:
        key = due_key(user, now)
        if key is None or not _send_one(cfg, session_factory, user, key, now):
            report.skipped.append(user.email)
            continue
        report.sent.append(key)
        log.info("weekly report queued", extra={"action": "weekly_queued", "key": key})
    return report
