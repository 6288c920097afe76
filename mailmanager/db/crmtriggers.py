"""The triggers that give the `crm_generation` row a new token whenever the CRM data the
matcher reads changes (see `mailmanager.crmcache`, which uses the token): a random one on
SQLite, the changing transaction's id on PostgreSQL. Used by
migration 0008 and by `store.create_schema`; plain SQL per dialect, no imports."""

from __future__ import annotations

# (table, the columns whose update matters to the matcher)
WATCHED = (
    ("contacts", ("company_id",)),
    ("contact_emails", ("email", "contact_id")),
    ("company_domains", ("domain", "company_id")),
    ("opportunities", ("reference", "company_id", "stage", "created_at", "closed_at")),
    ("opportunity_contacts", ("opportunity_id", "contact_id")),
)
# A closed opportunity without a closing date used to end at its last activity; since issue
# #17 it takes no mail by inference (`Opp.status_at`), so `last_activity_at` matters to no
# decision and this trigger only costs a cache reload now and then (a later migration may
# drop it). An open one's never mattered (every sync batch touches it).
_ACTIVITY_WHEN = "NEW.stage <> 'open' AND NEW.closed_at IS NULL"


def create(dialect: str) -> list[str]:
    """The statements that create the token row's triggers (and the token row itself)."""
    out = ["INSERT INTO crm_generation (id, token) VALUES (1, 0)"]
    if dialect == "sqlite":
        bump = "BEGIN UPDATE crm_generation SET token = random() WHERE id = 1; END"
        for table, columns in WATCHED:
            for event in ("INSERT", "DELETE", f"UPDATE OF {', '.join(columns)}"):
                name = f"mm_crm_{table}_{event.split()[0].lower()}"
                out.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} {bump}")
        out.append(
            "CREATE TRIGGER mm_crm_opportunities_activity AFTER UPDATE OF last_activity_at "
            f"ON opportunities WHEN {_ACTIVITY_WHEN} {bump}"
        )
        return out
    # PostgreSQL: the token becomes the changing transaction's id, once per transaction
    # (then the WHERE matches nothing): updating one row again and again in a transaction
    # costs more each time, and a bulk import runs one statement per row. Transaction ids
    # are never reused, so a rolled-back change cannot come back either.
    out.append(
        "CREATE FUNCTION mm_crm_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE crm_generation SET token = txid_current() "
        "WHERE id = 1 AND token <> txid_current(); "
        "RETURN NULL; END $$"
    )
    call = "EXECUTE FUNCTION mm_crm_changed()"
    for table, columns in WATCHED:
        out.append(
            f"CREATE TRIGGER mm_crm_{table} AFTER INSERT OR DELETE OR "
            f"UPDATE OF {', '.join(columns)} ON {table} FOR EACH STATEMENT {call}"
        )
        out.append(f"CREATE TRIGGER mm_crm_{table}_truncate AFTER TRUNCATE ON {table} {call}")
    out.append(
        "CREATE TRIGGER mm_crm_opportunities_activity AFTER UPDATE OF last_activity_at "
        f"ON opportunities FOR EACH ROW WHEN ({_ACTIVITY_WHEN}) {call}"
    )
    return out


def drop(dialect: str) -> list[str]:
    """The statements that remove what `create` made (not the table)."""
    if dialect == "sqlite":
        names = [
            f"mm_crm_{table}_{event}"
            for table, _ in WATCHED
            for event in ("insert", "delete", "update")
        ]
        return [f"DROP TRIGGER IF EXISTS {n}" for n in [*names, "mm_crm_opportunities_activity"]]
    return ["DROP FUNCTION IF EXISTS mm_crm_changed() CASCADE"]
