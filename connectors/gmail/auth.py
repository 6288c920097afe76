"""Interactive OAuth consent for a Gmail mailbox (`mailmanager auth`): two flows.

- **Loopback** (default; RFC 8252 §7.3, Google "OAuth 2.0 for Mobile & Desktop Apps"): we
  listen on 127.0.0.1, print the consent URL, and the browser comes back to us with a code,
  exchanged for tokens with PKCE S256 (RFC 7636). Google retired the copy-paste "oob"
  redirect in 2022, so on a headless server the admin forwards the port
  (`ssh -L PORT:127.0.0.1:PORT server`) and opens the URL on their own machine; `auth_port`
  fixes the port in advance. `access_type=offline` and `prompt=consent` make Google return a
  refresh token every time, not only on the first consent.
- **Device** (RFC 8628): friendlier on a server, but Google's device endpoint grants a short
  list of scopes and answers `invalid_scope` for every Gmail scope
  (https://developers.google.com/identity/protocols/oauth2/limited-input-device#allowedscopes;
  googleapis/oauth2client#88). We run it when asked (for an identity provider or a future
  Google that allows it) and turn that refusal into a plain diagnosis.

Both return a `Grant`; the connector stores the refresh token. Plain HTTP (urllib): these
run once, by hand, and need nothing from the API client. Also here: reading the credential
files (OAuth client JSON, service-account key) into google-auth credentials.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from google.auth import credentials as ga_credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from mailmanager import spi

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
Credentials = ga_credentials.Credentials
_DONE_PAGE = b"<!doctype html><title>mailmanager</title><p>Consent received: close this tab."


@dataclass(frozen=True)
class OAuthClient:
    """An OAuth client as downloaded from the Cloud console (Desktop app / TV and devices)."""

    client_id: str
    client_secret: str
    auth_uri: str
    token_uri: str


def is_loopback(url: str) -> bool:
    """True when `url` points at this machine (plain http is then acceptable)."""
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_client(text: str, key: str) -> OAuthClient:
    """Read a client JSON ({"installed": {...}}, {"web": {...}} or flat).

    Raises `spi.ConfigError` (naming `key`) when it is not one.
    """
    try:
        data = json.loads(text)
        if data.get("type") == "service_account":
            raise spi.ConfigError(
                key, "this is a service-account key", "give it as service_account_file instead"
            )
        section = data.get("installed") or data.get("web") or data
        return OAuthClient(
            str(section["client_id"]),
            str(section.get("client_secret", "")),
            str(section.get("auth_uri", "https://accounts.google.com/o/oauth2/auth")),
            str(section.get("token_uri", "https://oauth2.googleapis.com/token")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise spi.ConfigError(
            key,
            f"not an OAuth client JSON ({type(exc).__name__}: {exc})",
            "download it again: Cloud console > APIs & Services > Credentials > OAuth client",
        ) from exc


def service_account_credentials(
    text: str, subject: str, scopes: Sequence[str], key: str
) -> Credentials:
    """Credentials of a service account acting for `subject` (domain-wide delegation).

    Raises `spi.ConfigError` when `text` is not a service-account key.
    """
    try:
        info = json.loads(text)
        if info.get("type") != "service_account":
            raise ValueError(f"type is {info.get('type')!r}, not 'service_account'")
        creds: Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(scopes), subject=subject
        )
        return creds
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise spi.ConfigError(
            key,
            f"not a service-account key ({exc})",
            "create a JSON key: Cloud console > IAM > Service accounts > Keys",
        ) from exc


def user_credentials_for(
    client: OAuthClient, refresh_token: str, scopes: Sequence[str]
) -> Credentials:
    """Credentials that refresh `refresh_token` at the client's token endpoint."""
    creds: Credentials = user_credentials.Credentials(  # type: ignore[no-untyped-call]
        None,
        refresh_token=refresh_token,
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_uri=client.token_uri,
        scopes=list(scopes),
    )
    return creds


def oauth_error(exc: BaseException) -> tuple[str, str]:
    """(error code, description) of a failed token request (RFC 6749 §5.2), or ("", text)."""
    args = exc.args
    if len(args) > 1 and isinstance(args[1], Mapping):
        return str(args[1].get("error", "")), str(args[1].get("error_description", ""))
    head = str(args[0]) if args else str(exc)
    code, _, desc = head.partition(":")
    return (code.strip(), desc.strip()) if " " not in code.strip() else ("", head)


@dataclass(frozen=True)
class Grant:
    """What a completed consent yields."""

    refresh_token: str
    access_token: str
    scopes: frozenset[str]


def post_form(url: str, form: dict[str, str], timeout: float) -> tuple[int, dict[str, Any]]:
    """POST a form, return (status, JSON body), error statuses included.

    Raises `spi.TransientError` when the endpoint cannot be reached or answers non-JSON.
    """
    request = urllib.request.Request(url, data=urlencode(form).encode(), method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise spi.TransientError(f"cannot reach {url}: {exc}") from exc
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise spi.TransientError(f"{url} answered HTTP {status} without JSON") from exc
    return status, data if isinstance(data, dict) else {}


def _grant(status: int, data: dict[str, Any], asked: Collection[str]) -> Grant:
    if status != 200:
        raise spi.AuthError(
            f"the token endpoint refused: {data.get('error')}: {data.get('error_description')}"
        )
    if not data.get("refresh_token"):
        raise spi.AuthError(
            "Google returned no refresh token: remove this app at "
            "https://myaccount.google.com/permissions, then run `mailmanager auth` again"
        )
    granted = str(data.get("scope") or " ".join(asked)).split()
    return Grant(str(data["refresh_token"]), str(data.get("access_token", "")), frozenset(granted))


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43-128
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


class _Catcher(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if "code" not in query and "error" not in query:
            self.send_error(404)
            return
        self.server.answer = query  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_DONE_PAGE)))
        self.end_headers()
        self.wfile.write(_DONE_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def loopback_flow(
    client: OAuthClient,
    scopes: Collection[str],
    say: Callable[[str], None],
    port: int = 0,
    timeout: float = 300,
) -> Grant:
    """Run the installed-app flow (module docstring). Raises `spi.AuthError` when consent
    is refused, times out or the code is rejected; `spi.TransientError` when unreachable."""
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(16)
    try:
        server = HTTPServer(("127.0.0.1", port), _Catcher)
    except OSError as exc:
        raise spi.AuthError(
            f"cannot listen on 127.0.0.1:{port}: {exc}; pick another auth_port"
        ) from exc
    server.answer = None  # type: ignore[attr-defined]
    server.timeout = 0.5
    redirect = f"http://127.0.0.1:{server.server_address[1]}/"
    query = {
        "client_id": client.client_id,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": " ".join(sorted(scopes)),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }
    say(f"Open this URL in a browser and allow access:\n\n  {client.auth_uri}?{urlencode(query)}\n")
    say(
        f"Waiting for Google to send the browser back to {redirect} ... On a remote server, "
        f"first run on your machine: ssh -L {server.server_address[1]}:127.0.0.1:"
        f"{server.server_address[1]} <this server>"
    )
    deadline = time.monotonic() + timeout
    try:
        while server.answer is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
            server.handle_request()
    finally:
        server.server_close()
    answer: dict[str, str] | None = server.answer  # type: ignore[attr-defined]
    if answer is None:
        raise spi.AuthError(f"no answer from the browser within {timeout:.0f} s")
    if answer.get("state") != state:
        raise spi.AuthError("the browser came back with another request's state; start again")
    if "error" in answer:
        raise spi.AuthError(f"consent refused ({answer['error']})")
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "code_verifier": verifier,
    }
    return _grant(*post_form(client.token_uri, form, 30), scopes)


def device_flow(
    client: OAuthClient,
    device_uri: str,
    scopes: Collection[str],
    say: Callable[[str], None],
    timeout: float = 300,
    sleep: Callable[[float], None] = time.sleep,
) -> Grant:
    """Run the device flow (module docstring). Raises `spi.AuthError` when refused, denied
    or expired; `spi.TransientError` when an endpoint is unreachable."""
    form = {"client_id": client.client_id, "scope": " ".join(sorted(scopes))}
    status, data = post_form(device_uri, form, 30)
    if status != 200:
        error = f"{data.get('error')}: {data.get('error_description')}"
        if data.get("error") == "invalid_scope":
            raise spi.AuthError(
                f"the device flow refused the Gmail scope ({error}); Google allows only a few "
                'scopes in that flow: set auth_flow = "loopback" and run `mailmanager auth` again'
            )
        if data.get("error") in ("invalid_client", "unauthorized_client"):
            error += '; device flow needs an OAuth client of type "TVs and Limited Input devices"'
        raise spi.AuthError(f"device authorization refused: {error}")
    url = data.get("verification_url") or data.get("verification_uri")
    say(f"On any device, open {url} and enter the code {data['user_code']}")
    interval = float(data.get("interval", 5))
    deadline = time.monotonic() + min(float(data.get("expires_in", timeout)), timeout)
    poll = {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "device_code": str(data["device_code"]),
        "grant_type": DEVICE_GRANT,
    }
    while time.monotonic() < deadline:
        sleep(interval)
        status, answer = post_form(client.token_uri, poll, 30)
        code = answer.get("error")
        if status == 200 or code not in ("authorization_pending", "slow_down"):
            if code == "access_denied":
                raise spi.AuthError("consent refused on the device page")
            if code == "expired_token":
                break
            return _grant(status, answer, scopes)
        if code == "slow_down":  # RFC 8628 §3.5: add 5 seconds to the interval
            interval += 5
    raise spi.AuthError("the device code expired before consent was given; start again")
