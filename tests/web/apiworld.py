"""A real `mailmanager web` process over `tests.recordworld` (Alice's and Bob's mailboxes,
both managed by Carol; Dave the admin; Jane of Acme writing to both; a private mail of
Alice's on no record), for the API's data-out tests, on SQLite or PostgreSQL.

`start(root, db_url, sink)` builds the world in the database (a real sync of both
mailboxes), gives each salesperson a reminder, and starts the server under the web tests'
pinned clock (`tests.web.support.NOW`). `ApiWorld.token(user, *scopes)` makes a token by
the CLI (`tests.web.apisupport.make_token`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from mailmanager.db import configrows, models, store
from tests import recordworld as rw
from tests.integration.notify_support import Sink, free_port
from tests.web.apisupport import make_token
from tests.web.support import NOW, Template, WebServer


@dataclass
class ApiWorld:
    server: WebServer
    world: rw.World
    reminders: dict[str, int]  # user email -> the id of the reminder made for them

    @property
    def ids(self) -> dict[str, int]:
        return self.world.ids

    def token(self, user: str, *scopes: str) -> str:
        args = [a for s in scopes for a in ("--scope", s)]
        return make_token(self.server, user, *args)[1]


def _web_config(world: rw.World, root: Path, sink: Sink, port: int) -> Path:
    text = world.path.read_text().replace(
        "[web]\n",
        f'[web]\nbase_url = "http://127.0.0.1:{port}"\nport = {port}\n'
        f'secret_file = "{root / "web.key"}"\nsign_in_links = "email"\n',
    )
    text += (
        f'[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\nsecurity = "none"\n'
        'from = "Mailmanager <mailmanager@example.com>"\ntimeout = 10\n'
    )
    path = root / "web.toml"
    path.write_text(text)
    return path


def _reminders(world: rw.World) -> dict[str, int]:
    """One open reminder for Alice (on her "Devis portes" thread) and one for Bob (on his
    "Catalogue 2027" thread), due a day before NOW."""
    out = {}
    with store.session_scope(world.factory) as s:
        configrows.ensure_config_rows(s, world.cfg)
        s.flush()
        for i, (user, thread) in enumerate(
            ((rw.ALICE, "thread:a1@acme.fr"), (rw.BOB, "thread:b1@acme.fr"))
        ):
            uid = s.scalars(sa.select(models.User.id).where(models.User.email == user)).one()
            row = models.Reminder(
                thread_id=world.ids[thread],
                user_id=uid,
                kind="awaiting_reply",
                cycle=900_000 + i,
                due_at=NOW - timedelta(days=1),
                status="pending",
                contact_email="jane@acme.fr",
                reason="waiting for a reply",
                waiting_since=NOW - timedelta(days=6),
                created_at=NOW - timedelta(days=1),
                updated_at=NOW - timedelta(days=1),
            )
            s.add(row)
            s.flush()
            out[user] = row.id
    return out


def start(root: Path, db_url: str, sink: Sink) -> ApiWorld:
    """The world in the (empty) database `db_url`, and a server over it."""
    root.mkdir(parents=True, exist_ok=True)
    engine = store.make_engine(db_url)
    store.upgrade(engine)
    world = rw.build(root, db_url, store.session_factory(engine))
    reminders = _reminders(world)
    engine.dispose()
    port = free_port()
    path = _web_config(world, root, sink, port)
    template = Template(root, Path(), 0, ())
    server = WebServer(root, path, f"http://127.0.0.1:{port}", sink, template).start()
    assert server.factory is not None
    world.factory = server.factory
    return ApiWorld(server, world, reminders)
