"""A NUL byte in an imported CSV file is refused with its line number (issue #16, finding 7),
not a database traceback (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailmanager import config
from mailmanager.crm import csvio
from mailmanager.db import configrows
from tests.conftest import ConfigWriter


def test_a_nul_byte_is_refused_with_its_line(
    db_url: str, factory: sessionmaker[Session], write_config: ConfigWriter
) -> None:
    cfg = config.load(write_config(db_url, ""))
    data = b"name,domains\nAcme,acme.fr\nBad\x00Corp,bad.fr\n"
    with factory() as s:
        configrows.ensure_config_rows(s, cfg)
        with pytest.raises(csvio.CsvError, match=r"line 3: a NUL character"):
            csvio.import_csv(s, cfg, "companies", data)
        s.rollback()
