"""`mailmanager mailbox test` for the Exchange connector: one step at a time, each failure
with its likely cause (see `Connector.check`).

Steps: endpoint (given, or found by Autodiscover; Exchange Online refused), reach (TCP),
tls (certificate chain and host name, against `ssl_ca_file` when set), login (one GetFolder;
a 401 is compared with the schemes the server offers in WWW-Authenticate), folders (each
`folders` entry and what it selects), sync (one SyncFolderItems change).
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import oauthlib.oauth2  # type: ignore[import-untyped]
import requests

from connectors.exchange import ews
from mailmanager import spi

if TYPE_CHECKING:
    from connectors.exchange.connector import ExchangeConnector


def diagnose(conn: ExchangeConnector) -> list[spi.CheckStep]:
    """The steps of `conn.check()`; stops at the first step that fails. Never raises."""
    s = conn.settings
    steps: list[spi.CheckStep] = []
    step = "endpoint"
    try:
        if s.endpoint and ews.is_exchange_online(s.endpoint):
            conn.open_session()  # raises UnsupportedError with the Graph advice
        if s.endpoint is None:
            session = conn.open_session()
            steps.append(spi.CheckStep(step, True, f"Autodiscover found {session.endpoint}"))
        else:
            steps.append(spi.CheckStep(step, True, s.endpoint))
        endpoint = s.endpoint or conn.open_session().endpoint
    except spi.ConnectorError as exc:
        fix = "" if isinstance(exc, spi.UnsupportedError) else "; set service_endpoint instead"
        return [spi.CheckStep(step, False, f"{exc}{fix}")]
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    problem = _probe_tcp(host, port, min(s.timeout, 10.0))
    steps.append(spi.CheckStep("reach", not problem, problem or f"{host}:{port} answers"))
    if problem:
        return steps
    if parts.scheme == "https":
        ok, detail = _probe_tls(host, port, s.ssl_ca_file, min(s.timeout, 10.0))
        steps.append(spi.CheckStep("tls", ok, detail))
        if not ok:
            return steps
    else:
        steps.append(spi.CheckStep("tls", True, "plain http: allowed on loopback only"))
    step = "login"
    try:
        session = conn.open_session()
        session.distinguished(["msgfolderroot"])
        who = s.client_id if s.auth_type == "oauth" else s.username
        detail = f"signed in as {who!r} ({s.auth_type}); Exchange build {session.build}"
        if s.impersonation:
            detail += f"; impersonating {s.email}"
        steps.append(spi.CheckStep(step, True, detail))
        step = "folders"
        boxes = conn.boxes(session)
        chosen = conn.choose(boxes)
        picks = []
        for spec in conn.folders:
            names = ", ".join(b.path for b in chosen if conn.matches(spec, b))
            picks.append(f"{spec} -> {names or '(none)'}")
        detail = "; ".join(picks) + ("" if chosen else "; nothing to sync: fix folders")
        steps.append(spi.CheckStep(step, bool(chosen), detail))
        if chosen:
            step = "sync"
            page = session.sync(chosen[0].id, None, 1)
            more = "" if page.last else " and more"
            detail = f"SyncFolderItems on {chosen[0].path}: {len(page.changes)} change(s){more}"
            steps.append(spi.CheckStep(step, True, detail))
    except spi.AuthError as exc:
        steps.append(spi.CheckStep(step, False, _auth_hint(conn, exc)))
    except spi.TransientError as exc:
        hint = "; the server is failing or unreachable for now: retry later"
        if exc.retry_after:
            hint = (
                f"; the server asks to wait {exc.retry_after:.0f} s: retry later, or review the "
                "throttling policy of this account (EWSMaxConcurrency, EWSMaxBurst...)"
            )
        steps.append(spi.CheckStep(step, False, f"{exc}{hint}"))
    except spi.ConnectorError as exc:
        steps.append(spi.CheckStep(step, False, str(exc)))
    return steps


def _auth_hint(conn: ExchangeConnector, exc: spi.AuthError) -> str:
    s, cause = conn.settings, exc.__cause__
    if "mailbox access refused" in str(exc):
        who = s.client_id if s.auth_type == "oauth" else s.username
        need = "the ApplicationImpersonation role" if s.impersonation else "full access"
        return f"{exc}; give {who!r} {need} on {s.email}"
    if isinstance(cause, oauthlib.oauth2.OAuth2Error):
        text = f"token request to {s.token_url} refused ({cause.error}: {cause.description})"
        if "consent" in str(cause.description).lower() or "AADSTS65001" in str(cause.description):
            return f"{text}; an administrator must grant consent to the application"
        if cause.error == "invalid_scope":
            return f"{text}; oauth_scope {s.scope!r} is not an API the app may call"
        return f"{text}; check client_id, client_secret and tenant_id / oauth_token_url"
    if s.auth_type == "oauth":
        return (
            f"{exc}; EWS refused the token: the app needs the Exchange application permission "
            f"full_access_as_app with admin consent, and oauth_scope {s.scope!r} must name this "
            "server"
        )
    offered = _offered_schemes(conn)
    wanted = {"ntlm": "ntlm", "basic": "basic"}[s.auth_type]
    hint = f"{exc}; check username (DOMAIN\\user or UPN) and password"
    if offered:
        hint += f"; the server offers {', '.join(offered)}"
        if wanted not in {o.lower() for o in offered}:
            other = "ntlm" if "ntlm" in {o.lower() for o in offered} else offered[0].lower()
            hint += f', not {s.auth_type}: set auth_type = "{other}"'
    return hint


def _offered_schemes(conn: ExchangeConnector) -> list[str]:
    """The auth schemes in the endpoint's WWW-Authenticate answer to an anonymous request."""
    s = conn.settings
    endpoint = s.endpoint
    if endpoint is None:
        return []
    try:
        r = requests.post(
            endpoint,
            data=b"",
            headers={"Content-Type": "text/xml; charset=utf-8"},
            timeout=min(s.timeout, 10.0),
            verify=s.ssl_ca_file or True,
            allow_redirects=False,
        )
    except requests.RequestException:
        return []
    raw = r.raw.headers.getlist("WWW-Authenticate") if r.raw is not None else []
    return [h.split(" ", 1)[0] for h in raw if h]


def _probe_tcp(host: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _probe_tls(host: str, port: int, ca_file: str | None, timeout: float) -> tuple[bool, str]:
    ctx = ssl.create_default_context(cafile=ca_file)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        fix = "set ssl_ca_file to your CA's PEM file" if not ca_file else f"check {ca_file}"
        return False, f"certificate rejected: {exc.verify_message} ({fix})"
    except (ssl.SSLError, OSError) as exc:
        return False, f"TLS handshake with {host}:{port} failed: {exc}"
    subject = ", ".join("=".join(p) for rdn in cert.get("subject", ()) for p in rdn)
    issuer = ", ".join("=".join(p) for rdn in cert.get("issuer", ()) for p in rdn)
    until = cert.get("notAfter", "?")
    return (
        True,
        f"{version}, certificate verified: {subject} (issuer {issuer}), valid until {until}",
    )
