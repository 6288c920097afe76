"""Shared fixtures: the real-mail corpus, databases (SQLite and PostgreSQL), config files.

Database tests run once per backend: SQLite always, PostgreSQL when it answers on
127.0.0.1:5432 (database `test`, trust auth; override with MAILMANAGER_TEST_PG). Without
PostgreSQL the PostgreSQL half skips on a user's machine, and fails when CI is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
PG_ADMIN_URL = os.environ.get(
    "MAILMANAGER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = bool(os.environ.get("CI"))
# `.ci/run` runs the date-sensitive modules again at five frozen instants, with libfaketime
# preloaded into the test process itself (FAKETIME set); the main run has no FAKETIME.
UNDER_FAKETIME = "FAKETIME" in os.environ


def examples(full: int) -> int:
    """How many examples a property test draws: `full` in the main run; a tenth (at least
    20) in the faketime sweep, where it runs five more times under clocks that cannot change
    what it compares (its inputs are generated, not read from the clock)."""
    return max(full // 10, 20) if UNDER_FAKETIME else full


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is absent ({CORPUS}); corpus tests need it")
    return CORPUS


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("dbtemplate") / "template.db"
    engine = store.make_engine(f"sqlite:///{path}")
    store.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@contextlib.contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped at the end; skips the test when PostgreSQL
    is unreachable (fails it in CI)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("select 1")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A private PostgreSQL database for this test session, migrated once."""
    with new_pg_database("mm_test") as url:
        engine = store.make_engine(url)
        store.upgrade(engine)
        engine.dispose()
        yield url


def _truncate_pg(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in models.Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        conn.exec_driver_sql("INSERT INTO crm_generation (id, token) VALUES (1, 0)")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A database URL with the current schema and no rows, once per backend."""
    if request.param == "sqlite":
        target = tmp_path / "mailmanager.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = store.make_engine(db_url)
    yield store.session_factory(engine)
    engine.dispose()


ConfigWriter = Callable[..., Path]


def config_text(db_url: str, mailboxes: str, extra: str = "") -> str:
    """The text of the test configuration (users alice and bob) over `db_url`, with the
    `mailboxes` TOML and `extra` appended (both dedented)."""
    text = textwrap.dedent(
        f"""
        [database]
        url = "{db_url}"
        [organization]
        domains = ["example.com"]
        [[users]]
        email = "alice@example.com"
        name = "Alice Martin"
        locale = "fr"
        timezone = "Europe/Paris"
        [[users]]
        email = "bob@example.com"
        name = "Bob Smith"
        locale = "en"
        timezone = "Europe/London"
        holiday_country = "GB"
        """
    )
    return text + textwrap.dedent(mailboxes) + textwrap.dedent(extra)


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Write a config file: `write_config(db_url, mailboxes_toml, extra="")` → its path."""

    def write(db_url: str, mailboxes: str, extra: str = "", name: str = "mm.toml") -> Path:
        path = tmp_path / name
        path.write_text(config_text(db_url, mailboxes, extra))
        return path

    return write
