"""The full-text indexes behind `services.search` (issue #14: answer well under a second
over 200,000 messages). Used by migration 0017 and by `store.create_schema`.

SQLite: an FTS5 external-content table `messages_fts` over `messages.subject` and
`messages.snippet` (the `unicode61 remove_diacritics 2` tokenizer: "equipement" finds
"équipement"), kept current by triggers on insert, update and delete. Only what a message
keeps is indexed: a message stored as `headers` has no snippet, as `metadata` no subject.
A second FTS5 table, `participants_fts` (trigram tokenizer), indexes each participant's
name and address for the person and company-domain searches (`LIKE '%…%'`).

PostgreSQL: `mm_fold(text)`, an IMMUTABLE lower-and-strip-accents function (plain SQL
`translate`, so no `unaccent` extension is needed), a GIN index on the weighted tsvector
`subject` (weight A) + `snippet` (weight B) under the `simple` configuration (a subject-only
search asks `word:*A`), and, when the `pg_trgm` extension can be created, a trigram GIN
index on each participant's folded "name <email>" (person and company-domain searches
are `LIKE '%…%'`). Without `pg_trgm` those searches scan `participants`.
"""

from __future__ import annotations

import logging
import unicodedata

import sqlalchemy as sa

log = logging.getLogger(__name__)


def fold(text: str) -> str:
    """`text` lower-cased without accents, as `mm_fold` folds it in PostgreSQL."""
    return text.translate(_TABLE).lower()


def _pairs() -> tuple[str, str]:
    src, dst = [], []
    for code in range(0xC0, 0x250):
        ch = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        base = base.lower()
        if len(base) == 1 and base != ch and base.isascii():
            src.append(ch)
            dst.append(base)
    return "".join(src), "".join(dst)


_SRC, _DST = _pairs()
_TABLE = str.maketrans(_SRC, _DST)

# The PostgreSQL document of a message, as the index and the queries both spell it.
PG_DOCUMENT = (
    "(setweight(to_tsvector('simple'::regconfig, mm_fold(messages.subject)), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, mm_fold(messages.snippet)), 'B'))"
)
PG_PERSON = "mm_fold(participants.name || ' <' || participants.email || '>')"


def _sqlite() -> list[str]:
    cols = "subject, snippet"
    new = "new.id, new.subject, new.snippet"
    old = "'delete', old.id, old.subject, old.snippet"
    return [
        "CREATE VIRTUAL TABLE messages_fts USING fts5(subject, snippet, content='messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER mm_search_ai AFTER INSERT ON messages BEGIN "
        f"INSERT INTO messages_fts(rowid, {cols}) VALUES ({new}); END",
        "CREATE TRIGGER mm_search_ad AFTER DELETE ON messages BEGIN "
        f"INSERT INTO messages_fts(messages_fts, rowid, {cols}) VALUES ({old}); END",
        "CREATE TRIGGER mm_search_au AFTER UPDATE OF subject, snippet ON messages BEGIN "
        f"INSERT INTO messages_fts(messages_fts, rowid, {cols}) VALUES ({old}); "
        f"INSERT INTO messages_fts(rowid, {cols}) VALUES ({new}); END",
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
        # who took part: trigram-indexed, so `LIKE '%dupont%'` and `'%@acme.fr'` use it
        "CREATE VIRTUAL TABLE participants_fts USING fts5(name, email, content='participants', "
        "content_rowid='id', tokenize='trigram')",
        "CREATE TRIGGER mm_search_pi AFTER INSERT ON participants BEGIN "
        "INSERT INTO participants_fts(rowid, name, email) VALUES (new.id, new.name, new.email); "
        "END",
        "CREATE TRIGGER mm_search_pd AFTER DELETE ON participants BEGIN "
        "INSERT INTO participants_fts(participants_fts, rowid, name, email) "
        "VALUES ('delete', old.id, old.name, old.email); END",
        "CREATE TRIGGER mm_search_pu AFTER UPDATE OF name, email ON participants BEGIN "
        "INSERT INTO participants_fts(participants_fts, rowid, name, email) "
        "VALUES ('delete', old.id, old.name, old.email); "
        "INSERT INTO participants_fts(rowid, name, email) VALUES (new.id, new.name, new.email); "
        "END",
        "INSERT INTO participants_fts(participants_fts) VALUES ('rebuild')",
    ]


def _postgresql() -> list[str]:
    src, dst = (s.replace("'", "''") for s in (_SRC, _DST))
    return [
        "CREATE FUNCTION mm_fold(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT "
        f"PARALLEL SAFE AS $$ SELECT lower(translate($1, '{src}', '{dst}')) $$",
        f"CREATE INDEX ix_search_messages ON messages USING gin ({PG_DOCUMENT})",
    ]


def has_trigram_index(conn: sa.Connection) -> bool:
    """Whether the participants' trigram index exists (PostgreSQL)."""
    return conn.dialect.name == "postgresql" and bool(
        conn.exec_driver_sql(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'ix_search_participants'"
        ).scalar()
    )


def create(conn: sa.Connection) -> None:
    """Create the search indexes (and fill them from the rows present)."""
    if conn.dialect.name == "sqlite":
        for statement in _sqlite():
            conn.exec_driver_sql(statement)
        return
    for statement in _postgresql():
        conn.exec_driver_sql(statement)
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pg_trgm unavailable: person and company searches will scan participants "
            "(ask the database owner to run CREATE EXTENSION pg_trgm): %s",
            exc.orig,
            extra={"action": "search_no_trigram"},
        )
        return
    conn.exec_driver_sql(
        f"CREATE INDEX ix_search_participants ON participants USING gin ({PG_PERSON} gin_trgm_ops)"
    )


def forget_deleted(conn: sa.Connection) -> None:
    """SQLite: merge the FTS5 segments, so that the words of deleted or scrubbed rows leave
    the file (a delete only adds a marker; the old entries stay until a merge). For erasure
    and retention (`services.privacy`), with `PRAGMA secure_delete` on. PostgreSQL: VACUUM
    does it; nothing to do here."""
    if conn.dialect.name == "sqlite":
        for table in ("messages_fts", "participants_fts"):
            conn.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('optimize')")


def drop(conn: sa.Connection) -> None:
    """Drop what `create` made (the pg_trgm extension stays)."""
    if conn.dialect.name == "sqlite":
        for name in ("ai", "ad", "au", "pi", "pd", "pu"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS mm_search_{name}")
        conn.exec_driver_sql("DROP TABLE IF EXISTS messages_fts")
        conn.exec_driver_sql("DROP TABLE IF EXISTS participants_fts")
        return
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_search_participants")
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_search_messages")
    conn.exec_driver_sql("DROP FUNCTION IF EXISTS mm_fold(text)")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's `include_name` hook: leave these indexes out of a comparison of the
    database with the models (the models do not describe them)."""
    return not (name or "").startswith(("messages_fts", "participants_fts", "ix_search_"))
