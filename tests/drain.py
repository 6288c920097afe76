"""Read a connector folder to the end, keeping every answer: shared by connector tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailmanager import spi


@dataclass
class Drained:
    batches: list[spi.ChangeBatch] = field(default_factory=list)
    cursor: str | None = None

    @property
    def messages(self) -> list[spi.RawMessage]:
        return [m for b in self.batches for m in b.messages]

    @property
    def removed(self) -> list[str]:
        return [r for b in self.batches for r in b.removed]

    @property
    def flag_changes(self) -> dict[str, frozenset[str]]:
        return {c.provider_id: c.flags for b in self.batches for c in b.flag_changes}


def drain(
    conn: spi.Connector, folder: spi.RemoteFolder, cursor: str | None, limit: int = 100
) -> Drained:
    """Call `fetch_changes` until `more` is false (at most 1,000 times)."""
    out = Drained(cursor=cursor)
    for _ in range(1000):
        batch = conn.fetch_changes(folder, out.cursor, limit)
        out.batches.append(batch)
        out.cursor = batch.cursor
        if not batch.more:
            return out
    raise AssertionError("fetch_changes never finished")
