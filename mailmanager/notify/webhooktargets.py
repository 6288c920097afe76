"""Where a webhook may be posted: the SSRF rules, checked when a subscription is made and
again at every delivery (the name may resolve elsewhere by then: DNS rebinding).

A target URL is refused when:
- its scheme is not http or https, it has no host, or it carries a user name or password
  (those would be a secret stored in clear);
- any address its host resolves to is private, loopback, link-local, multicast, reserved,
  unspecified or otherwise not global (IPv4 and IPv6; an IPv4-mapped IPv6 address is judged
  as the IPv4 address it maps), unless that address lies in one of `[webhooks]
  allow_private`'s networks;
- it is plain http and not every address is allow-listed: the internet gets https only.

The request is then made to the checked address itself (the URL's host replaced by it, the
`Host` header and the TLS server name kept, so the certificate is verified against the name),
never re-resolved in between; redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mailmanager.errors import MailmanagerError

Resolver = Callable[..., list[Any]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetError(MailmanagerError):
    """Raised when a webhook URL is refused (`permanent`: it will not change by retrying, as
    a private address; not permanent: its host does not resolve now)."""

    def __init__(self, message: str, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Target:
    """A checked target: `url` names the address to connect to, `host_header` and
    `server_name` (TLS, https only) the host the admin wrote."""

    url: str
    host_header: str
    server_name: str | None
    address: str


def _networks(allow: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in allow]


def _judged(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a global unicast address (not private, loopback, link-local,
    multicast, reserved or unspecified)."""
    ip = _judged(ip)
    return bool(
        ip.is_global
        and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast)
        and not (ip.is_reserved or ip.is_unspecified)
    )


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL. Raises TargetError when it is not usable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetError("the URL must start with https:// (or http:// for allowed hosts)")
    if not parts.hostname:
        raise TargetError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetError("the URL must not hold a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check(url: str, allow: Sequence[str], resolve: Resolver = socket.getaddrinfo) -> Target:
    """Resolve and check `url` (see the module docstring); the target to connect to.

    Raises TargetError: permanent for a refused URL or address, not permanent when the
    host does not resolve now.
    """
    scheme, host, port = parse(url)
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise TargetError(f"{host} does not resolve: {exc}", permanent=False) from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise TargetError(f"{host} does not resolve", permanent=False)
    nets = _networks(allow)

    def allowed(ip: IPAddress) -> bool:
        return any(
            candidate in net
            for candidate in {ip, _judged(ip)}
            for net in nets
            if candidate.version == net.version
        )

    for ip in addresses:
        if not is_public(ip) and not allowed(ip):
            raise TargetError(
                f"{host} resolves to {ip}, a private, loopback, link-local or reserved "
                "address: refused (allow its network in [webhooks] allow_private if meant)"
            )
    if scheme == "http" and not all(allowed(ip) for ip in addresses):
        raise TargetError("plain http:// is accepted only for allow-listed hosts: use https://")
    ip = addresses[0]
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    parts = urlsplit(url.strip())
    default = port == (443 if scheme == "https" else 80)
    host_header = parts.hostname if default else f"{parts.hostname}:{port}"
    if ":" in (parts.hostname or "") and not default:
        host_header = f"[{parts.hostname}]:{port}"
    elif ":" in (parts.hostname or ""):
        host_header = f"[{parts.hostname}]"
    target = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    return Target(
        url=target,
        host_header=str(host_header),
        server_name=host if scheme == "https" else None,
        address=str(ip),
    )
