"""The trigger that deletes a deleted message's links and matcher verdict.

`links` and `match_states` carry no foreign key to `messages` (see `models.Link`: the key
checks were the largest part of the matcher's insert time on PostgreSQL), so this trigger
does what `ON DELETE CASCADE` did. It also anchors the remaining links of the message's
thread (`models.Link.anchor`): the deleted rows may have been the thread's anchors, and
a thread without one would vanish from its records' mail (the next match of the thread
keeps one anchor per target again). mailmanager itself never deletes a message; an
admin's SQL may. Used by migrations 0009 (`anchors=False`) and 0010 and by
`store.create_schema`; plain SQL per dialect.
"""

from __future__ import annotations

_DERIVED = ("links", "match_states")


def create(dialect: str, anchors: bool = True) -> list[str]:
    """The statements that create the trigger."""
    if dialect == "sqlite":
        body = " ".join(f"DELETE FROM {t} WHERE message_id = OLD.id;" for t in _DERIVED)
        if anchors:
            body += (
                " UPDATE links SET anchor = 1 WHERE NOT anchor AND message_id IN "
                "(SELECT id FROM messages WHERE thread_id = OLD.thread_id);"
            )
        return [f"CREATE TRIGGER mm_message_deleted AFTER DELETE ON messages BEGIN {body} END"]
    # PostgreSQL: once per statement, with the deleted rows as a transition table, so a bulk
    # delete costs a few set statements rather than a few per message.
    body = " ".join(
        f"DELETE FROM {t} WHERE message_id IN (SELECT id FROM mm_gone);" for t in _DERIVED
    )
    if anchors:
        body += (
            " UPDATE links SET anchor = true WHERE NOT anchor AND message_id IN "
            "(SELECT id FROM messages WHERE thread_id IN (SELECT thread_id FROM mm_gone));"
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
