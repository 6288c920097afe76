"""`mailmanager webhooks ...` as a subprocess against a real database and a real receiver:
add (secret printed once), list, test, deliver, deliveries, redeliver refused for a
delivered one, a refused private target, `secrets rotate` re-encrypting the signing secret
(delivery still verifies under the new key alone), remove."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mailmanager.db import tokens
from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter
from tests.integration.webhook_support import Receiver

ALLOW = '\n[webhooks]\nallow_private = ["127.0.0.0/8"]\n'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_webhooks_cli_round_trip(
    db_url: str, write_config: ConfigWriter, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tokens.new_key()
    monkeypatch.setenv(tokens.ENV_KEY, old)
    path = write_config(db_url, "", ALLOW)
    refused = cli("webhooks", "add", "https://10.2.3.4/x", "--event", "reminder.due",
                  config=path, check=False)  # fmt: skip
    assert refused.returncode == 2 and "refused" in refused.stderr
    added = cli("webhooks", "add", receiver.url, "--event", "reminder.due", config=path)
    first, secret = added.stdout.splitlines()[:2]
    assert first.startswith("webhook 1:") and secret.startswith("whsec_")
    receiver.secret = secret
    [listed] = cli_json("webhooks", "list", config=path)
    assert listed["url"] == receiver.url and secret not in json.dumps(listed)
    queued = cli("webhooks", "test", "1", config=path).stdout.split()[-1]
    new = tokens.new_key()  # rotate: the new key first, then only the new key
    monkeypatch.setenv(tokens.ENV_KEY, f"{new},{old}")
    assert "re-encrypted 1 token(s)" in cli("secrets", "rotate", config=path).stdout
    monkeypatch.setenv(tokens.ENV_KEY, new)
    assert cli("webhooks", "deliver", config=path).stdout.startswith("delivered 1,")
    assert receiver.snapshot() == {queued: 1} and receiver.bad_signatures == 0
    [row] = cli_json("webhooks", "deliveries", config=path)
    assert (row["status"], row["event_type"], row["last_status_code"]) == (
        "delivered", "webhook.test", 204,
    )  # fmt: skip
    again = cli("webhooks", "redeliver", str(row["id"]), config=path, check=False)
    assert again.returncode == 1 and "only a dead one" in again.stderr
    assert cli("webhooks", "remove", "1", config=path).stdout.strip() == "removed webhook 1"
    assert cli_json("webhooks", "list", config=path) == []
    assert cli("webhooks", "remove", "1", config=path, check=False).returncode == 1
