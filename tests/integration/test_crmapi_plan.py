"""A page of `GET /companies` finds its companies' domains by the index on
`company_domains.company_id` (migration 0025): without it, each page read every domain
of the database (26,667 in the REST API benchmark's world, 1.1 ms of PostgreSQL's time
a page). Checked in SQLite's plan, which follows the indexes it has (PostgreSQL picks
by its statistics, and scans a small table whole whatever its indexes)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config
from mailmanager.db import models
from mailmanager.services import crmapi


def test_a_page_of_companies_reads_their_domains_by_index(s: Session, cfg: config.Config) -> None:
    if s.get_bind().dialect.name != "sqlite":
        pytest.skip("the plan is checked on SQLite")
    companies = [models.Company(name=f"C{n}") for n in range(60)]
    s.add_all(companies)
    s.flush()
    s.add_all(models.CompanyDomain(company_id=c.id, domain=f"c{c.id}.example") for c in companies)
    s.flush()
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        seen.append((statement, params))

    engine = s.get_bind()
    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        page = crmapi.list_records(s, cfg, "companies", crmapi.Filters(), 50, None)
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    assert len(page) == 50
    assert all(f"c{p.id}.example" in p.domains for p in page)  # type: ignore[union-attr]
    reads = [(q, p) for q, p in seen if "FROM company_domains" in q]
    assert reads, seen
    for statement, params in reads:
        plan = " ".join(
            str(r[-1])
            for r in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
        )
        assert "USING INDEX ix_company_domains_company_id" in plan, plan
