"""Graph connector authentication against the loopback Entra + Graph fake: client secret,
certificate assertion, device code flow with a token store, and `check()` / `mailmanager
mailbox test` naming each failure (bad secret, unknown app or tenant, consent, missing
permission, RBAC scope, no mailbox, throttling)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from connectors.graph.connector import GraphConnector
from mailmanager import spi
from mailmanager.testing.fakes.graph_server import make_client_certificate
from tests.connectors.graph_harness import GraphHarness
from tests.mailgen import make

REPO = Path(__file__).resolve().parents[2]


class DictStore:
    """An `spi.TokenStore` in a dict, as the core's encrypted store behaves."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.saves = 0

    def load(self, key: str) -> str | None:
        return self.data.get(key)

    def save(self, key: str, value: str) -> None:
        self.data[key] = value
        self.saves += 1


@pytest.fixture
def h(tmp_path: Path) -> Iterator[GraphHarness]:
    harness = GraphHarness(tmp_path)
    harness.fake.clear_faults()
    inbox = harness.add_folder("INBOX", spi.FolderRole.INBOX)
    harness.append(inbox, make("a@acme.fr", "alice@example.com", "Devis", msgid="d1@acme.fr"))
    yield harness
    harness.close()
    harness.fake.clear_faults()


def steps(conn: spi.Connector) -> dict[str, spi.CheckStep]:
    try:
        return {s.step: s for s in conn.check()}
    finally:
        conn.close()


def failed(conn: spi.Connector) -> spi.CheckStep:
    bad = [s for s in steps(conn).values() if not s.ok]
    assert len(bad) == 1, bad
    return bad[0]


def fetch_all(conn: spi.Connector) -> int:
    inbox = next(f for f in conn.list_folders() if f.role is spi.FolderRole.INBOX)
    return len(conn.fetch_changes(inbox, None, 100).messages)


def test_healthy_check_lists_every_step(h: GraphHarness) -> None:
    got = steps(h.connector())
    assert list(got) == ["token", "mailbox", "read", "delta", "folders"]
    assert all(s.ok for s in got.values())
    assert "Mail.Read" in got["token"].detail and "holds 1 messages" in got["mailbox"].detail


@pytest.mark.parametrize(
    ("setup", "step", "words"),
    [
        ("bad_secret", "token", ["AADSTS7000215", "Value, not its Secret ID"]),
        ("expired_secret", "token", ["AADSTS7000222", "expired"]),
        ("unknown_app", "token", ["AADSTS700016", "check client_id and tenant_id"]),
        ("unknown_tenant", "token", ["tenant", "check tenant_id"]),
        ("no_consent", "token", ["no Mail.Read role", "grant admin consent"]),
        ("read_basic", "token", ["Mail.ReadBasic.All", "cannot read message content"]),
        ("rbac", "mailbox", ["ErrorAccessDenied", "RBAC"]),
        ("no_mailbox", "mailbox", ["ErrorInvalidUser", "no Exchange Online mailbox"]),
        ("throttled", "mailbox", ["throttled", "retry after 30 s"]),
        ("entra_down", "token", ["Entra", "503", "retry later"]),
    ],
)
def test_check_names_the_problem_and_its_fix(
    h: GraphHarness, setup: str, step: str, words: list[str]
) -> None:
    overrides: dict[str, object] = {}
    if setup == "bad_secret":
        overrides["client_secret"] = "wrong"
    elif setup == "expired_secret":
        h.app.secret_expired = True
    elif setup == "unknown_app":
        overrides["client_id"] = "00000000-0000-0000-0000-000000000000"
    elif setup == "unknown_tenant":
        overrides["tenant_id"] = "nowhere.example"
    elif setup == "no_consent":
        h.app.consented = False
    elif setup == "read_basic":
        h.app.roles = {"Mail.ReadBasic.All"}
    elif setup == "rbac":
        h.app.mailboxes = {"someone-else@contoso.example"}
    elif setup == "no_mailbox":
        overrides["user"] = "nobody@contoso.example"
    elif setup == "throttled":
        h.fake.fail("folders", 429, retry_after=30, code="ApplicationThrottled")
    elif setup == "entra_down":
        h.fake.fail("token", 503, times=5)
    bad = failed(h._build(**overrides))
    assert bad.step == step
    for word in words:
        assert word in bad.detail, bad.detail


def test_certificate_credentials_sign_a_client_assertion(h: GraphHarness, tmp_path: Path) -> None:
    pem, thumb, cert = make_client_certificate(tmp_path)
    h.app.certificates[thumb] = cert
    # The thumbprint is read from the PEM when not given, as the portal shows it.
    conn = h._build(client_secret=None, certificate_file=str(pem))
    assert fetch_all(conn) == 1
    other, _, _ = make_client_certificate(tmp_path, "stranger")
    bad = failed(h._build(client_secret=None, certificate_file=str(other)))
    assert bad.step == "token" and "AADSTS700027" in bad.detail
    assert "not registered" in bad.detail
    with pytest.raises(spi.ConfigError):
        h._build(client_secret=None, certificate_file=str(tmp_path / "missing.pem"))


def test_device_code_flow_saves_tokens_and_later_runs_refresh(h: GraphHarness) -> None:
    h.app.public_client = True
    store = DictStore()
    said: list[str] = []
    device = {"auth": "device", "tenant_id": None, "client_secret": None, "user": None}
    conn = GraphConnector(spi.ConnectorConfig("alice-m365", h.options(**device), token_store=store))
    with pytest.raises(spi.AuthError, match="mailmanager auth alice-m365"):
        conn.list_folders()  # not authorised yet: the error says what to run
    h.fake.device_user = h.upn
    conn.authorize(said.append)
    text = "\n".join(said)
    assert f"{h.fake.authority_url}/devicelogin" in text and "enter the code" in text
    assert "signed in as " + h.upn in text and "msal_token_cache" in store.data
    conn.close()
    # A later run (another process): tokens come from the store, mail from /me.
    again = GraphConnector(
        spi.ConnectorConfig("alice-m365", h.options(**device), token_store=store)
    )
    assert fetch_all(again) == 1
    token_calls = h.fake.calls["token"]
    h.fake.expire_tokens()  # access token dead: the refresh token gets a new one
    assert fetch_all(again) == 1 and h.fake.calls["token"] == token_calls + 1
    assert steps(again)["token"].ok
    h.fake.expire_tokens()
    h.fake.revoke_refresh_tokens()
    third = GraphConnector(
        spi.ConnectorConfig("alice-m365", h.options(**device), token_store=store)
    )
    with pytest.raises(spi.AuthError, match="AADSTS700082"):
        fetch_all(third)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("declined", "authorization_declined"),
        ("no_consent", "AADSTS65001"),
        ("not_public", "AADSTS7000218"),
    ],
)
def test_device_code_flow_failures_are_auth_errors(h: GraphHarness, setup: str, words: str) -> None:
    h.app.public_client = setup != "not_public"
    h.app.consented = setup != "no_consent"
    h.fake.device_decline = setup == "declined"
    conn = h._build(auth="device", tenant_id=None, client_secret=None, user=None)
    assert isinstance(conn, GraphConnector)
    with pytest.raises(spi.AuthError, match=words) as caught:
        conn.authorize(lambda _: None)
    if setup == "no_consent":
        assert "an admin must grant consent" in str(caught.value)


def test_authorize_in_app_mode_proves_the_credentials(h: GraphHarness) -> None:
    said: list[str] = []
    conn = h._build()
    assert isinstance(conn, GraphConnector)
    conn.authorize(said.append)
    assert "no sign-in needed" in said[0]


def _cli(
    config: Path, *args: str, secret: str, **env_extra: str
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, with the graph class registered (no entry point yet)."""
    code = textwrap.dedent("""
        import sys
        from connectors.graph import GraphConnector
        from mailmanager import registry
        registry.register("graph", GraphConnector)
        from mailmanager.cli.app import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "GRAPH_SECRET": secret, "PYTHONPATH": str(REPO), **env_extra}
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
    )  # fmt: skip


def _config(h: GraphHarness, tmp_path: Path, credentials: str) -> Path:
    config = tmp_path / "mm.toml"
    config.write_text(textwrap.dedent(f"""
        [database]
        url = "sqlite:///{tmp_path / 'mm.db'}"
        [[users]]
        email = "alice@example.com"
        name = "Alice"
        [[mailboxes]]
        name = "alice-m365"
        connector = "graph"
        owner = "alice@example.com"
        client_id = "{h.app.client_id}"
        authority_url = "{h.fake.authority_url}"
        graph_url = "{h.fake.graph_url}"
        ssl_ca_file = "{h.fake.ca_file}"
        """) + textwrap.dedent(credentials))  # fmt: skip
    return config


def test_mailbox_test_command_reports_each_step(h: GraphHarness, tmp_path: Path) -> None:
    config = _config(h, tmp_path, f"""
        tenant_id = "{h.fake.tenant_id}"
        client_secret_env = "GRAPH_SECRET"
        user = "{h.upn}"
        """)  # fmt: skip
    assert _cli(config, "db", "upgrade", secret="").returncode == 0
    ok = _cli(config, "mailbox", "test", "alice-m365", secret=h.secret)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[ok  ] token" in ok.stdout and "[ok  ] folders: Inbox (inbox)" in ok.stdout
    bad = _cli(config, "mailbox", "test", "alice-m365", secret="Zq8~not-the-secret")
    assert bad.returncode == 1
    assert "[FAIL] token" in bad.stdout and "AADSTS7000215" in bad.stdout
    assert "Zq8~not" not in bad.stdout + bad.stderr  # the secret never shows


def test_auth_command_then_sync_with_the_encrypted_token_store(
    h: GraphHarness, tmp_path: Path
) -> None:
    h.app.public_client = True
    h.fake.device_user = h.upn
    config = _config(h, tmp_path, 'auth = "device"\n')
    key = {"MAILMANAGER_SECRET_KEY": Fernet.generate_key().decode()}
    assert _cli(config, "db", "upgrade", secret="", **key).returncode == 0
    auth = _cli(config, "auth", "alice-m365", secret="", **key)
    assert auth.returncode == 0, auth.stdout + auth.stderr
    assert "/devicelogin" in auth.stdout and f"signed in as {h.upn}" in auth.stdout
    synced = _cli(config, "sync", "--json", secret="", **key)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert json.loads(synced.stdout)["totals"]["messages"] == 1
    rows = sqlite3.connect(tmp_path / "mm.db").execute("select ciphertext from oauth_tokens")
    stored = b"".join(row[0] for row in rows)
    assert stored and not any(rt.encode() in stored for rt in h.fake.refresh_tokens)
