"""`[webhooks]`: how webhook deliveries are made (issue #18; see `mailmanager.notify.webhooks`).

Receivers are URLs an admin configured, so the server refuses to post to its own network
(SSRF): a target whose host resolves to a private, loopback, link-local, multicast, reserved
or unspecified address is refused, unless that address is inside one of `allow_private`'s
networks (e.g. `["127.0.0.0/8"]` for a receiver on the same machine, or an internal range).
Plain `http://` is accepted only for such allow-listed targets; anything on the internet
needs `https://` with a certificate that verifies: against the system's certificate
authorities, and those of `ssl_ca_file` (an internal authority, for a receiver inside).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field

from mailmanager.config import schema
from mailmanager.config.schema import Context, Invalid, spec


def _network(value: str, ctx: Context) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise Invalid(
            f"{value!r} is not an IP network", 'write e.g. "127.0.0.0/8" or "::1/128"'
        ) from None


def _ca_file(value: str, ctx: Context) -> str:
    path = schema.resolve_path(value, ctx.base_dir)
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise Invalid(
            f"{path} cannot be read as certificates ({exc})",
            "give a PEM file of the certificate authorities that sign your receivers",
        ) from None
    return path


@dataclass(frozen=True)
class WebhooksConfig:
    """`[webhooks]`: networks private targets may be in (`allow_private`), the seconds each
    step of a request may take (`timeout`: connect, send, each read), attempts before a
    delivery is dead (`max_attempts`), the backoff (`retry_base` × 2^(n-1) seconds, at most
    `retry_max`), the seconds between delivery passes (`interval`), the requests made at
    once (`concurrency`), the days events are kept once delivered or dead (`keep_days`), and
    a file of certificate authorities trusted besides the system's (`ssl_ca_file`)."""

    allow_private: tuple[str, ...] = field(default=(), metadata=spec(schema.each(_network)))
    timeout: int = field(default=10, metadata=spec(schema.at_least(1)))
    max_attempts: int = field(default=8, metadata=spec(schema.at_least(1)))
    retry_base: int = field(default=30, metadata=spec(schema.at_least(1)))
    retry_max: int = field(default=21600, metadata=spec(schema.at_least(1)))
    interval: int = field(default=10, metadata=spec(schema.at_least(1)))
    concurrency: int = field(default=8, metadata=spec(schema.at_least(1)))
    keep_days: int = field(default=30, metadata=spec(schema.at_least(1)))
    ssl_ca_file: str | None = field(default=None, metadata=spec(_ca_file))
