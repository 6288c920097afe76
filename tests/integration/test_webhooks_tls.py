"""Webhook delivery over TLS to real HTTPS receivers on 127.0.0.1, named "localhost": the
connection goes to the address checked against SSRF, the certificate is verified for the
name in the URL (SNI and hostname), and a receiver whose certificate does not verify gets
nothing, not even the request line. `[webhooks] ssl_ca_file` adds an internal authority."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.notify import webhooks as delivery
from mailmanager.testing.dovecot import make_self_signed_cert
from tests.integration.test_webhooks import (  # noqa: F401 (fixtures)
    Clock,
    _emit,
    _rows,
    _subscribe,
    make_cfg,
    receivers,
    secret_key,
)
from tests.integration.webhook_support import Receiver


def _cert_for(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (and key) for DNS name `name` alone."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "3", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_a_receiver_whose_certificate_does_not_verify_gets_nothing(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],  # noqa: F811
    receivers: list[Receiver], tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    cfg = make_cfg()
    receiver = Receiver(tls=make_self_signed_cert(tmp_path)).start()
    receivers.append(receiver)
    _subscribe(factory, cfg, receiver, ["reminder.due"])
    _emit(factory, 1)
    report = delivery.deliver(cfg, factory, Clock())
    [row] = _rows(factory)
    assert report.retried == [row.id] and report.delivered == []
    assert row.status == "pending" and row.last_status_code is None
    assert row.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in row.last_error
    assert receiver.attempts == {}  # no request was sent on the unverified connection


def test_a_receiver_signed_by_the_configured_authority_gets_each_event_once(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],  # noqa: F811
    receivers: list[Receiver], tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    cert, key = make_self_signed_cert(tmp_path)
    cfg = make_cfg(extra=f'ssl_ca_file = "{cert}"')
    receiver = Receiver(tls=(cert, key)).start()
    receivers.append(receiver)
    assert receiver.url.startswith("https://localhost:")
    _subscribe(factory, cfg, receiver, ["reminder.due"])
    ids = _emit(factory, 3)
    report = delivery.deliver(cfg, factory, Clock())
    assert len(report.delivered) == 3 and report.retried == []
    assert receiver.snapshot() == {i: 1 for i in ids}  # signed (checked), each once
    assert receiver.bad_signatures == 0
    assert all(r.status == "delivered" and r.last_status_code == 204 for r in _rows(factory))


def test_a_certificate_for_another_name_is_refused_even_from_a_trusted_authority(
    factory: sessionmaker[Session], make_cfg: Callable[..., config.Config],  # noqa: F811
    receivers: list[Receiver], tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    cert, key = _cert_for(tmp_path, "elsewhere.test")
    cfg = make_cfg(extra=f'ssl_ca_file = "{cert}"')
    receiver = Receiver(tls=(cert, key)).start()  # at https://localhost:...
    receivers.append(receiver)
    _subscribe(factory, cfg, receiver, ["reminder.due"])
    _emit(factory, 1)
    report = delivery.deliver(cfg, factory, Clock())
    [row] = _rows(factory)
    assert report.delivered == [] and report.retried == [row.id]
    assert row.last_error is not None and "localhost" in row.last_error, row.last_error
    assert receiver.attempts == {}


def test_an_unreadable_authority_file_is_a_configuration_error(
    make_cfg: Callable[..., config.Config], tmp_path: Path  # noqa: F811
) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    for path in (tmp_path / "missing.pem", junk):
        with pytest.raises(config.ConfigFileError) as caught:
            make_cfg(extra=f'ssl_ca_file = "{path}"')
        text = str(caught.value)
        assert "ssl_ca_file" in text and "cannot be read as certificates" in text, text
