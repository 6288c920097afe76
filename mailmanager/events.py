"""What one stage of the pipeline tells the stages after it, so that each owns its tables.

Syncing writes messages and threads; matching owns the links, reminders own the reminders.
Instead of the sync stage rewriting the later stages' rows, it reports what happened and
each later stage reacts with a hook of its own:

- a stored batch (`BatchResult`: new messages, threads created, grown or merged) goes to the
  `BatchHook`s, which the sync engine runs in the batch's transaction (or once, after a full
  scan); a hook must be idempotent, since a batch may be replayed after a crash;
- a thread merge (threads found to be one conversation) goes to the `MergeHook`s, run inside
  the merge before the losing threads' rows are deleted: each stage re-points its own rows
  from the losers to the survivor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from mailmanager.config import Config


@dataclass
class BatchResult:
    """What storing one batch did (counts for reports, ids for the later stages)."""

    new_messages: int = 0
    new_locations: int = 0
    quarantined: int = 0
    removed: int = 0
    flag_changes: int = 0
    threads: set[int] = field(default_factory=set)  # threads created, grown or merged
    message_ids: list[int] = field(default_factory=list)  # messages created


BatchHook = Callable[[Session, "Config", BatchResult], None]
"""A later stage's reaction to a stored batch: (session, config, the batch's result)."""

MergeHook = Callable[[Session, int, Sequence[int]], None]
"""A later stage's reaction to a thread merge: (session, survivor id, loser ids)."""
