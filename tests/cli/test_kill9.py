"""Acceptance: `kill -9` of `mailmanager sync` at random moments, then a re-run, gives the
same final state as an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import canonical_state, cli
from tests.conftest import ConfigWriter, config_text


def _mailbox(tree: Path) -> str:
    return f"""
        [[mailboxes]]
        name = "corpus"
        connector = "maildir"
        path = "{tree}"
        owner = "alice@example.com"
        [sync]
        batch_size = 10
        """


@pytest.fixture(scope="module")
def reference(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The state an uninterrupted sync of the corpus leaves (into SQLite): the same for the
    runs on each backend, so it is made once for both."""
    root = tmp_path_factory.mktemp("kill9-reference")
    url = f"sqlite:///{root / 'reference.db'}"
    path = root / "reference.toml"
    path.write_text(config_text(url, _mailbox(corpus_dir)))
    cli("sync", config=path)
    state = canonical_state(url)
    assert len(state["messages"]) > 2000
    return state


def test_kill_minus_nine_then_resume_equals_uninterrupted_run(
    corpus_dir: Path, db_url: str, write_config: ConfigWriter, reference: dict[str, Any]
) -> None:
    cfg = write_config(db_url, _mailbox(corpus_dir), name="killed.toml")
    rng = random.Random(os.environ.get("KILL9_SEED", "42"))
    kills = 0
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailmanager", "--config", str(cfg), "sync"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.7, 1.6))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the parse worker dies too
            kills += 1
        proc.wait()
    assert kills >= 3, "the sync finished before it could be killed: use a bigger tree"
    cli("sync", config=cfg)  # resume: the dead worker's lease is taken over at once
    assert canonical_state(db_url) == reference
