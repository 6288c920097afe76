"""The Exchange (EWS) connector: `check()` diagnostics, TLS with a private CA, OAuth client
credentials (token expiry mid-sync), the sync engine on a real database, and the
`mailmanager mailbox test` command, all against the loopback EWS fake."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.exchange.connector import ExchangeConnector
from mailmanager import config, registry, spi
from mailmanager.db import models
from mailmanager.sync import engine as sync
from mailmanager.testing.dovecot import make_self_signed_cert
from mailmanager.testing.fakes.ews_server import EwsServer
from tests.conftest import ConfigWriter
from tests.mailgen import make

EMAIL = "alice@corp.example"
REPO = Path(__file__).resolve().parents[2]


def msg(n: int) -> bytes:
    return make("client@acme.fr", EMAIL, f"Devis {n}", f"Bonjour {n}\n", msgid=f"d{n}@acme.fr")


def build(server: EwsServer, **overrides: object) -> ExchangeConnector:
    values = {o.name: o.default for o in ExchangeConnector.options}
    values.update(email=EMAIL, service_endpoint=server.url, auth_type="basic",
                  username="corp\\alice", password="secret", version="15.1.2.3")  # fmt: skip
    values.update(overrides)
    conn = ExchangeConnector(spi.ConnectorConfig("alice", values))
    conn.retry_wait = 0.01
    return conn


def steps(conn: ExchangeConnector) -> dict[str, spi.CheckStep]:
    try:
        return {s.step: s for s in conn.check()}
    finally:
        conn.close()


def fetch_all(conn: ExchangeConnector) -> list[bytes]:
    out = []
    for folder in conn.list_folders():
        cursor = None
        while True:
            batch = conn.fetch_changes(folder, cursor, 50)
            out += [m.raw for m in batch.messages]
            cursor = batch.cursor
            if not batch.more:
                break
    return out


@pytest.fixture
def basic() -> Iterator[EwsServer]:
    with EwsServer(auth="basic", username="corp\\alice", password="secret") as server:
        server.add_mailbox(EMAIL).append("inbox", msg(1))
        yield server


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("ews-tls"))


@pytest.fixture
def tls(cert: tuple[Path, Path]) -> Iterator[EwsServer]:
    with EwsServer(auth="bearer", tls=cert) as server:
        server.add_mailbox(EMAIL).append("inbox", msg(1))
        yield server


def oauth(server: EwsServer, ca: Path, **overrides: object) -> ExchangeConnector:
    values: dict[str, object] = dict(
        auth_type="oauth", client_id="app-id", client_secret="app-secret",
        oauth_token_url=server.token_url, ssl_ca_file=str(ca), username=None, password=None,
    )  # fmt: skip
    return build(server, **{**values, **overrides})


# ------------------------------------------------------------------------------ check()
def test_healthy_check_reports_every_step(basic: EwsServer) -> None:
    got = steps(build(basic))
    assert list(got) == ["endpoint", "reach", "tls", "login", "folders", "sync"]
    assert all(s.ok for s in got.values())
    assert "Exchange build 15.1.2.3" in got["login"].detail
    assert "inbox -> Inbox" in got["folders"].detail and "1 change(s)" in got["sync"].detail


def test_check_wrong_password(basic: EwsServer) -> None:
    got = steps(build(basic, password="nope"))
    assert not got["login"].ok and "folders" not in got
    assert "check username (DOMAIN\\user or UPN) and password" in got["login"].detail
    assert "the server offers Basic, Negotiate, NTLM" in got["login"].detail


def test_check_names_the_auth_type_the_server_wants() -> None:
    with EwsServer(auth="ntlm") as server:  # IIS with Windows authentication only
        got = steps(build(server))
    assert 'offers Negotiate, NTLM, not basic: set auth_type = "ntlm"' in got["login"].detail


def test_check_throttled(basic: EwsServer) -> None:
    basic.fail("busy", times=1, operation="GetFolder", back_off_ms=297_749)
    got = steps(build(basic))
    assert not got["login"].ok and "asks to wait 298 s" in got["login"].detail


def test_check_mailbox_access_refused(basic: EwsServer) -> None:
    basic.mailboxes[EMAIL].denied = True
    got = steps(build(basic))
    assert not got["login"].ok and "full access on alice@corp.example" in got["login"].detail


def test_check_nothing_to_sync(basic: EwsServer) -> None:
    got = steps(build(basic, folders=["Projects/*"]))
    assert not got["folders"].ok and "Projects/* -> (none)" in got["folders"].detail


def test_check_unreachable_endpoint(basic: EwsServer) -> None:
    port = basic.httpd.server_address[1]
    basic.stop()
    got = steps(build(basic))
    assert not got["reach"].ok and f"127.0.0.1:{port}" in got["reach"].detail


# ------------------------------------------------------------------------------ TLS
def test_private_ca_needs_ssl_ca_file(tls: EwsServer, cert: tuple[Path, Path]) -> None:
    tls.auth = "basic"
    refused = build(tls)
    got = steps(refused)
    assert not got["tls"].ok and "self-signed certificate" in got["tls"].detail
    assert "ssl_ca_file" in got["tls"].detail
    untrusted = build(tls)
    with pytest.raises(spi.ConnectorError, match="TLS failure") as err:
        untrusted.list_folders()
    assert not isinstance(err.value, spi.TransientError)  # retrying would not help
    trusted = build(tls, ssl_ca_file=str(cert[0]))  # while the refused one is still open
    assert fetch_all(trusted) == [msg(1)]
    assert "certificate verified: commonName=localhost" in steps(trusted)["tls"].detail
    untrusted.close()


# ------------------------------------------------------------------------------ OAuth
def test_oauth_client_credentials_and_token_expiry(tls: EwsServer, cert: tuple[Path, Path]) -> None:
    conn = oauth(tls, cert[0])
    inbox = next(f for f in conn.list_folders() if f.role is spi.FolderRole.INBOX)
    assert tls.token_requests == 1
    first = conn.fetch_changes(inbox, None, 10)
    tls.mailboxes[EMAIL].append("inbox", msg(2))
    tls.expire_tokens()  # the server stops honouring the token mid-sync
    second = conn.fetch_changes(inbox, first.cursor, 10)
    assert [m.raw for m in [*first.messages, *second.messages]] == [msg(1), msg(2)]
    assert tls.token_requests >= 2
    conn.close()


def test_oauth_token_lifetime_running_out(tls: EwsServer, cert: tuple[Path, Path]) -> None:
    tls.token_lifetime = 1  # oauthlib may see it expire first, or the server refuses it
    conn = oauth(tls, cert[0])
    folders = conn.list_folders()
    time.sleep(1.2)
    assert fetch_all(conn) == [msg(1)] and len(folders) == 2
    assert tls.token_requests >= 2
    conn.close()


def test_oauth_failures_are_diagnosed(tls: EwsServer, cert: tuple[Path, Path]) -> None:
    with pytest.raises(spi.AuthError, match="invalid_client"):
        oauth(tls, cert[0], client_secret="wrong").list_folders()
    login = steps(oauth(tls, cert[0], client_secret="wrong"))["login"]
    assert "check client_id, client_secret and tenant_id" in login.detail
    tls.token_error = ("invalid_grant", "AADSTS65001: The user or administrator has not "
                       "consented to use the application.")  # fmt: skip
    assert "must grant consent" in steps(oauth(tls, cert[0]))["login"].detail
    tls.token_error = None
    tls.honour_tokens = False
    login = steps(oauth(tls, cert[0]))["login"]
    assert not login.ok and "full_access_as_app" in login.detail


# ------------------------------------------------------------------------------ sync engine
@pytest.fixture
def engine_cfg(
    basic: EwsServer, db_url: str, write_config: ConfigWriter, monkeypatch: pytest.MonkeyPatch
) -> Iterator[config.Config]:
    registry.register("exchange", ExchangeConnector)
    monkeypatch.setenv("ALICE_EWS_PASSWORD", "secret")
    path = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "exchange"
        owner = "alice@example.com"
        email = "{EMAIL}"
        service_endpoint = "{basic.url}"
        auth_type = "basic"
        username = "corp\\\\alice"
        password_env = "ALICE_EWS_PASSWORD"
        version = "15.1.2.3"
        [sync]
        batch_size = 2
        parse_workers = 0
        """,
    )
    yield config.load(path)
    registry.unregister("exchange")


def locations(factory: sessionmaker[Session]) -> set[str]:
    with factory() as s:
        return set(s.scalars(sa.select(models.MessageLocation.provider_id)))


def test_sync_engine_full_incremental_and_expired_state(
    basic: EwsServer, engine_cfg: config.Config, factory: sessionmaker[Session]
) -> None:
    box = basic.mailboxes[EMAIL]
    ids = [next(iter(box.folder("inbox").items))]
    ids += [box.append("inbox", msg(n)) for n in (2, 3, 4)]
    ids.append(
        box.append(
            "sentitems",
            make(
                EMAIL,
                "client@acme.fr",
                "Re: Devis 2",
                "Ok\n",
                msgid="r2@corp.example",
                reply_to="d2@acme.fr",
            ),
        )
    )
    report = sync.Syncer(engine_cfg, factory).sync("alice")
    assert report.status == "ok" and report.total("new_messages") == 5
    assert locations(factory) == set(ids)
    box.delete(ids[1])
    box.set_props(ids[2], is_read=True)
    report = sync.Syncer(engine_cfg, factory).sync("alice")
    assert report.status == "ok" and report.total("new_messages") == 0
    assert locations(factory) == set(ids) - {ids[1]}
    box.reset_folder("inbox")  # ErrorInvalidSyncStateData: the engine rescans the folder
    box.delete(ids[3])
    report = sync.Syncer(engine_cfg, factory).sync("alice")
    assert report.status == "ok" and locations(factory) == set(ids) - {ids[1], ids[3]}
    with factory() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.Message)) == 5


# ------------------------------------------------------------------------------ CLI
def mailbox_test(cfg_path: Path, env_password: str) -> subprocess.CompletedProcess[str]:
    """`mailmanager mailbox test alice` with the class registered as its entry point would be."""
    shim = textwrap.dedent("""
        import sys
        from connectors.exchange import ExchangeConnector
        from mailmanager import registry
        from mailmanager.cli import app as cli
        registry.register("exchange", ExchangeConnector)
        sys.argv = ["mailmanager", *sys.argv[1:]]
        cli.run()
        """)  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ALICE_EWS_PASSWORD": env_password}
    return subprocess.run(
        [sys.executable, "-c", shim, "--config", str(cfg_path), "mailbox", "test", "alice"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip


def test_cli_mailbox_test(basic: EwsServer, db_url: str, write_config: ConfigWriter) -> None:
    path = write_config(
        db_url,
        f"""
        [[mailboxes]]
        name = "alice"
        connector = "exchange"
        owner = "alice@example.com"
        email = "{EMAIL}"
        service_endpoint = "{basic.url}"
        auth_type = "basic"
        username = "corp\\\\alice"
        password_env = "ALICE_EWS_PASSWORD"
        version = "15.1.2.3"
        """,
    )
    good = mailbox_test(path, "secret")
    assert good.returncode == 0, good.stderr
    assert "[ok  ] login: signed in as 'corp\\\\alice' (basic)" in good.stdout
    bad = mailbox_test(path, "wrong")
    assert bad.returncode == 1 and "[FAIL] login: credentials rejected" in bad.stdout
