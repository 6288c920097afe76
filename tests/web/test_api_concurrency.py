"""Concurrent API requests on SQLite never fail with "database is locked" (a 500): writes
take the write lock first and wait their turn, a token's last use is recorded in a
transaction of its own, and content reads are audited beside the read. schemathesis found
the first (two workers creating opportunities at once); each part failed before its fix."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from mailmanager.db import models
from tests.web.apisupport import api, make_token
from tests.web.support import WebServer

ROUNDS = 12


def test_concurrent_writes_reads_and_token_uses_on_sqlite(
    start_web_server: Callable[..., WebServer],
) -> None:
    server = start_web_server(edit=lambda text: text + "\n[api]\nrequests_per_minute = 100000\n")
    users = ("alice@example.com", "bob@example.com", "carol@example.com")
    tokens = [make_token(server, user, "--scope", "read", "--scope", "write")[1] for user in users]

    def work(n: int) -> list[int]:
        with api(server, tokens[n % len(tokens)]) as client:
            statuses = []
            for i in range(ROUNDS):
                made = client.post("/opportunities", json={"title": f"Deal {n}-{i}"})
                statuses.append(made.status_code)
                if made.status_code == 201:
                    opp = made.json()["id"]
                    statuses.append(
                        client.patch(f"/opportunities/{opp}", json={"stage": "won"}).status_code
                    )
                statuses.append(client.get("/reminders").status_code)
                statuses.append(client.get("/threads").status_code)
            return statuses

    with ThreadPoolExecutor(6) as pool:
        statuses = [s for part in pool.map(work, range(6)) for s in part]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.count(201) == 6 * ROUNDS and set(statuses) <= {200, 201}
    with server.session() as s:
        used = s.scalars(sa.select(models.ApiToken.last_used_at)).all()
    assert len(used) == 3 and all(u is not None for u in used)
