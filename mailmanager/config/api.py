"""`[api]`: the REST API served under `/api/v1` by `mailmanager web` (issue #18).

`requests_per_minute` bounds what one token may ask within any minute (HTTP 429 beyond it,
see `mailmanager.api.ratelimit`): a runaway integration slows down instead of loading the
server for everyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailmanager.config import schema
from mailmanager.config.schema import spec


@dataclass(frozen=True)
class ApiConfig:
    """`[api]`: the requests one token may make within a minute (`requests_per_minute`),
    counted by each server process (`[web] workers`) on its own."""

    requests_per_minute: int = field(default=600, metadata=spec(schema.at_least(1)))
