"""The audit trail: one `AuditLog` row per change a person (or an import) makes by hand.

Every area that changes records on someone's behalf (CRM edits, merges and imports, manual
links and unlinks, reminder snoozes and dismissals) writes its entry here, in the caller's
transaction, so the entry exists exactly when the change does.
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from mailmanager.db import models


def record(session: Session, actor: str, action: str, target: str, detail: object) -> None:
    """Append an AuditLog row to the caller's transaction.

    `actor` is who acted ("cli:alice", "user:bob"), `action` what was done ("contact.merge",
    "reminder_snooze"), `target` what it was done to ("contact:12", "thread:7"). `detail`
    is stored as JSON; values JSON cannot encode (datetimes, decimals) are stored as `str()`.
    """
    session.add(
        models.AuditLog(
            actor=actor, action=action, target=target, detail=json.dumps(detail, default=str)
        )
    )
