"""Options of the Exchange connector, validated into `exchange_ews.Settings`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from connectors.exchange import ews
from mailmanager import spi


def settings(v: Mapping[str, object], key: str, base_dir: str) -> ews.Settings:
    """Validate the options; raises spi.ConfigError naming the key and the fix."""
    email = str(v.get("email") or "")
    if "@" not in email:
        raise spi.ConfigError(f"{key}.email", "missing or not an address", "set email")
    endpoint = str(v.get("service_endpoint") or "") or None
    if endpoint is None and not v.get("autodiscover"):
        raise spi.ConfigError(
            f"{key}.service_endpoint", "missing", "set service_endpoint, or autodiscover = true"
        )
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise spi.ConfigError(
                f"{key}.service_endpoint", f"not a URL: {endpoint!r}",
                "e.g. https://mail.corp.example/EWS/Exchange.asmx",
            )  # fmt: skip
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise spi.ConfigError(
                f"{key}.service_endpoint", "plain http sends credentials in clear", "use https"
            )
    auth = str(v.get("auth_type") or "ntlm")
    if auth not in ("ntlm", "basic", "oauth"):
        raise spi.ConfigError(f"{key}.auth_type", f"unknown value {auth!r}", "ntlm, basic or oauth")
    if auth == "oauth":
        for name in ("client_id", "client_secret"):
            if not v.get(name):
                fix = "client_secret_env / client_secret_file" if name == "client_secret" else ""
                raise spi.ConfigError(f"{key}.{name}", "required with auth_type = oauth", fix)
        if not (v.get("tenant_id") or v.get("oauth_token_url")):
            fix = "set tenant_id (Entra ID) or oauth_token_url (AD FS)"
            raise spi.ConfigError(f"{key}.tenant_id", "required with auth_type = oauth", fix)
        for name in ("service_endpoint", "oauth_token_url"):  # RFC 6749 §3.1, §10.9
            if str(v.get(name) or "https:").startswith("http:"):
                raise spi.ConfigError(f"{key}.{name}", "OAuth needs https", "use an https URL")
    elif not (v.get("username") and v.get("password")):
        raise spi.ConfigError(
            f"{key}.password", f"auth_type = {auth} needs username and password",
            "set username and password_env or password_file",
        )  # fmt: skip
    version = None
    if v.get("version"):
        try:
            version = tuple(int(p) for p in str(v["version"]).split("."))
            if not 2 <= len(version) <= 4 or version[0] < 14:
                raise ValueError
        except ValueError:
            raise spi.ConfigError(f"{key}.version", f"not a build: {v['version']!r}",
                                  'e.g. "15.1" (2016) or "15.2" (2019)') from None  # fmt: skip
    host = urlsplit(endpoint).hostname if endpoint else None
    tenant = str(v.get("tenant_id") or "")
    ca = v.get("ssl_ca_file")
    access = str(v.get("access") or "auto")
    return ews.Settings(
        email=email,
        endpoint=endpoint,
        auth_type=auth,
        username=str(v.get("username") or ""),
        password=str(v.get("password") or ""),
        client_id=str(v.get("client_id") or ""),
        client_secret=str(v.get("client_secret") or ""),
        tenant_id=tenant,
        token_url=str(v.get("oauth_token_url") or "")
        or f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        scope=str(v.get("oauth_scope") or "")
        or f"https://{host or 'outlook.office365.com'}/.default",
        impersonation=access == "impersonation" or (access == "auto" and auth == "oauth"),
        version=version,
        ssl_ca_file=os.path.join(base_dir, str(ca)) if ca else None,
        timeout=float(as_int(v.get("timeout"), 120)),
        connections=max(as_int(v.get("connections"), 2), 1),
    )


def _is_loopback(host: str) -> bool:
    return host.lower() == "localhost" or host.startswith("127.") or host in ("::1", "[::1]")


def as_int(value: object, default: int) -> int:
    try:
        return int(str(value)) if value is not None else default
    except ValueError:
        return default


def as_list(value: object, default: list[str]) -> list[object]:
    if value is None:
        return list(default)
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, Iterable) else list(default)
