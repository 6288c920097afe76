"""The `harness` fixture: every contract case runs once per connector harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import FACTORIES, Harness


@pytest.fixture(params=sorted(FACTORIES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    made = FACTORIES[request.param](tmp_path)
    yield made
    made.close()
