"""The suggestions' writer reads every bounce on each batch of synced mail
(`matching.suggestions.BOUNCE_REPORTS`). Without an index that read scanned the whole
messages table on every batch: incremental matching became 13-16 % slower after #17. The
partial index `ix_messages_bounces` (schema 0021) finds the bounces alone."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db.models import Message
from mailmanager.matching import suggestions


def _plan(s: Session, query: sa.Select[tuple[str]]) -> str:
    bind = s.get_bind()
    sql = str(query.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
    if bind.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in s.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
    s.execute(sa.text("SET LOCAL enable_seqscan = off"))  # an almost empty table otherwise
    return " ".join(str(row[0]) for row in s.execute(sa.text("EXPLAIN " + sql)))


def test_the_bounces_are_read_through_their_partial_index(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s:
        s.add_all(
            Message(
                key=f"k{i}",
                message_id=f"<{i}@x>",
                sha256=f"{i:064x}",
                is_bounce=i % 50 == 0,
                bounce="{}",
            )
            for i in range(200)
        )
        s.flush()
        plan = _plan(s, suggestions.BOUNCE_REPORTS)
        assert "ix_messages_bounces" in plan, plan
        found = s.execute(suggestions.BOUNCE_REPORTS).scalars().all()
        assert len(found) == 4
        s.rollback()
