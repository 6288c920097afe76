"""`mailmanager mailbox test` for the graph connector: each step names what to fix.

Steps: token (Entra accepts the credentials; the token carries Mail.Read), mailbox (the
user has an Exchange Online mailbox this app may open), read (message content, which
Mail.ReadBasic would refuse), delta (change tracking answers), folders (what `folders`
selects). The mailbox is probed through `mailFolders/inbox`, not `GET /users/{id}`: that
needs User.Read.All, which a Mail.Read-only app rightly lacks. Probes do not retry, so a
throttled mailbox (429) is reported with its Retry-After instead of waited for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from connectors.graph import auth as graph_auth
from connectors.graph import folders as graph_folders
from connectors.graph.http import GraphClient, GraphError
from mailmanager import spi

if TYPE_CHECKING:
    from connectors.graph.connector import GraphConnector

_NO_MAILBOX = {"errorinvaliduser", "mailboxnotenabledforrestapi", "resourcenotfound",
               "request_resourcenotfound", "errornonexistentmailbox"}  # fmt: skip
_READ_ROLES = {"Mail.Read", "Mail.ReadWrite"}


def thumbprint(pem: bytes) -> str:
    """SHA-1 thumbprint (upper-case hex) of the certificate in a PEM; "" when it has none."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return ""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def _token_step(conn: GraphConnector) -> spi.CheckStep:
    s = conn.tokens.settings
    claims = graph_auth.token_claims(conn.tokens.token())
    roles = {str(r) for r in claims.get("roles") or []}
    scopes = set(str(claims.get("scp") or "").split())
    what = f"{'app-only' if s.mode == 'app' else 'delegated'} token for client {s.client_id}"
    if not claims:
        return spi.CheckStep("token", True, f"{what} obtained")
    if s.mode == "app" and not roles & _READ_ROLES:
        basic = " (Mail.ReadBasic cannot read message content)" if roles else ""
        return spi.CheckStep(
            "token",
            False,
            f"{what} carries no Mail.Read role (roles: {', '.join(sorted(roles)) or 'none'})"
            f"{basic}: an admin must add the Mail.Read application permission and grant admin "
            "consent",
        )
    if s.mode == "device" and not scopes & _READ_ROLES:
        return spi.CheckStep(
            "token",
            False,
            f"{what} lacks the Mail.Read scope (scp: {' '.join(sorted(scopes)) or 'none'}): "
            f"run `mailmanager auth {conn.mailbox}` again and accept the permission",
        )
    granted = ", ".join(sorted(roles | scopes))
    return spi.CheckStep("token", True, f"{what}; permissions: {granted}")


def _explain(step: str, exc: spi.ConnectorError, conn: GraphConnector) -> str:
    if isinstance(exc, spi.TransientError):
        if step == "token":
            return f"{exc}; Microsoft Entra (sign-in) is unreachable or failing: retry later"
        if exc.retry_after is not None:
            return (
                f"throttled by Graph (retry after {exc.retry_after:g} s): {exc}; other syncs or "
                "apps use this mailbox's quota (4 concurrent requests): try again later"
            )
        return f"{exc}; check the network path to Microsoft (proxy, firewall) and retry"
    if isinstance(exc, graph_auth.GraphAuthError):
        if step == "read":
            return f"{exc} (folders are readable but message content is not: grant Mail.Read)"
        return str(exc)
    if isinstance(exc, GraphError) and exc.code.lower() in _NO_MAILBOX:
        return (
            f"{exc}; no Exchange Online mailbox for {conn.user!r}: check user (UPN or object id) "
            "and that the user has a mailbox licence"
        )
    return str(exc)


def run(conn: GraphConnector) -> list[spi.CheckStep]:
    """The steps of `Connector.check` (module docstring). Never raises ConnectorError."""
    s = conn.tokens.settings
    probe = GraphClient(
        conn.graph_url, conn.tokens, conn.slot_key, s.verify, min(s.timeout, 20.0), max_retry_wait=0
    )
    probe.retry_attempts = 1
    steps: list[spi.CheckStep] = []
    step = "token"
    u = conn.user_path
    try:
        steps.append(_token_step(conn))
        if not steps[-1].ok:
            return steps
        step = "mailbox"
        inbox = probe.get_json(
            f"{u}/mailFolders/inbox", params={"$select": "id,displayName,totalItemCount"}
        )
        detail = f"{conn.user}: {inbox.get('displayName')} holds {inbox.get('totalItemCount')}"
        steps.append(spi.CheckStep(step, True, detail + " messages"))
        step = "read"
        listing = probe.get_json(f"{u}/messages", params={"$top": "1", "$select": "id"})
        first = [m["id"] for m in listing.get("value", []) if isinstance(m, dict) and "id" in m]
        if first:
            probe.get(f"{u}/messages/{quote(str(first[0]), safe='')}/$value")
        steps.append(
            spi.CheckStep(step, True, "message content readable" if first else "no message yet")
        )
        step = "delta"
        probe.get_json(
            conn.delta_link(str(inbox.get("id"))), headers={"Prefer": "odata.maxpagesize=1"}
        )
        steps.append(spi.CheckStep(step, True, "change tracking (delta query) answers"))
        step = "folders"
        chosen = graph_folders.choose(probe, u, conn.folders, conn.exclude)
        names = ", ".join(f"{f.path} ({f.role})" for f in chosen)
        detail = names or f"nothing matches folders = {conn.folders}: fix folders"
        steps.append(spi.CheckStep(step, bool(chosen), detail))
    except spi.ConnectorError as exc:
        steps.append(spi.CheckStep(step, False, _explain(step, exc, conn)))
    finally:
        probe.close()
    return steps
