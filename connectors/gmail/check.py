"""`mailmanager mailbox test` for Gmail: each step, and a plain diagnosis when one fails.

Steps, each needing the previous one: credentials (the JSON files, the refresh token),
token (one refresh at the token endpoint: invalid_grant, unauthorized_client...), profile
(users.getProfile), scope (what the token grants, then one message read in the privacy
mode's format), folders (labels.list resolved against `folders`). Every call is tried once,
so a throttled mailbox is reported at once with its Retry-After, not waited out.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import google_auth_httplib2  # type: ignore[import-untyped]

from connectors.gmail import api
from connectors.gmail import auth as gmail_auth
from connectors.gmail import changes as ch
from mailmanager import spi

if TYPE_CHECKING:
    from connectors.gmail.connector import GmailConnector

_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
_QUOTA = "Gmail allows 15,000 quota units per user per minute (a get costs 5)"


def fix_for(conn: GmailConnector, code: str) -> str:
    """The fix for an OAuth error code or Gmail error reason, in this mailbox's terms."""
    scope, user, mailbox = conn.scope, conn.delegated_user, conn.mailbox
    if conn.service_account:
        try:
            client_id = json.loads(conn.service_account).get("client_id", "?")
        except ValueError:
            client_id = "?"
        dwd = (
            f"in the Admin console (Security > Access and data control > API controls > "
            f"Domain-wide delegation) allow client id {client_id} the scope {scope}"
        )
        return {
            "unauthorized_client": f"domain-wide delegation is not granted: {dwd}",
            "insufficientPermissions": f"missing scope or delegation: {dwd}",
            "invalid_grant": f"check delegated_user ({user}) exists in the domain, the key is "
            "not deleted, and this server's clock is right",
            "failedPrecondition": "Gmail is not enabled for this user, or delegation is off",
            "forbidden": f"delegation refused for {user}: {dwd}",
        }.get(code, "")
    again = f"run `mailmanager auth {mailbox}` again"
    return {
        "invalid_grant": "the refresh token was revoked or expired (apps in Testing status get "
        f"7-day tokens): {again}",
        "invalid_client": "the OAuth client id/secret is wrong or deleted: download "
        "client_secret_file again",
        "insufficientPermissions": f"the consent lacks {scope}: {again} and tick the Gmail box",
        "failedPrecondition": "Gmail is not enabled for this account",
        "forbidden": f'the consent covers less than {scope}: {again}, or set privacy = "metadata"',
    }.get(code, "")


def _who(conn: GmailConnector) -> str:
    if conn.service_account:
        email = json.loads(conn.service_account).get("client_email", "?")
        return f"service account {email} acting for {conn.delegated_user}"
    source = "refresh_token" if conn.fixed_refresh else "the token store"
    client = gmail_auth.parse_client(conn.client_secret, "client_secret_file")
    return f"OAuth client {client.client_id}; refresh token from {source}"


def _explain(exc: spi.ConnectorError) -> str:
    if isinstance(exc, spi.TransientError):
        wait = (
            f"retry after {exc.retry_after:.0f} s" if exc.retry_after is not None else "retry later"
        )
        if " 429 " in str(exc) or "RateLimit" in str(exc):
            return f"throttled: {exc}; {wait} ({_QUOTA})"
        return f"unreachable or failing for now: {exc}; {wait}"
    return str(exc)


def run_check(conn: GmailConnector) -> list[spi.CheckStep]:
    """The steps above; never raises for a failed step."""
    try:
        who = _who(conn)
        client = conn.new_client(dataclasses.replace(conn.settings, attempts=1))
    except (spi.ConfigError, spi.AuthError, ValueError) as exc:
        return [spi.CheckStep("credentials", False, str(exc))]
    steps = [spi.CheckStep("credentials", True, who)]
    step = "token"
    try:
        creds: Any = client.credentials
        client.run(
            "token refresh", lambda: creds.refresh(google_auth_httplib2.Request(client.http.http))
        )
        granted = frozenset(getattr(creds, "granted_scopes", None) or ())
        steps.append(spi.CheckStep(step, True, "access token obtained"))
        # The token endpoint says which scopes the consent covers (user OAuth only): a
        # missing one is the diagnosis, before any API call fails for it.
        broader = {api.READONLY, _MODIFY, "https://mail.google.com/"}
        if granted and conn.scope not in granted and not (granted & broader):
            hint = fix_for(conn, "insufficientPermissions")
            detail = f"granted {' '.join(sorted(granted))}; {hint}"
            return [*steps, spi.CheckStep("scope", False, detail)]
        step = "profile"
        profile = client.call("users.getProfile", lambda u: u.getProfile(userId="me"))
        detail = (
            f"{profile.get('emailAddress')}: {profile.get('messagesTotal')} messages, "
            f"historyId {profile.get('historyId')}"
        )
        steps.append(spi.CheckStep(step, True, detail))
        step = "scope"
        listed = client.call(
            "messages.list", lambda u: u.messages().list(userId="me", maxResults=1)
        )
        fmt = "metadata" if conn.privacy == "metadata" else "raw"
        for ref in listed.get("messages", [])[:1]:
            client.get_one(str(ref["id"]), fmt)
        steps.append(spi.CheckStep(step, True, f"{conn.scope} (messages read as format={fmt})"))
        step = "folders"
        answer = client.call("labels.list", lambda u: u.labels().list(userId="me"))
        labels = {str(x["id"]): str(x["name"]) for x in answer.get("labels", [])}
        views = ch.views(conn.folders, conn.exclude, labels)
        parts = []
        for spec in conn.folders:
            if spec.upper() in ("ALL", "ARCHIVE"):
                parts.append(f"{spec} -> {spec.upper()}")
            else:
                names = [labels[i] for i in ch.resolve([spec], labels)]
                parts.append(f"{spec} -> {', '.join(names) or '(none)'}")
        unknown = [x for x in conn.exclude if not ch.resolve([x], labels)]
        detail = "; ".join(parts) + (
            f"; exclude_labels not found: {', '.join(unknown)}" if unknown else ""
        )
        steps.append(
            spi.CheckStep(
                step, bool(views), detail + ("" if views else "; nothing to sync: fix folders")
            )
        )
    except spi.ConnectorError as exc:
        steps.append(spi.CheckStep(step, False, _explain(exc)))
    finally:
        client.close()
    return steps
