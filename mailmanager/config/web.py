"""`[web]`: the web workspace served by `mailmanager web` (issue #14).

`base_url` is the address people open (and the one reminder digests link to); the server
listens on `host`:`port`. Digests carry signed action links only when `base_url` is set.
`secret_file` holds the key that signs digest links (created with mode 600 on first use, see
`mailmanager.notify.actionlinks`); it is never logged. `visibility` says what a user sees
of a colleague's thread on a client record (`mailmanager.services.access`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mailmanager.config import schema
from mailmanager.config.schema import Context, Invalid, spec

VISIBILITY = ("full", "metadata", "none")
SIGN_IN_LINKS = ("auto", "email", "terminal")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _base_url(value: str, ctx: Context) -> str:
    if not value:
        return ""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{value!r} is not an http(s) URL", 'write e.g. "https://crm.example.com"')
    if parts.query or parts.fragment:
        raise Invalid(f"{value!r} has a query or fragment", "give the site's root URL only")
    return value.strip().rstrip("/")


def _absolute(value: str, ctx: Context) -> str:
    return schema.resolve_path(value, ctx.base_dir)


@dataclass(frozen=True)
class WebConfig:
    """`[web]`: where the workspace is served, who sees what, sessions and sign-in limits."""

    base_url: str = field(default="", metadata=spec(_base_url))
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=spec(schema.at_least(1)))
    visibility: str = field(default="metadata", metadata=spec(schema.one_of(*VISIBILITY)))
    session_idle_minutes: int = field(default=120, metadata=spec(schema.at_least(1)))
    session_max_hours: int = field(default=72, metadata=spec(schema.at_least(1)))
    secret_file: str = field(default="mailmanager-web.key", metadata=spec(_absolute))
    # "auto": sign-in links go by email, and are also printed by `mailmanager web` when it
    # listens on a loopback address only (the quick start, on one machine).
    sign_in_links: str = field(default="auto", metadata=spec(schema.one_of(*SIGN_IN_LINKS)))
    login_limit_per_address: int = field(default=5, metadata=spec(schema.at_least(1)))
    login_limit_per_ip: int = field(default=20, metadata=spec(schema.at_least(1)))
    login_limit_minutes: int = field(default=15, metadata=spec(schema.at_least(1)))
    # The dashboard's churn risk: clients with no exchange for this many days.
    churn_days: int = field(default=60, metadata=spec(schema.at_least(1)))
    # Requests with a larger body are refused (413) before it is read: a form is parsed
    # (CSRF check) before anyone is known, so this bounds what a stranger can make us spool.
    max_upload_mb: int = field(default=20, metadata=spec(schema.at_least(1)))
    # Server processes (uvicorn workers): one Python process uses one core at most. With
    # more than one, a "sync now" run's progress shows in the process that started it.
    workers: int = field(default=1, metadata=spec(schema.at_least(1)))
    # Requests each process works on at once (its thread pool; FastAPI's default is 40).
    # Fewer costs less CPU per request (threads take turns at Python's lock around each
    # database call: 2.5 times the CPU per request at 40 as at 1); more keeps a slow page
    # from holding up the others.
    threads: int = field(default=4, metadata=spec(schema.at_least(1)))

    @property
    def url(self) -> str:
        """The workspace's root URL: `base_url`, else http://host:port."""
        if self.base_url:
            return self.base_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.url.startswith("https://")

    @property
    def loopback_only(self) -> bool:
        return self.host in LOOPBACK

    @property
    def print_sign_in_links(self) -> bool:
        return self.sign_in_links == "terminal" or (
            self.sign_in_links == "auto" and self.loopback_only
        )

    @property
    def email_sign_in_links(self) -> bool:
        return self.sign_in_links != "terminal"
