"""`[[oidc]]`: OpenID Connect providers people may sign in with ("Sign in with Google").

Each table names a provider (`name`, shown on the sign-in button and, lower-cased, in its
URLs `/signin/oidc/<slug>`), its `issuer` (whose discovery document is read from
`{issuer}/.well-known/openid-configuration`), the `client_id` registered there and the
client secret through `client_secret_env` or `client_secret_file` (never in the file, never
logged). The issuer must be https; plain http is accepted only for a loopback host (tests,
a provider on the same machine). Nobody gets an account by signing in: the verified email
the provider returns must be one of the `[[users]]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mailmanager.config import schema
from mailmanager.config.schema import Context, Invalid, Problems, spec

LOOPBACK = ("127.0.0.1", "::1", "localhost")
DEFAULT_SCOPES = ("openid", "email", "profile")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _issuer(value: str, ctx: Context) -> str:
    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    if parts.scheme == "http" and host in LOOPBACK:
        pass
    elif parts.scheme != "https" or not host:
        raise Invalid(
            f"{value!r} is not an https URL",
            'write e.g. "https://accounts.google.com" (http only for 127.0.0.1)',
        )
    if parts.query or parts.fragment:
        raise Invalid(f"{value!r} has a query or fragment", "give the issuer URL only")
    return value.strip().rstrip("/")


def _name(value: str, ctx: Context) -> str:
    if not slug(value):
        raise Invalid(f"{value!r} has no letter or digit", 'write e.g. "Google"')
    return value.strip()


def _scopes(value: tuple[str, ...], ctx: Context) -> tuple[str, ...]:
    if "openid" not in value:
        raise Invalid("the scopes lack openid", 'write scopes = ["openid", "email", "profile"]')
    return value


def _absolute(value: str, ctx: Context) -> str:
    return schema.resolve_path(value, ctx.base_dir)


def slug(name: str) -> str:
    """The provider's name as it appears in URLs: "Google Workspace" -> "google-workspace"."""
    return _NOT_SLUG.sub("-", name.strip().lower()).strip("-")


@dataclass(frozen=True)
class OidcProvider:
    """One `[[oidc]]` table: an OpenID Connect provider and this site's client there."""

    name: str = field(metadata=spec(_name, example='"Google"'))
    issuer: str = field(metadata=spec(_issuer, example='"https://accounts.google.com"'))
    client_id: str = field(metadata=spec(example='"1234.apps.googleusercontent.com"'))
    client_secret_env: str | None = field(default=None, metadata=spec(schema.env_name))
    client_secret_file: str | None = field(default=None, metadata=spec(_absolute))
    scopes: tuple[str, ...] = field(default=DEFAULT_SCOPES, metadata=spec(_scopes))
    key: str = field(default="oidc", metadata=spec(internal=True))

    @property
    def slug(self) -> str:
        return slug(self.name)

    def client_secret(self) -> str:
        """The client secret, read now. Raises `ConfigFileError` when it cannot be read."""
        p = Problems()
        value = schema.resolve_secret(
            f"{self.key}.client_secret", self.client_secret_env, self.client_secret_file, "/", p
        )
        p.raise_if_any()
        return value or ""


def read(table: object, cls: type, key: str, ctx: Context, p: Problems) -> Any:
    """The `[[oidc]]` reader: `schema.plain`, then exactly one client secret reference."""
    before = len(p)
    provider: OidcProvider | None = schema.plain(table, cls, key, ctx, p)
    if provider is None:
        return None
    refs = [r for r in ("client_secret_env", "client_secret_file") if getattr(provider, r)]
    if len(refs) != 1:
        problem = "both are given" if refs else "missing client secret"
        p.add(
            f"{key}.client_secret_env",
            problem,
            'write one of client_secret_env = "VAR" (then export VAR=...) '
            'or client_secret_file = "/path" (mode 600)',
        )
    return provider if len(p) == before else None
