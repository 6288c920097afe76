"""The trigger that deletes a deleted message's links and matcher verdict.

`links` and `match_states` carry no foreign key to `messages` (see `models.Link`: the key
checks were the largest part of the matcher's insert time on PostgreSQL), so this trigger
does what `ON DELETE CASCADE` did. mailmanager itself never deletes a message; an admin's
SQL may. Used by migration 0009 and by `store.create_schema`; plain SQL per dialect.
"""

from __future__ import annotations

_DERIVED = ("links", "match_states")


def create(dialect: str) -> list[str]:
    """The statements that create the trigger."""
    if dialect == "sqlite":
        body = " ".join(f"DELETE FROM {t} WHERE message_id = OLD.id;" for t in _DERIVED)
        return [f"CREATE TRIGGER mm_message_deleted AFTER DELETE ON messages BEGIN {body} END"]
    # PostgreSQL: once per statement, with the deleted rows as a transition table, so a bulk
    # delete costs two set deletes rather than two per message.
    body = " ".join(
        f"DELETE FROM {t} WHERE message_id IN (SELECT id FROM mm_gone);" for t in _DERIVED
    )
    return [
        "CREATE FUNCTION mm_message_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{body} RETURN NULL; END $$",
        "CREATE TRIGGER mm_message_deleted AFTER DELETE ON messages "
        "REFERENCING OLD TABLE AS mm_gone FOR EACH STATEMENT "
        "EXECUTE FUNCTION mm_message_deleted()",
    ]


def drop(dialect: str) -> list[str]:
    """The statements that drop what `create` made."""
    if dialect == "sqlite":
        return ["DROP TRIGGER IF EXISTS mm_message_deleted"]
    return [
        "DROP TRIGGER IF EXISTS mm_message_deleted ON messages",
        "DROP FUNCTION IF EXISTS mm_message_deleted()",
    ]
