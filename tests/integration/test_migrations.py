"""The Alembic migrations build exactly the schema the models describe, and the daemon's
schema check refuses a database that is behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailmanager.db import models, searchindex, store
from mailmanager.matching import crmcache
from tests.cli.helpers import cli
from tests.conftest import ConfigWriter, new_pg_database

# the search indexes (`db.searchindex`) are not described by the models
COMPARE = {"compare_type": True, "include_name": searchindex.include_name}


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = store.make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts=COMPARE)
        diff = compare_metadata(ctx, models.Base.metadata)
    engine.dispose()
    assert diff == []
    assert store.current_revision(store.make_engine(db_url)) == store.head_revision()


def test_the_head_the_daemon_checks_is_alembics() -> None:
    assert store.head_revision() == store.HEAD


def test_a_new_database_created_at_once_equals_a_migrated_one(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    store.create_schema(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts=COMPARE)
        assert compare_metadata(ctx, models.Base.metadata) == []
    assert store.current_revision(engine) == store.HEAD
    store.check_schema(engine)
    assert store.upgrade(engine) == (store.HEAD, store.HEAD)  # nothing left to run
    engine.dispose()


@pytest.fixture
def empty_pg() -> Iterator[str]:
    with new_pg_database("mm_empty") as url:
        yield url


def test_a_new_postgresql_database_created_at_once_has_the_crm_triggers(empty_pg: str) -> None:
    engine = store.make_engine(empty_pg)
    try:
        store.create_schema(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts=COMPARE)
            assert compare_metadata(ctx, models.Base.metadata) == []
        store.check_schema(engine)
        factory = store.session_factory(engine)
        with factory() as s:
            before = crmcache.token(s)
        with factory.begin() as s:
            s.add(models.Company(name="Acme"))
            s.flush()
            s.add(models.CompanyDomain(company_id=1, domain="acme.fr"))
        with factory() as s:
            assert before is not None and crmcache.token(s) != before
    finally:
        engine.dispose()


def test_old_or_missing_schema_is_refused_with_the_command_to_run(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = store.make_engine(url)
    with engine.begin() as conn:  # a database that is not mailmanager's, or too old
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('0000')")
    with pytest.raises(store.SchemaError, match="db upgrade"):
        store.check_schema(engine)
    engine.dispose()
    cfg = write_config(url, "")
    proc = cli("status", config=cfg, check=False)
    assert proc.returncode == 3
    assert "mailmanager --config" in proc.stderr and "db upgrade" in proc.stderr
