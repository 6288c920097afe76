"""Access tokens for Microsoft Graph, through msal: app-only or delegated (device code).

- App-only ("client credentials", `auth = "app"`): a confidential client with a secret or a
  certificate asks for `<graph origin>/.default`, i.e. the application permissions an admin
  consented to (Mail.Read). msal keeps the token in its in-memory cache until it nears
  expiry (msal >= 1.23 checks the cache in `acquire_token_for_client`).
- Delegated (`auth = "device"`): `authorize(say)` runs the OAuth 2.0 device authorization
  grant (RFC 8628): the admin opens the verification URL, types the code, signs in as the
  mailbox's user; the msal token cache (refresh token included) is then saved in the
  mailbox's `spi.TokenStore` (in memory when there is none). Later runs refresh silently.

msal insists on an https authority (`msal.authority.canonicalize`) and, for hosts it does
not know, on an instance-discovery call to login.microsoftonline.com unless
`instance_discovery=False`: we always pass False, so a sovereign cloud or a loopback fake
is reached directly and nothing else leaves the machine.

Microsoft Entra errors carry AADSTS codes; `explain` turns the common ones into a fix
(https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msal  # type: ignore[import-untyped]
import requests

from mailmanager import spi

log = logging.getLogger(__name__)

CACHE_KEY = "msal_token_cache"

# AADSTS code -> what to do (learn.microsoft.com/entra/identity-platform/reference-error-codes)
_FIXES: dict[int, str] = {
    7000215: "the client secret is wrong: paste the secret's Value, not its Secret ID",
    7000222: "the client secret has expired: create a new one in the app's Certificates & "
    "secrets page and update client_secret",
    700016: "no application with this client_id in the tenant: check client_id and tenant_id "
    "(a multi-tenant app must first be consented in this tenant)",
    65001: "an admin must grant consent: Entra admin center > App registrations > API "
    "permissions > Grant admin consent",
    90002: "the tenant does not exist: check tenant_id (a GUID or a verified domain)",
    90023: "the tenant does not exist: check tenant_id",
    700027: "the certificate is not registered on the app, or the thumbprint does not match "
    "it: upload the public certificate under Certificates & secrets",
    7000218: "public client flows are off for this app: enable 'Allow public client flows' "
    "in the app's Authentication page (device code needs it)",
    700082: "the refresh token expired (90 days unused): run `mailmanager auth MAILBOX` again",
    50173: "the grant was revoked (password changed?): run `mailmanager auth MAILBOX` again",
    70008: "the authorization expired: run `mailmanager auth MAILBOX` again",
    53003: "a Conditional Access policy blocks this sign-in: ask an admin to exclude the app",
    50076: "multi-factor authentication is required: run `mailmanager auth MAILBOX` again",
    70011: "the scope is invalid: check graph_url (scopes are <graph origin>/.default)",
    50020: "this user is not in the tenant: sign in with an account of tenant_id",
}
_TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error"}
_RETRY_CODES = {50196, 90033, 90055}  # Entra asks clients to slow down or retry


class GraphAuthError(spi.AuthError):
    """Raised when Microsoft Entra refuses a token or Graph refuses the token it gave.

    `aadsts` is the Entra error code when there is one (7000215, 65001...), `error` the OAuth
    error ("invalid_client"), `fix` what to change.
    """

    def __init__(self, message: str, aadsts: int | None = None, error: str = "", fix: str = ""):
        super().__init__(f"{message}; {fix}" if fix else message)
        self.aadsts = aadsts
        self.error = error
        self.fix = fix


def explain(result: Mapping[str, Any]) -> spi.ConnectorError:
    """The error to raise for an msal error `result` (a dict with "error")."""
    error = str(result.get("error") or "error")
    description = str(result.get("error_description") or "").split("\r\n")[0].split("\n")[0]
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    if not codes and (m := re.search(r"AADSTS(\d+)", description)):
        codes = [int(m.group(1))]
    code = codes[0] if codes else None
    if error in _TRANSIENT_ERRORS or code in _RETRY_CODES:
        return spi.TransientError(f"Microsoft Entra: {error}: {description}", retry_after=5)
    fix = _FIXES.get(code or 0, "")
    text = f"token refused ({error}" + (f", AADSTS{code}" if code else "") + f"): {description}"
    return GraphAuthError(text, code, error, fix)


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT access token, unverified (diagnostics only); {} if opaque."""
    try:
        part = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return data if isinstance(data, dict) else {}
    except (IndexError, ValueError):
        return {}


@dataclass(frozen=True)
class AuthSettings:
    """What the token source needs. `credential` is a secret string or msal's certificate dict."""

    mode: str  # "app" or "device"
    authority: str  # authority_url + "/" + tenant
    client_id: str
    resource: str  # the Graph origin, e.g. https://graph.microsoft.com
    credential: str | Mapping[str, str] | None = field(default=None, repr=False)  # secret
    delegated_scopes: tuple[str, ...] = ("Mail.Read",)
    verify: str | bool = True
    timeout: float = 60.0


class TokenSource:
    """Hands out bearer tokens for one mailbox; thread-safe. Builds msal lazily (msal reads the
    authority's OpenID metadata when constructed, which is network I/O)."""

    def __init__(self, settings: AuthSettings, store: spi.TokenStore | None, mailbox: str):
        self.settings = settings
        self.store = store
        self.mailbox = mailbox
        self._app: Any = None
        self._cache: Any = None
        self._lock = threading.RLock()

    @property
    def scopes(self) -> list[str]:
        base = self.settings.resource.rstrip("/")
        if self.settings.mode == "app":
            return [f"{base}/.default"]
        return [f"{base}/{scope}" for scope in self.settings.delegated_scopes]

    def _build(self) -> Any:
        if self._app is not None:
            return self._app
        s = self.settings
        self._cache = msal.SerializableTokenCache()
        if s.mode == "device" and self.store is not None:
            saved = self.store.load(CACHE_KEY)
            if saved:
                self._cache.deserialize(saved)
        # requests lets REQUESTS_CA_BUNDLE override a Session's `verify` (psf/requests#3829):
        # pass verify (and the timeout) on every request instead.
        http = requests.Session()
        http.request = functools.partial(  # type: ignore[method-assign]
            http.request, verify=s.verify, timeout=s.timeout
        )
        common: dict[str, Any] = {
            "authority": s.authority,
            "token_cache": self._cache,
            "http_client": http,
            "instance_discovery": False,  # module docstring
        }
        try:
            if s.mode == "app":
                self._app = msal.ConfidentialClientApplication(
                    s.client_id, client_credential=s.credential, **common
                )
            else:
                self._app = msal.PublicClientApplication(s.client_id, **common)
        except requests.exceptions.SSLError as exc:
            raise spi.ConnectorError(
                f"TLS to {s.authority} failed: {exc}; set ssl_ca_file for a private CA"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise spi.TransientError(f"cannot reach {s.authority}: {exc}") from exc
        except ValueError as exc:  # msal: OpenID metadata unreadable (unknown tenant, bad URL)
            raise GraphAuthError(
                f"authority {s.authority} refused: {str(exc)[:300]}",
                fix="check tenant_id and authority_url",
            ) from exc
        return self._app

    def _call(self, op: Callable[[Any], Any]) -> dict[str, Any]:
        try:
            result = op(self._build())
        except msal.exceptions.MsalServiceError as exc:  # msal raises on 5xx token answers
            raise spi.TransientError(f"Microsoft Entra failed: {exc}") from exc
        except requests.exceptions.SSLError as exc:
            raise spi.ConnectorError(
                f"TLS to {self.settings.authority} failed: {exc}; set ssl_ca_file"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise spi.TransientError(f"cannot reach {self.settings.authority}: {exc}") from exc
        return result if isinstance(result, dict) else {}

    def token(self) -> str:
        """A valid access token.

        Raises GraphAuthError (refused, or not authorised yet in device mode),
        TransientError (Entra unreachable or busy), ConnectorError (TLS).
        """
        with self._lock:
            if self.settings.mode == "app":
                result = self._call(lambda app: app.acquire_token_for_client(self.scopes))
            else:
                result = self._silent(force=False)
            if "access_token" not in result:
                raise explain(result)
            self._save()
            return str(result["access_token"])

    def _silent(self, force: bool) -> dict[str, Any]:
        app = self._build()
        accounts = app.get_accounts()
        if not accounts:
            raise GraphAuthError(
                f"mailbox {self.mailbox!r} is not authorised yet",
                error="no_account",
                fix=f"run `mailmanager auth {self.mailbox}` and sign in with the device code",
            )
        result = self._call(
            lambda a: a.acquire_token_silent_with_error(
                self.scopes, accounts[0], force_refresh=force
            )
        )
        if not result:  # msal: no refresh token usable
            raise GraphAuthError(
                "the saved sign-in has no usable refresh token",
                error="no_refresh_token",
                fix=f"run `mailmanager auth {self.mailbox}` again",
            )
        return result

    def invalidate(self) -> None:
        """Forget cached access tokens (Graph said 401): the next `token()` asks Entra again."""
        with self._lock:
            if self._app is None:
                return
            if self.settings.mode == "app":
                cache = self._cache
                for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(item)
            else:
                result = self._silent(force=True)
                if "access_token" not in result:
                    raise explain(result)
                self._save()

    def _save(self) -> None:
        if self.settings.mode != "device" or self.store is None or self._cache is None:
            return
        if self._cache.has_state_changed:
            self.store.save(CACHE_KEY, self._cache.serialize())
            self._cache.has_state_changed = False

    def device_flow(self, say: Callable[[str], None]) -> str:
        """Run the device code flow; return the signed-in username. See `Authorizable`.

        Raises GraphAuthError (refused, declined, expired), TransientError.
        """
        with self._lock:
            flow = self._call(lambda app: app.initiate_device_flow(scopes=self.scopes))
            if "user_code" not in flow:
                raise explain(flow)
            say(str(flow.get("message") or ""))
            say(f"(open {flow.get('verification_uri')} and enter {flow['user_code']})")
            result = self._call(lambda app: app.acquire_token_by_device_flow(flow))
            if "access_token" not in result:
                if result.get("error") in ("authorization_declined", "expired_token"):
                    raise GraphAuthError(
                        f"device code sign-in failed: {result.get('error')}",
                        error=str(result.get("error")),
                        fix=f"run `mailmanager auth {self.mailbox}` again and sign in within "
                        "15 minutes",
                    )
                raise explain(result)
            self._save()
            claims = result.get("id_token_claims") or {}
            return str(claims.get("preferred_username") or claims.get("oid") or "")
