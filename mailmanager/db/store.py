"""Database engine, sessions, schema migrations and dialect-neutral upserts.

SQLite is the embedded default (one worker; WAL journal, foreign keys on, a busy timeout);
PostgreSQL is the production database (several workers share it). Only this module and the
coordination modules (`sync`, `daemon`, `cli`) open sessions; the rest take a Session.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import crmtriggers, linktriggers, models, searchindex
from mailmanager.errors import MailmanagerError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaError(MailmanagerError):
    """Raised when the database schema is missing or older than this version of mailmanager.

    `fix` names the command that upgrades it.
    """

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}; {fix}")
        self.fix = fix


class DatabaseError(MailmanagerError):
    """Raised when the database cannot be reached or opened; the message says what to check."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, begin transactions, so SAVEPOINTs work
    # (https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # A 32 MiB page cache (the default is 2 MiB) keeps the indexes a sync batch and the
    # matcher update in memory; a 40 MB write-ahead log before each checkpoint writes hot
    # index pages to the database file once instead of many times.
    cur.execute("PRAGMA cache_size=-32768")
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()
    # SQLite's lower() and LIKE fold ASCII letters only: `name_key(x)` folds as Python does
    # (`crm.views` searches with it).
    dbapi_conn.create_function("name_key", 1, _name_key, deterministic=True)


def _name_key(value: object) -> object:
    return models.name_key(value) if isinstance(value, str) else value


PAGE_CACHE_KIB = 2048
"""The SQLite page cache of a web server's connections (`for_pages`): SQLite's default."""


def for_pages(factory: sessionmaker[Session], cache_kib: int = PAGE_CACHE_KIB) -> None:
    """Give the SQLite connections of `factory` a page cache of `cache_kib` instead of the
    32 MiB a sync batch wants. A web server holds up to 15 connections (its pool) for
    short reads that the operating system's file cache serves about as fast (a client
    record page took the same CPU time with 1 MiB as with 4 MiB); with 32 MiB each, their
    caches made most of the server's memory (benchmarks/web.py: peak RSS)."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        return

    def smaller(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if not record.info.get("pages_cache"):  # once per connection, pooled ones included
            dbapi_conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            record.info["pages_cache"] = True

    event.listen(engine, "checkout", smaller)


def create_private(path: str) -> None:
    """Create the file at `path`, empty and readable by its owner only (0600), unless it
    exists. The database holds raw mail: SQLite creates a missing file with the umask's mode
    (often 0644), and its -wal and -shm files take the mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def make_engine(url: str, echo: bool = False) -> Engine:
    """Create an engine for `url` with the settings each dialect needs."""
    if url.startswith("sqlite"):
        if url not in ("sqlite://", "sqlite:///:memory:"):
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                create_private(path)
        engine = sa.create_engine(url, echo=echo)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    engine = sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=4, max_overflow=4)
    event.listen(engine, "connect", _postgresql_settings)
    return engine


def _postgresql_settings(dbapi_conn: Any, _record: Any) -> None:
    # No JIT compilation: mailmanager's statements are short keyed reads and writes, and
    # PostgreSQL compiles a plan whose estimated cost passes `jit_above_cost` (an estimate
    # that stale statistics inflate) in about 100 ms, more than such a statement runs.
    cur = dbapi_conn.cursor()
    cur.execute("SET jit = off")
    cur.close()
    dbapi_conn.commit()  # a SET in a transaction rolled back later would be undone


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- migrations -----------------------------------------------------------------------------


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


# The newest migration's revision: checked at every start without loading Alembic (a test
# keeps it equal to what Alembic finds in the migrations directory).
HEAD = "0025"


def head_revision() -> str:
    """The newest revision, as Alembic reads it from the migrations directory."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (Alembic's version table), None when it has none."""
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot open the database: {exc.orig}") from exc
    return str(rows[0][0]) if rows else None


def create_schema(engine: Engine) -> None:
    """Create the newest schema in an EMPTY database at once, stamped with `HEAD`, as
    running every migration would (a test checks both give the same schema), in a tenth of
    the time: what `mailmanager sync` does on its first run against a new database."""
    with engine.begin() as conn:
        models.Base.metadata.create_all(conn)
        for statement in crmtriggers.create(conn.dialect.name) + linktriggers.create(
            conn.dialect.name
        ):
            conn.exec_driver_sql(statement)
        searchindex.create(conn)
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.exec_driver_sql(f"INSERT INTO alembic_version (version_num) VALUES ('{HEAD}')")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (before, after)."""
    from alembic import command

    with schema_lock(engine):
        before = current_revision(engine)
        command.upgrade(_alembic_config(engine), "head")
    return before, head_revision()


def check_schema(engine: Engine, config_hint: str = "") -> None:
    """Raise SchemaError unless the database is at the newest schema revision."""
    current = current_revision(engine)
    head = HEAD
    fix = f"run `mailmanager{config_hint} db upgrade`"
    if current is None:
        raise SchemaError("the database has no mailmanager schema yet", fix)
    if current != head:
        raise SchemaError(
            f"the database schema is at revision {current}, this version needs {head}", fix
        )


@contextmanager
def open_database(
    url: str, create: bool = False, config_hint: str = ""
) -> Iterator[sessionmaker[Session]]:
    """A session factory on the database at `url`; its engine is disposed of on exit.

    The schema must be at the newest revision, else SchemaError (whose fix names
    `mailmanager{config_hint} db upgrade`); with `create`, a database without any table gets
    the schema instead (a first run). Raises DatabaseError when the database cannot be opened.
    """
    engine = make_engine(url)
    try:
        if not (create and _create_if_empty(engine)):
            check_schema(engine, config_hint)
        yield session_factory(engine)
    finally:
        engine.dispose()


def _create_if_empty(engine: Engine) -> bool:
    """Create the schema in a database that has no table at all; False if it has some.

    Several workers may start at once on an empty PostgreSQL database: the first creates
    the schema under `schema_lock`, the others wait for it, look again and find it."""
    if _has_schema(engine):
        return False
    with schema_lock(engine):
        if _has_schema(engine):
            return False
        create_schema(engine)
    return True


def _has_schema(engine: Engine) -> bool:
    return current_revision(engine) is not None or bool(sa.inspect(engine).get_table_names())


SCHEMA_LOCK = 0x6D6D_0001  # PostgreSQL advisory lock key: "schema changes" (mm 1)


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Hold a PostgreSQL session-level advisory lock while the schema is created or
    upgraded, so that workers starting together change it one at a time (CREATE TABLE
    racing on an empty database fails with a unique violation on `pg_type`). A no-op on
    SQLite, where one writer at a time is the rule anyway."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK})")
        conn.commit()
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK})")
            conn.commit()


def advisory_xact_lock(session: Session, key: int) -> None:
    """On PostgreSQL, wait for the transaction-level advisory lock `key` (released at commit
    or rollback): jobs that write the same rows in different orders take it first and run
    one after the other instead of deadlocking. A no-op on SQLite (one writer at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


# --- upserts --------------------------------------------------------------------------------


def insert_ignore(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT rows, silently skipping those that violate a unique constraint."""
    if not rows:
        return
    stmt: Any
    if session.get_bind().dialect.name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    session.execute(stmt, list(rows))


def upsert(
    session: Session,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """INSERT rows, or UPDATE the `update` columns where the `keys` already exist."""
    if not rows:
        return
    stmt: Any
    if session.get_bind().dialect.name == "postgresql":
        stmt = postgresql.insert(table)
    else:
        stmt = sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )
    session.execute(stmt, list(rows))


def write_first(session: Session) -> None:
    """On SQLite, take the write lock now, at the start of a read-then-write transaction.

    In WAL mode a transaction that read, then writes after another connection committed,
    fails at once with SQLITE_BUSY_SNAPSHOT ("database is locked"; the busy timeout does
    not apply, https://www.sqlite.org/rescode.html#busy_snapshot): the daemon's sync and
    reminder jobs run side by side. A no-op UPDATE first makes it a write transaction that
    waits its turn. PostgreSQL needs nothing.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sa.text("UPDATE outbox SET id = id WHERE 0"))


def chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Slices of at most `size`: keeps IN lists under every backend's parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def among(s: Session, column: Any, values: Collection[Any]) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, one parameter however many
    values (psycopg parses a query of thousands of placeholders slower than it runs it:
    3 ms for 1,000, against under 1 ms for the array)."""
    if is_postgres(s):
        return column == sa.any_(pg_array(list(values), column.type))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def pg_array(values: list[Any], item_type: Any) -> Any:
    """`values` as one PostgreSQL array parameter of `item_type`. Integers and strings go
    as the array's text form, cast on the server: psycopg dumps a list element by element in
    Python (13 % of a bulk upsert's server time); anything else goes through psycopg."""
    kind = postgresql.ARRAY(item_type)
    if all(type(v) is int for v in values):
        text = ids_param(True, values)
    elif all(v is None or type(v) is str for v in values):
        text = "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"
    else:
        return sa.bindparam(None, values, type_=kind)
    # An untyped parameter in the CAST: PostgreSQL then takes the parameter itself as the
    # array (a constant its planner sees), where a text parameter cast to an array is work
    # left to run time (array_in is not immutable): with no idea of the list, it planned a
    # scan comparing every row with every value (1.2 s a batch on opportunity_contacts).
    return sa.cast(sa.bindparam(None, text, type_=sa.types.NullType()), kind)


def _quoted(value: str) -> str:
    """An element of an array's text form: double-quoted, `"` and `\\` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def among_param(postgres: bool, column: Any, name: str) -> sa.ColumnElement[bool]:
    """`among` with the values left to a parameter `name`, for a statement built once and
    run many times: bind `ids_param(postgres, values)` to it (integers only)."""
    if postgres:
        kind = postgresql.ARRAY(column.type)
        untyped = sa.bindparam(name, type_=sa.types.NullType())  # as `pg_array` says why
        return column == sa.any_(sa.cast(untyped, kind))  # type: ignore[no-any-return]
    return column.in_(sa.bindparam(name, expanding=True))  # type: ignore[no-any-return]


def ids_param(postgres: bool, values: Sequence[int]) -> Any:
    """The value of an `among_param` parameter: the array's text form on PostgreSQL."""
    if postgres:
        return "{" + ",".join(map(str, map(int, values))) + "}"
    return list(values)


def is_postgres(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def parts(s: Session, values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """`values` in slices sized for `among`: 500 on SQLite, 20,000 on PostgreSQL."""
    size = 20000 if is_postgres(s) else 500
    return chunks(values, size)


def insert_many(s: Session, model: type[models.Base], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys; the columns' Python defaults fill the rest).
    On PostgreSQL one `INSERT … SELECT unnest(…)` of one array per column: an executemany
    runs one statement per row, each firing the table's statement triggers (the CRM
    generation's), 44 ms for 1,000 contacts against 8 ms so."""
    if not rows:
        return
    t = table(model)
    if s.get_bind().dialect.name != "postgresql":
        s.execute(sa.insert(t), rows)
        return
    given = list(rows[0])
    values: dict[str, list[Any]] = {name: [r[name] for r in rows] for name in given}
    for c in t.columns:
        default = c.default
        if (
            c.name in values
            or default is None
            or (not default.is_scalar and not default.is_callable)
        ):
            continue
        if default.is_scalar:
            values[c.name] = [default.arg] * len(rows)  # type: ignore[attr-defined]
        else:  # utcnow: one value for the rows
            value = default.arg(None)  # type: ignore[attr-defined]
            values[c.name] = [value] * len(rows)
    # A column with one value for all rows is one parameter (psycopg dumps arrays value by
    # value, in Python); the first column stays an array, which sets the number of rows.
    columns: list[Any] = []
    for n, (name, vals) in enumerate(values.items()):
        kind = t.c[name].type
        if n and all(v == vals[0] for v in vals):
            columns.append(sa.bindparam(None, vals[0], type_=kind))
        else:
            columns.append(sa.func.unnest(pg_array(vals, kind)))
    s.execute(sa.insert(t).from_select(list(values), sa.select(*columns)))


def table(model: type[models.Base]) -> sa.Table:
    t = model.__table__
    assert isinstance(t, sa.Table)
    return t
