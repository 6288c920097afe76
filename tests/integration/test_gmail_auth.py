"""Gmail access: service account with domain-wide delegation (JWT checked by the fake),
per-user consent (loopback with PKCE, device flow), scopes, the privacy mode and check()."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailmanager import spi
from mailmanager.testing.fakes.gmail_server import METADATA, READONLY, GmailFake
from tests.integration.gmail_support import DictStore, drain, folder, gmail, msg, oauth


@pytest.fixture
def fake() -> Iterator[GmailFake]:
    server = GmailFake()
    yield server
    server.close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def steps(conn: spi.Connector) -> dict[str, tuple[bool, str]]:
    return {s.step: (s.ok, s.detail) for s in conn.check()}


def test_service_account_with_delegation_reads_the_mailbox(
    fake: GmailFake, rsa_key: rsa.RSAPrivateKey
) -> None:
    mid = fake.append(msg(1))
    key_json = fake.register_service_account(rsa_key, delegated_scopes=[READONLY])
    conn = gmail(fake, service_account=key_json, delegated_user=fake.email)
    batches, _ = drain(conn, folder(conn), None)
    assert [m.provider_id for m in batches[0].messages] == [mid]
    report = steps(conn)
    assert all(ok for ok, _ in report.values()), report
    assert "acting for alice@example.com" in report["credentials"][1]


def test_service_account_without_delegation_is_diagnosed(
    fake: GmailFake, rsa_key: rsa.RSAPrivateKey
) -> None:
    key_json = fake.register_service_account(rsa_key, delegated_scopes=[METADATA])
    conn = gmail(fake, service_account=key_json, delegated_user=fake.email)
    report = steps(conn)
    ok, detail = report["token"]
    assert not ok and "unauthorized_client" in detail and "Domain-wide delegation" in detail
    assert "1234567890" in detail and READONLY in detail  # the client id and scope to allow
    with pytest.raises(spi.AuthError, match="domain-wide delegation is not granted"):
        conn.list_folders()
    granted = fake.register_service_account(rsa_key, delegated_scopes=[READONLY])
    other = gmail(fake, service_account=granted, delegated_user="nobody@example.com")
    assert "check delegated_user" in steps(other)["token"][1]


def test_a_forged_key_is_refused(fake: GmailFake, rsa_key: rsa.RSAPrivateKey) -> None:
    key_json = fake.register_service_account(rsa_key)
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = key_json.replace(
        key_json.split('"private_key": "')[1].split('"')[0],
        fake.register_service_account(impostor).split('"private_key": "')[1].split('"')[0],
    )
    ok, detail = steps(gmail(fake, service_account=forged, delegated_user=fake.email))["token"]
    assert not ok and "Invalid JWT Signature" in detail


def test_options_are_validated_without_network(fake: GmailFake) -> None:
    with pytest.raises(spi.ConfigError, match="exactly one"):
        gmail(fake, client_secret=None)
    with pytest.raises(spi.ConfigError, match="delegated_user"):
        gmail(fake, service_account='{"type": "service_account"}')
    with pytest.raises(spi.ConfigError, match="in clear"):
        gmail(fake, api_endpoint="http://gmail.example.com/")
    report = steps(gmail(fake, client_secret='{"type": "service_account"}'))
    assert list(report) == ["credentials"] and not report["credentials"][0]
    assert "service-account key" in report["credentials"][1]
    assert fake.calls == {}


def test_check_healthy_then_throttled_then_revoked(fake: GmailFake) -> None:
    fake.append(msg(1))
    conn = gmail(fake, folders=["INBOX", "Nope"], exclude_labels=["SPAM", "Ghost"])
    report = steps(conn)
    assert [name for name in report] == ["credentials", "token", "profile", "scope", "folders"]
    assert all(ok for ok, _ in report.values()), report
    assert "1 messages" in report["profile"][1]
    assert "Nope -> (none)" in report["folders"][1] and "not found: Ghost" in report["folders"][1]
    fake.fail("/profile", 429, retry_after="30")
    ok, detail = steps(conn)["profile"]
    assert not ok and detail.startswith("throttled") and "retry after 30 s" in detail
    fake.refresh.clear()
    ok, detail = steps(conn)["token"]
    assert not ok and "mailmanager auth alice-gmail" in detail


def test_metadata_privacy_mode_hands_over_headers_only(fake: GmailFake) -> None:
    mid = fake.append(msg(1, body="Confidential pricing: 42 EUR per door.\n"))
    client_json, refresh = oauth(fake, scopes=[METADATA])
    conn = gmail(fake, client_secret=client_json, refresh_token=refresh, privacy="metadata")
    [message] = drain(conn, folder(conn), None)[0][0].messages
    assert message.provider_id == mid and message.raw.endswith(b"\r\n\r\n")
    assert b"Subject: gm 1\r\n" in message.raw and b"Message-ID: <gm-1@acme.fr>" in message.raw
    assert b"Confidential" not in message.raw and fake.calls["messages.get"] == 1
    assert all(ok for ok, _ in steps(conn).values())
    full = gmail(fake, client_secret=client_json, refresh_token=refresh)  # privacy = "full"
    ok, detail = steps(full)["scope"]
    assert not ok and "run `mailmanager auth alice-gmail` again" in detail
    with pytest.raises(spi.AuthError, match='privacy = "metadata"'):
        drain(full, folder(full), None)


def test_a_token_without_any_gmail_scope_says_which_consent_is_missing(fake: GmailFake) -> None:
    client_json, refresh = oauth(fake, scopes=["https://www.googleapis.com/auth/gmail.send"])
    conn = gmail(fake, client_secret=client_json, refresh_token=refresh)
    with pytest.raises(spi.AuthError, match=r"insufficientPermissions.*tick the Gmail box"):
        conn.list_folders()
    ok, detail = steps(conn)["scope"]
    assert not ok and "granted https://www.googleapis.com/auth/gmail.send" in detail


def _browse(url: str) -> None:
    """Act as the browser: follow Google's redirect back to the loopback listener."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert b"Consent received" in resp.read()


def _authorize_in_thread(
    conn: spi.Connector,
) -> tuple[list[str], list[BaseException], threading.Thread]:
    said: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn.authorize(said.append)  # type: ignore[attr-defined]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(200):
        if said:
            break
        time.sleep(0.02)
    return said, errors, thread


def test_loopback_consent_stores_the_refresh_token(fake: GmailFake) -> None:
    fake.append(msg(1))
    client_json, _ = oauth(fake)
    store = DictStore()
    conn = gmail(fake, store, client_secret=client_json, refresh_token=None)
    assert isinstance(conn, spi.Authorizable)
    with pytest.raises(spi.AuthError, match=r"no refresh token.*mailmanager auth"):
        conn.list_folders()
    said, errors, thread = _authorize_in_thread(conn)
    url = said[0].split()[-1]
    assert "code_challenge_method=S256" in url and "access_type=offline" in url
    _browse(url)
    thread.join(10)
    assert errors == [] and "authorized: alice@example.com (1 messages)" in said[-1]
    assert store.values["refresh_token"] in fake.refresh  # PKCE verified by the fake
    later = gmail(fake, store, client_secret=client_json, refresh_token=None)
    assert [m.raw for m in drain(later, folder(later), None)[0][0].messages] == [msg(1)]


@pytest.mark.parametrize(
    ("consent", "error"), [("deny", "consent refused"), (METADATA, "without .*gmail.readonly")]
)
def test_loopback_consent_refused_or_partial(fake: GmailFake, consent: str, error: str) -> None:
    fake.consent = consent
    client_json, _ = oauth(fake)
    store = DictStore()
    conn = gmail(fake, store, client_secret=client_json, refresh_token=None)
    said, errors, thread = _authorize_in_thread(conn)
    urllib.request.urlopen(said[0].split()[-1], timeout=10).read()
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], spi.AuthError)
    assert re.search(error, str(errors[0])) and store.values == {}


def test_device_flow_diagnoses_google_refusal_then_works_where_allowed(fake: GmailFake) -> None:
    client_json, _ = oauth(fake)
    store = DictStore()
    options: dict[str, object] = {
        "client_secret": client_json,
        "refresh_token": None,
        "auth_flow": "device",
        "device_auth_uri": fake.url + "device/code",
    }
    conn = gmail(fake, store, "alice-gmail", **options)
    with pytest.raises(spi.AuthError, match=r'invalid_scope.*auth_flow = "loopback"'):
        conn.authorize(lambda text: None)
    fake.device_allows_gmail, fake.device_interval = True, 0.05
    said, errors, thread = _authorize_in_thread(gmail(fake, store, "alice-gmail", **options))
    user_code = said[0].split()[-1]
    time.sleep(0.2)  # a few polls answered authorization_pending first
    fake.approve_device(user_code)
    thread.join(10)
    assert errors == [] and store.values["refresh_token"] in fake.refresh
    assert fake.calls["token"] >= 3


def test_service_account_needs_no_consent(fake: GmailFake, rsa_key: rsa.RSAPrivateKey) -> None:
    key_json = fake.register_service_account(rsa_key)
    said: list[str] = []
    gmail(fake, service_account=key_json, delegated_user=fake.email).authorize(said.append)
    assert "no consent to give" in said[0] and "Domain-wide delegation" in said[0]
    assert fake.calls == {}
