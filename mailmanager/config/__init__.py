"""The configuration file: one TOML document validated into frozen dataclasses.

Each section is a frozen dataclass whose fields are the section's keys; `SECTIONS` maps the
section name to its class. Generic checks (unknown keys, types, required keys, per-field
validators kept in the field metadata) live in `mailmanager.config.schema`; this module adds
what crosses sections: unique users and mailbox names, owners and managers that exist, and
each mailbox's connector options, validated against the options its connector class declares.

Every problem is collected and raised at once in one `ConfigFileError`, each problem an
`spi.ConfigError` naming its dotted key (`mailboxes[0].owner`) and the fix. Secrets are never
in the file: a secret option `NAME` is given as `NAME_env` (an environment variable) or
`NAME_file` (a file of mode 600), and those references are resolved only when used
(`MailboxConfig.connector_config`, `DatabaseConfig.url_with_secret`), so a `Config` can be
shown or logged safely.

Adding a section is one frozen dataclass, one `SECTIONS` entry and one `Config` field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
import re
import tomllib
import types
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import idna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailmanager import registry, spi
from mailmanager.config import oidc, reminder_kinds, schema
from mailmanager.config.api import ApiConfig
from mailmanager.config.oidc import OidcProvider
from mailmanager.config.retention import RetentionConfig
from mailmanager.config.schema import Context, Invalid, Problems, spec
from mailmanager.config.web import WebConfig
from mailmanager.config.webhooks import WebhooksConfig
from mailmanager.config.workers import WorkersConfig

log = logging.getLogger(__name__)

ConfigFileError = schema.ConfigFileError
_T = TypeVar("_T")

_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}
_DRIVERS |= {v: v for v in _DRIVERS.values()}
_MAILBOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def _database_url(value: str, ctx: Context) -> str:
    # The URL is never echoed back: it might hold a password.
    try:
        url = make_url(value)
    except ArgumentError:
        raise Invalid("not a database URL", 'write e.g. "sqlite:///mailmanager.db"') from None
    if url.drivername not in _DRIVERS:
        raise Invalid(
            f"unsupported database {url.drivername!r}",
            'use "sqlite:///PATH" or "postgresql+psycopg://USER@HOST/DBNAME"',
        )
    if url.password is not None:
        raise Invalid(
            "the URL holds a password",
            'remove it from the URL, add password_env = "VAR" to [database] and export VAR',
        )
    url = url.set(drivername=_DRIVERS[url.drivername])
    db = url.database
    if url.drivername == "sqlite" and db and db != ":memory:" and not db.startswith("file:"):
        url = url.set(database=schema.resolve_path(db, ctx.base_dir))
    return url.render_as_string(hide_password=False)


def _domain(value: str, ctx: Context) -> str:
    try:
        return idna.encode(value.strip().rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError:
        raise Invalid(f"{value!r} is not a domain name", 'write e.g. "example.com"') from None


def _email(value: str, ctx: Context) -> str:
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or any(c.isspace() or c in '<>,;"' for c in local):
        raise Invalid(f"{value!r} is not an email address", 'write e.g. "alice@example.com"')
    return f"{local.lower()}@{_domain(domain, ctx)}"


def _timezone(value: str, ctx: Context) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, zoneinfo.available_timezones(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise Invalid(
            f"unknown time zone {value!r}", f"{hint}use an IANA name such as 'Europe/Paris'"
        ) from None
    return value


def _mailbox_name(value: str, ctx: Context) -> str:
    if not _MAILBOX_NAME.match(value):
        raise Invalid(f"{value!r} is not a valid name", "use letters, digits, '.', '_', '-'")
    return value


STORE_LEVELS = ("full", "headers", "metadata")


def _store_level(value: str, ctx: Context) -> str:
    if value not in STORE_LEVELS:
        fix = schema.did_you_mean(value, STORE_LEVELS, "levels")
        raise Invalid(f"unknown storage level {value!r}", fix)
    return value


def _store_map(value: Mapping[str, str], ctx: Context) -> Mapping[str, str]:
    for folder, level in value.items():
        try:
            _store_level(level, ctx)
        except Invalid as exc:
            raise Invalid(f"folder {folder!r}: {exc.problem}", exc.fix) from None
    return types.MappingProxyType(dict(value))


def _absolute(value: str, ctx: Context) -> str:
    return schema.resolve_path(value, ctx.base_dir)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _hhmm(value: str, ctx: Context) -> str:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
    if not m:
        raise Invalid(f"{value!r} is not a time of day", 'write "HH:MM", e.g. "08:30"')
    return f"{int(m[1]):02d}:{m[2]}"


def _hhmm_list(values: tuple[str, ...], ctx: Context) -> tuple[str, ...]:
    return tuple(sorted({_hhmm(v, ctx) for v in values}))


def _quiet_hours(value: str, ctx: Context) -> str:
    if not value.strip():
        return ""
    start, dash, end = value.partition("-")
    if not dash:
        raise Invalid(f"{value!r} is not a time range", 'write "HH:MM-HH:MM", e.g. "20:00-08:00"')
    return f"{_hhmm(start, ctx)}-{_hhmm(end, ctx)}"


def _sender(value: str, ctx: Context) -> str:
    if not value:
        return ""
    import email.utils

    name, addr = email.utils.parseaddr(value)
    if any(c in value for c in "\r\n\x00") or not addr:
        raise Invalid(f"{value!r} is not an address", 'write "mailmanager@example.com"')
    addr = _email(addr, ctx)
    return email.utils.formataddr((name, addr)) if name else addr


def _pattern(value: str, ctx: Context) -> str:
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise Invalid(
            f"not a regular expression: {exc}", r'write e.g. "\\b(OPP-\\d+)\\b"'
        ) from None
    if compiled.groups > 1:
        raise Invalid(
            f"{compiled.groups} capture groups", "use one group around the reference, or none"
        )
    return value


def _block_entry(value: str, ctx: Context) -> str:
    # "@acme.com" blocks the domain and its subdomains; "jane@acme.com" one address.
    text = value.strip().lower()
    if text.startswith("@"):
        return "@" + _domain(text[1:], ctx)
    if "@" in text:
        return _email(text, ctx)
    raise Invalid(
        f"{value!r} is neither an address nor @domain", 'write "jane@acme.com" or "@acme.com"'
    )


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(values: tuple[str, ...], ctx: Context) -> tuple[str, ...]:
    days = {schema.one_of(*WEEKDAYS, fold=lambda v: v.strip().lower()[:3])(v, ctx) for v in values}
    if not days:
        raise Invalid("no working day given", 'list at least one, e.g. ["mon", "tue"]')
    return tuple(d for d in WEEKDAYS if d in days)


def _positive(value: float, ctx: Context) -> float:
    if value <= 1:
        raise Invalid(f"{value} is too small", "use a number greater than 1, e.g. 3")
    return value


@dataclass(frozen=True)
class DatabaseConfig:
    """`[database]`: where mailmanager stores its data. `url` never holds a password."""

    url: str = field(default="sqlite:///mailmanager.db", metadata=spec(_database_url))
    password_env: str | None = field(default=None, metadata=spec(schema.env_name))
    password_file: str | None = field(default=None, metadata=spec(_absolute))

    def url_with_secret(self) -> str:
        """The URL to connect with, the password read now from `password_env`/`password_file`.

        Raises `ConfigFileError` when the variable is unset or the file unreadable or not private.
        """
        p = Problems()
        secret = schema.resolve_secret(
            "database.password", self.password_env, self.password_file, "/", p
        )
        p.raise_if_any()
        if secret is None:
            return self.url
        return make_url(self.url).set(password=secret).render_as_string(hide_password=False)


@dataclass(frozen=True)
class OrganizationConfig:
    """`[organization]`: mail between these domains only is internal."""

    name: str = ""
    domains: tuple[str, ...] = field(default=(), metadata=spec(schema.each(_domain)))


@dataclass(frozen=True)
class UserConfig:
    """One `[[users]]` table: a salesperson or admin, who gets reminders."""

    email: str = field(metadata=spec(_email, '"alice@example.com"'))
    name: str = field(metadata=spec(example='"Alice Martin"'))
    locale: str = field(default="en", metadata=spec(schema.one_of("fr", "en", fold=str.lower)))
    timezone: str = field(default="Europe/Paris", metadata=spec(_timezone))
    holiday_country: str = field(default="FR", metadata=spec(lambda v, c: v.upper()))
    holiday_subdivision: str | None = None
    aliases: tuple[str, ...] = field(default=(), metadata=spec(schema.each(_email)))
    manager: str | None = field(default=None, metadata=spec(_email))
    # What the web workspace lets this user do (issue #14): "salesperson" sees the content of
    # their own mailboxes' mail; "manager" also that of the users whose `manager` they are;
    # "admin" also manages settings and connector health (content only as above).
    role: str = field(
        default="salesperson",
        metadata=spec(schema.one_of("salesperson", "manager", "admin", fold=str.lower)),
    )
    blocklist: tuple[str, ...] = field(default=(), metadata=spec(schema.each(_block_entry)))
    digest_times: tuple[str, ...] | None = field(default=None, metadata=spec(_hhmm_list))
    # The weekly activity report (issue #14): opt-in, Mondays at the first digest time.
    weekly_report: bool = False
    # Reminders (issue #5): each key, when given, overrides the [reminders] key of that name.
    work_days: tuple[str, ...] | None = field(default=None, metadata=spec(_weekdays))
    work_start: str | None = field(default=None, metadata=spec(_hhmm))
    work_end: str | None = field(default=None, metadata=spec(_hhmm))
    awaiting_reply_days: int | None = field(default=None, metadata=spec(schema.at_least(1)))
    needs_response_hours: int | None = field(default=None, metadata=spec(schema.at_least(1)))
    dormant_opportunity_days: int | None = field(default=None, metadata=spec(schema.at_least(1)))
    max_repeats: int | None = field(default=None, metadata=spec(schema.at_least(0)))
    key: str = field(default="", compare=False, repr=False, metadata=spec(internal=True))


@dataclass(frozen=True)
class MailboxConfig:
    """One `[[mailboxes]]` table. `options` holds the connector's keys as written."""

    name: str = field(metadata=spec(_mailbox_name, '"alice-inbox"'))
    connector: str = field(metadata=spec(example='"imap"'))
    owner: str = field(metadata=spec(_email, '"alice@example.com"'))
    aliases: tuple[str, ...] = field(default=(), metadata=spec(schema.each(_email)))
    enabled: bool = True
    # Privacy (issue #16, `sync.privacy`): what is stored, per mailbox and per folder (name,
    # path, role or glob → level), and the folders never fetched.
    storage: str = field(default="full", metadata=spec(_store_level))
    storage_folders: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False, metadata=spec(_store_map)
    )
    exclude_folders: tuple[str, ...] = ()
    options: Mapping[str, object] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False, metadata=spec(internal=True)
    )
    key: str = field(default="", compare=False, repr=False, metadata=spec(internal=True))

    def connector_config(self, base_dir: str) -> spi.ConnectorConfig:
        """Build the connector's config, reading `NAME_env`/`NAME_file` secrets now.

        Relative "path" options are made absolute against `base_dir`. Raises `ConfigFileError`
        naming e.g. `mailboxes[0].password_env` when a variable is unset, a secret file is
        unreadable or readable by group/others, or the connector cannot be loaded.
        """
        key = self.key or f"mailboxes.{self.name}"
        try:
            declared = registry.load(self.connector, key=f"{key}.connector").options
        except spi.ConfigError as exc:
            raise ConfigFileError([exc]) from exc
        values = schema.resolve_options(self.options, declared, key, base_dir)
        return spi.ConnectorConfig(mailbox=self.name, values=values, base_dir=base_dir)

    def build_connector(
        self,
        base_dir: str,
        token_store: spi.TokenStore | None = None,
        max_message_size: int | None = None,
    ) -> spi.Connector:
        """The mailbox's connector, built as a sync builds it, without touching the network.

        Every check a sync makes before it connects happens here, in this one place, for
        `sync`, `run`, `mailbox test` and `config check` alike: the secrets are read
        (`connector_config`), every "path" option must exist, and the connector's
        constructor checks its own options (e.g. IMAP refuses `security = "none"` on a
        remote host). Raises `ConfigFileError` naming each key and its fix.
        """
        key = self.key or f"mailboxes.{self.name}"
        try:
            cls = registry.load(self.connector, key=f"{key}.connector")
        except spi.ConfigError as exc:
            raise ConfigFileError([exc]) from exc
        cc = dataclasses.replace(
            self.connector_config(base_dir),
            token_store=token_store,
            max_message_size=max_message_size,
        )
        p = Problems()
        for opt in cls.options:
            value = cc.values.get(opt.name)
            if opt.kind == "path" and isinstance(value, str) and not os.path.exists(value):
                p.add(
                    f"{key}.{opt.name}",
                    f"{value} does not exist",
                    f"create it, or set {opt.name} to an existing path",
                )
        p.raise_if_any()
        try:
            return cls(cc)
        except spi.ConfigError as exc:
            raise ConfigFileError([exc]) from exc


@dataclass(frozen=True)
class SyncConfig:
    """`[sync]`: how mailboxes are read."""

    batch_size: int = field(default=400, metadata=spec(schema.at_least(1)))
    interval: int = field(default=300, metadata=spec(schema.at_least(10)))
    parse_workers: int = field(default=1, metadata=spec(schema.at_least(0)))
    max_message_size: int = field(default=52428800, metadata=spec(schema.at_least(1024)))


@dataclass(frozen=True)
class ThreadingConfig:
    """`[threading]`: grouping messages into conversations."""

    subject_fallback: bool = True
    subject_window_days: int = field(default=14, metadata=spec(schema.at_least(1)))


@dataclass(frozen=True)
class LoggingConfig:
    """`[logging]`: what the daemon logs and how."""

    level: str = field(
        default="INFO",
        metadata=spec(schema.one_of("DEBUG", "INFO", "WARNING", "ERROR", fold=str.upper)),
    )
    format: str = field(default="text", metadata=spec(schema.one_of("text", "json")))


@dataclass(frozen=True)
class SmtpConfig:
    """`[smtp]`: the server reminder emails are sent through (TOML key `from` is `from_`)."""

    host: str = "localhost"
    port: int | None = None  # default: 465 with tls, 587 with starttls, 25 with none
    security: str = field(
        default="starttls", metadata=spec(schema.one_of("starttls", "tls", "none"))
    )
    username: str | None = None
    password_env: str | None = field(default=None, metadata=spec(schema.env_name))
    password_file: str | None = field(default=None, metadata=spec(_absolute))
    oauth2_token_env: str | None = field(default=None, metadata=spec(schema.env_name))
    oauth2_token_file: str | None = field(default=None, metadata=spec(_absolute))
    from_: str = field(default="", metadata=spec(_sender))
    timeout: int = field(default=30, metadata=spec(schema.at_least(1)))
    ssl_ca_file: str | None = field(default=None, metadata=spec(_absolute))

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587}.get(self.security, 25)

    def secrets(self) -> tuple[str | None, str | None]:
        """(password, oauth2 token), read now from their `_env`/`_file` references.

        Raises `ConfigFileError` when a variable is unset or a file unreadable or not private.
        """
        p = Problems()
        password = schema.resolve_secret(
            "smtp.password", self.password_env, self.password_file, "/", p
        )
        token = schema.resolve_secret(
            "smtp.oauth2_token", self.oauth2_token_env, self.oauth2_token_file, "/", p
        )
        p.raise_if_any()
        return password, token


def _smtp(table: object, cls: type, key: str, ctx: Context, p: Problems) -> Any:
    # `from` is a Python keyword: the field is `from_`, problems name the TOML key.
    if isinstance(table, dict):
        table = {("from_" if k == "from" else k): v for k, v in table.items()}
    before = len(p)
    smtp: SmtpConfig | None = schema.plain(table, cls, key, ctx, p)
    for i in range(before, len(p)):
        e = p[i]
        p[i] = spi.ConfigError(e.key.replace(".from_", ".from"), e.problem, e.fix)
    if smtp is None:
        return None
    if smtp.security == "none" and smtp.host not in _LOOPBACK:
        p.add(
            f"{key}.security",
            f'"none" sends in clear text to {smtp.host!r}',
            'use "starttls" or "tls"; "none" is only allowed for 127.0.0.1',
        )
    pairs = [("password_env", "password_file"), ("oauth2_token_env", "oauth2_token_file")]
    for a, b in pairs:
        if getattr(smtp, a) and getattr(smtp, b):
            p.add(f"{key}.{a}", f"{a} and {b} both given", "keep one")
    has_password = bool(smtp.password_env or smtp.password_file)
    has_token = bool(smtp.oauth2_token_env or smtp.oauth2_token_file)
    if has_password and has_token:
        p.add(f"{key}.oauth2_token_env", "both a password and an OAuth2 token", "keep one")
    if (has_password or has_token) and not smtp.username:
        p.add(f"{key}.username", "a secret is given without a username", "add username = ...")
    return smtp if len(p) == before else None


@dataclass(frozen=True)
class NotificationsConfig:
    """`[notifications]`: when reminder digests go out, and how the outbox retries."""

    enabled: bool = True
    digest_times: tuple[str, ...] = field(default=("08:30", "14:00"), metadata=spec(_hhmm_list))
    immediate: tuple[str, ...] = field(
        default=(), metadata=spec(schema.each(schema.one_of(*reminder_kinds.ALL)))
    )
    quiet_hours: str = field(default="", metadata=spec(_quiet_hours))
    catch_up_minutes: int = field(default=180, metadata=spec(schema.at_least(1)))
    interval: int = field(default=60, metadata=spec(schema.at_least(10)))
    evaluate_interval: int = field(default=300, metadata=spec(schema.at_least(10)))
    flush_interval: int = field(default=30, metadata=spec(schema.at_least(5)))
    max_attempts: int = field(default=8, metadata=spec(schema.at_least(1)))
    retry_base: int = field(default=60, metadata=spec(schema.at_least(1)))
    retry_max: int = field(default=3600, metadata=spec(schema.at_least(1)))
    reconcile_wait: int = field(default=3600, metadata=spec(schema.at_least(0)))


@dataclass(frozen=True)
class MatcherConfig:
    """`[matcher]`: how messages are linked to contacts, companies and opportunities."""

    opportunity_pattern: str = field(default=r"\b(OPP-\d+)\b", metadata=spec(_pattern))
    auto_create: str = field(
        default="none", metadata=spec(schema.one_of("none", "sent", "sent_and_received"))
    )
    multiple_opportunities: str = field(
        default="only_if_one",
        metadata=spec(
            schema.one_of("only_if_one", "thread_sticky", "most_recent", "all", "review")
        ),
    )
    retro_window_days: int = field(default=365, metadata=spec(schema.at_least(0)))
    blocklist: tuple[str, ...] = field(default=(), metadata=spec(schema.each(_block_entry)))
    strip_plus_addressing: bool = True
    suggestions: bool = True


@dataclass(frozen=True)
class RemindersConfig:
    """`[reminders]`: follow-up reminder rules and the business calendar (issue #5).

    The calendar keys and the rule delays can be overridden per user in `[[users]]`.
    """

    enabled: bool = True
    rules: tuple[str, ...] = field(
        default=reminder_kinds.SWITCHABLE,
        metadata=spec(schema.each(schema.one_of(*reminder_kinds.SWITCHABLE))),
    )
    awaiting_reply_days: int = field(default=3, metadata=spec(schema.at_least(1)))
    needs_response_hours: int = field(default=4, metadata=spec(schema.at_least(1)))
    dormant_opportunity_days: int = field(default=30, metadata=spec(schema.at_least(1)))
    at_risk_factor: float = field(default=3.0, metadata=spec(_positive))
    at_risk_min_exchanges: int = field(default=4, metadata=spec(schema.at_least(3)))
    at_risk_min_days: int = field(default=30, metadata=spec(schema.at_least(1)))
    require: str = field(
        default="none", metadata=spec(schema.one_of("none", "contact", "open_opportunity"))
    )
    reply_from_company: bool = True
    expect_reply: bool = True
    max_repeats: int = field(default=2, metadata=spec(schema.at_least(0)))
    repeat_days: int = field(default=3, metadata=spec(schema.at_least(1)))
    escalate_after: int = field(default=2, metadata=spec(schema.at_least(0)))
    out_of_office_days: int = field(default=5, metadata=spec(schema.at_least(1)))
    max_age_days: int = field(default=30, metadata=spec(schema.at_least(1)))
    work_days: tuple[str, ...] = field(
        default=("mon", "tue", "wed", "thu", "fri"), metadata=spec(_weekdays)
    )
    work_start: str = field(default="09:00", metadata=spec(_hhmm))
    work_end: str = field(default="18:00", metadata=spec(_hhmm))


def _check_work_hours(values: dict[str, Any], p: Problems) -> None:
    org: RemindersConfig | None = values.get("reminders")
    if org is None:
        return
    if org.work_start >= org.work_end:
        p.add("reminders.work_end", "the working day ends before it starts", "use e.g. 18:00")
    for u in values["users"]:
        start, end = u.work_start or org.work_start, u.work_end or org.work_end
        if start >= end:
            p.add(
                u.key + ".work_end",
                f"the working day ends ({end}) before it starts ({start})",
                "give work_end later than work_start",
            )


@dataclass(frozen=True)
class Config:
    """The whole configuration. `base_dir` is the directory relative paths resolve against."""

    path: str | None
    base_dir: str
    database: DatabaseConfig
    organization: OrganizationConfig
    users: tuple[UserConfig, ...]
    mailboxes: tuple[MailboxConfig, ...]
    sync: SyncConfig
    threading: ThreadingConfig
    logging: LoggingConfig
    reminders: RemindersConfig
    matcher: MatcherConfig
    smtp: SmtpConfig
    notifications: NotificationsConfig
    web: WebConfig = field(default_factory=WebConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    oidc: tuple[OidcProvider, ...] = ()

    @functools.cached_property
    def _derived(self) -> dict[Callable[[Config], object], object]:
        return {}

    def derived(self, build: Callable[[Config], _T]) -> _T:
        """`build(self)`, made once per configuration object and kept as long as it is.

        For the values later stages make from the whole configuration: the organization's
        `identity.of`, the matcher's policy. `build` must depend on the configuration alone.
        """
        cache = self._derived
        if build not in cache:
            cache[build] = build(self)
        return cast(_T, cache[build])

    def user(self, email: str) -> UserConfig | None:
        """The user whose email or one of whose aliases is `email` (case-insensitive)."""
        try:
            wanted = _email(email, Context(self.base_dir))
        except Invalid:
            return None
        return next((u for u in self.users if wanted in (u.email, *u.aliases)), None)

    def mailbox(self, name: str) -> MailboxConfig:
        """The mailbox called `name`. Raises `spi.ConfigError` (with did-you-mean) if none."""
        for mb in self.mailboxes:
            if mb.name == name:
                return mb
        fix = schema.did_you_mean(name, [mb.name for mb in self.mailboxes], "mailboxes")
        raise spi.ConfigError("mailboxes", f"no mailbox named {name!r}", fix)

    def check_secrets(self) -> None:
        """Resolve every secret reference now. Raises `ConfigFileError` listing every failure."""
        problems: list[spi.ConfigError] = []
        resolvers: list[Callable[[], object]] = [self.database.url_with_secret, self.smtp.secrets]
        resolvers += [provider.client_secret for provider in self.oidc]
        resolvers += [
            functools.partial(mb.connector_config, self.base_dir) for mb in self.mailboxes
        ]
        for resolve in resolvers:
            try:
                resolve()
            except ConfigFileError as exc:
                problems.extend(exc.errors)
        if problems:
            raise ConfigFileError(problems)

    def check_run(self) -> None:
        """Every check `run` makes before it connects anywhere: the database and SMTP
        secrets, and each enabled mailbox's connector built as its sync builds it
        (`MailboxConfig.build_connector`: secrets, paths, the connector's own rules).

        Raises `ConfigFileError` listing every failure.
        """
        problems: list[spi.ConfigError] = []
        oidc_secrets = [provider.client_secret for provider in self.oidc]
        for resolve in (self.database.url_with_secret, self.smtp.secrets, *oidc_secrets):
            try:
                resolve()
            except ConfigFileError as exc:
                problems.extend(exc.errors)
        for mb in self.mailboxes:
            if not mb.enabled:
                continue
            try:
                mb.build_connector(self.base_dir).close()
            except ConfigFileError as exc:
                problems.extend(exc.errors)
        if problems:
            raise ConfigFileError(problems)


def _mailbox(table: object, cls: type, key: str, ctx: Context, p: Problems) -> Any:
    if not isinstance(table, dict):
        return schema.plain(table, cls, key, ctx, p)
    common = [f.name for f in schema.toml_fields(MailboxConfig)]
    before = len(p)
    values = schema.read_table(table, MailboxConfig, key, ctx, p)
    if "connector" not in values:
        return None
    try:
        declared = registry.load(str(values["connector"]), key=f"{key}.connector").options
    except spi.ConfigError as exc:
        p.append(exc)
        return None
    options = schema.read_options(table, declared, key, ctx, p)
    secrets = {o.name for o in declared if o.secret}
    table = {k: v for k, v in table.items() if k not in secrets}  # reported by read_options
    schema.check_keys(table, common + schema.option_keys(declared), key, p)
    if len(p) > before:
        return None
    return MailboxConfig(**values, options=types.MappingProxyType(options), key=key)  # type: ignore[arg-type]


SECTIONS: dict[str, schema.Section] = {
    "database": schema.Section(DatabaseConfig),
    "organization": schema.Section(OrganizationConfig),
    "users": schema.Section(UserConfig, array=True, required=True),
    "mailboxes": schema.Section(MailboxConfig, array=True, reader=_mailbox),
    "sync": schema.Section(SyncConfig),
    "threading": schema.Section(ThreadingConfig),
    "logging": schema.Section(LoggingConfig),
    "reminders": schema.Section(RemindersConfig),
    "matcher": schema.Section(MatcherConfig),
    "smtp": schema.Section(SmtpConfig, reader=_smtp),
    "notifications": schema.Section(NotificationsConfig),
    "web": schema.Section(WebConfig),
    "retention": schema.Section(RetentionConfig),
    "workers": schema.Section(WorkersConfig),
    "api": schema.Section(ApiConfig),
    "webhooks": schema.Section(WebhooksConfig),
    "oidc": schema.Section(OidcProvider, array=True, reader=oidc.read),
}


def _check_links(values: dict[str, Any], complete: bool, p: Problems) -> None:
    users: tuple[UserConfig, ...] = values["users"]
    mailboxes: tuple[MailboxConfig, ...] = values["mailboxes"]
    addresses = [(u.key + ".email", u.email) for u in users]
    addresses += [(u.key + ".aliases", a) for u in users for a in u.aliases]
    schema.duplicates(addresses, "address", p)
    schema.duplicates([(mb.key + ".name", mb.name) for mb in mailboxes], "mailbox name", p)
    _check_holidays(users, p)
    _check_work_hours(values, p)
    db: DatabaseConfig | None = values["database"]
    if db and db.password_env and db.password_file:
        p.add("database.password_env", "password_env and password_file both given", "keep one")
    if db and db.url.startswith("sqlite") and (db.password_env or db.password_file):
        p.add("database.password_env", "SQLite takes no password", "remove password_env/_file")
    if not complete:
        return  # a user that failed to parse would make every reference to it look wrong
    emails = [u.email for u in users]
    refs = [(u.key + ".manager", u.manager, u.email) for u in users]
    refs += [(mb.key + ".owner", mb.owner, "") for mb in mailboxes]
    for key, email, own in refs:
        if email is not None and (email not in emails or email == own):
            fix = schema.did_you_mean(email, [e for e in emails if e != own], "users")
            if email == own:
                p.add(key, f"{email!r} is this user's own address", "name another user")
            elif key.endswith(".owner"):
                p.add(
                    key,
                    f"{email!r} is not a user: a mailbox's owner must be one of the [[users]]",
                    f"{fix}; or add a [[users]] table with email = {email!r}",
                )
            else:
                p.add(
                    key,
                    f"{email!r} is not a user: a manager must be one of the [[users]]",
                    f"{fix}; or add a [[users]] table with email = {email!r}",
                )


def _check_holidays(users: tuple[UserConfig, ...], p: Problems) -> None:
    try:
        import holidays
    except ImportError:  # reminders will say so; the calendar is not needed to load config
        return
    from holidays.registry import EntityLoader

    # As holidays.list_supported_countries() checks, without importing every country's
    # module (a quarter of a second at each start) unless a subdivision must be checked.
    countries = set(EntityLoader.get_country_codes(True))
    for u in users:
        if u.holiday_country not in countries:
            p.add(
                u.key + ".holiday_country",
                f"unknown country {u.holiday_country!r}",
                "use an ISO 3166-1 alpha-2 code such as 'FR', 'BE', 'DE'",
            )
            continue
        if not u.holiday_subdivision:
            continue
        subdivisions = list(getattr(holidays, u.holiday_country).subdivisions)
        if u.holiday_subdivision not in subdivisions:
            p.add(
                u.key + ".holiday_subdivision",
                f"unknown subdivision {u.holiday_subdivision!r} of {u.holiday_country}",
                f"use one of: {', '.join(subdivisions)}",
            )


def loads(text: str, base_dir: str = ".", path: str | None = None) -> Config:
    """Validate the TOML document `text`; relative paths resolve against `base_dir`.

    Raises `ConfigFileError` listing every problem, a TOML syntax error included.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = f"line {where[1]}, column {where[2]}" if where else "end of file"
        fix = f"fix the TOML syntax on line {where[1]}" if where else "fix the TOML syntax"
        problem = f"TOML syntax error at {line}: {str(exc).split(' (at')[0]}"
        raise schema.fail(path or "<config>", problem, f"{fix}; see https://toml.io") from exc
    ctx = Context(os.path.abspath(base_dir))
    p = Problems()
    schema.check_keys(data, SECTIONS, "", p)
    values = {
        name: schema.read_section(name, s, data.get(name), ctx, p) for name, s in SECTIONS.items()
    }
    complete = not p
    _check_links(values, complete, p)
    p.raise_if_any()
    config = Config(path=path, base_dir=ctx.base_dir, **values)
    log.debug(
        "config loaded",
        extra={"action": "config_loaded", "path": path, "mailboxes": len(config.mailboxes)},
    )
    return config


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate the file at `path`.

    Raises `ConfigFileError` when it is missing, unreadable, not TOML or invalid.
    """
    full = os.path.abspath(path)
    try:
        with open(full, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        fix = "run `mailmanager init` to write a starter file, or pass --config PATH"
        raise schema.fail(full, "file not found", fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        fix = "check the path and its permissions; the file must be UTF-8"
        raise schema.fail(full, f"cannot read the file: {exc}", fix) from exc
    return loads(text, base_dir=os.path.dirname(full), path=full)


SAMPLE_MAILBOX = _EXAMPLE.parent / "examples" / "sample-mailbox"
_SAMPLE_PATH_LINE = 'path = "examples/sample-mailbox"'
PLACEHOLDER_PATH = "/path/to/your/Maildir-or-mbox"


def starter_config_text() -> str:
    """What `mailmanager init` writes: `config.example.toml`, whose sample mailbox path is
    made absolute (the repository's `examples/sample-mailbox`), so the file runs as is
    wherever it is written; without that folder (an installation from a wheel), a
    placeholder path that `config check` reports with its fix.

    Raises `ConfigFileError` when the example is not shipped with this installation.
    """
    text = default_config_text()
    if SAMPLE_MAILBOX.is_dir():
        target = str(SAMPLE_MAILBOX).replace("\\", "\\\\").replace('"', '\\"')
        line = f'path = "{target}"'
    else:
        line = f'path = "{PLACEHOLDER_PATH}"   # CHANGE ME: a Maildir folder or an mbox file'
    return text.replace(_SAMPLE_PATH_LINE, line, 1)


def default_config_text() -> str:
    """The starter file `mailmanager init` writes: `config.example.toml`.

    Raises `ConfigFileError` when the example is not shipped with this installation.
    """
    try:
        return _EXAMPLE.read_text(encoding="utf-8")
    except OSError as exc:
        raise schema.fail("init", f"{_EXAMPLE} is missing", "reinstall mailmanager") from exc
