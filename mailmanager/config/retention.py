"""`[retention]`: how long stored mail, quarantined items and the audit log are kept
(issue #16). A key left unset keeps that kind of data for ever. The daemon applies it once a
day and `mailmanager privacy retention` on demand (`services.privacy.apply_retention`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailmanager.config import schema
from mailmanager.config.schema import spec


@dataclass(frozen=True)
class RetentionConfig:
    """`[retention]`: days after which messages (by their date), quarantined items (since
    they were kept aside) and audit entries are deleted; unset = kept."""

    messages_days: int | None = field(default=None, metadata=spec(schema.at_least(1)))
    quarantine_days: int | None = field(default=None, metadata=spec(schema.at_least(1)))
    audit_days: int | None = field(default=None, metadata=spec(schema.at_least(1)))
