"""`store.among` and `store.insert_many` send their values to PostgreSQL as one array
parameter, integers and strings in the array's text form: every string comes back as it
was sent (quotes, backslashes, braces, commas, the word NULL, empty, spaces, non-ASCII),
None as NULL. The same calls work on SQLite (plain IN lists, executemany)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mailmanager.db import models, store

NASTY = [
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "{braces}",
    "a,b",
    "NULL",
    "null",
    "",
    "  spaced  ",
    "Émilie Dupré — 東京",
    "'single'",
    "tab\there",
    "line\nbreak",
]


def test_strings_and_ids_go_and_come_back_as_they_were(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        rows = [
            {"source": "arr", "external_id": f"E{k}", "first_name": text, "title": NASTY[-1 - k]}
            for k, text in enumerate(NASTY)
        ]
        rows.append({"source": "arr", "external_id": None, "first_name": "x", "title": "y"})
        store.insert_many(s, models.Contact, rows)
        C = models.Contact
        got = s.execute(
            sa.select(C.external_id, C.first_name, C.title).where(C.source == "arr")
        ).all()
        assert sorted(got, key=repr) == sorted(
            [(r["external_id"], r["first_name"], r["title"]) for r in rows], key=repr
        )
        # among: by the nasty strings themselves, and by ids
        found = s.execute(
            sa.select(C.first_name).where(C.source == "arr", store.among(s, C.first_name, NASTY))
        ).scalars()
        assert sorted(found) == sorted(NASTY)
        ids = list(s.scalars(sa.select(C.id).where(C.source == "arr")))
        assert len(ids) == len(NASTY) + 1
        by_id = s.scalars(sa.select(C.id).where(store.among(s, C.id, ids[:3])))
        assert sorted(by_id) == sorted(ids[:3])
        s.rollback()


def test_postgresql_plans_the_array_as_a_constant(factory: sessionmaker[Session]) -> None:
    """The array reaches the planner as a constant it can see: a text parameter cast to an
    array is left to run time (array_in is not immutable), and with no idea of the list
    PostgreSQL planned a scan comparing every row with every value (1.2 s a batch)."""
    with factory() as s:
        if s.get_bind().dialect.name != "postgresql":
            pytest.skip("the array parameter and its plan are PostgreSQL's")
        C = models.Contact
        for values, column in (([3, 1, 2], C.id), (['a"b', "c"], C.external_id)):
            stmt = sa.select(C.id).where(store.among(s, column, values))
            compiled = stmt.compile(bind=s.get_bind())
            plan = "\n".join(
                str(r[0])
                for r in s.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            )
            assert "ANY ('{" in plan, plan  # the list itself, as a constant
            assert "::text)::" not in plan and "CAST" not in plan.upper(), plan
        s.rollback()
