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

from tests.cli.helpers import canonical_state, cli
from tests.conftest import ConfigWriter


def test_kill_minus_nine_then_resume_equals_uninterrupted_run(
    corpus_dir: Path, db_url: str, write_config: ConfigWriter, tmp_path: Path
) -> None:
    tree = corpus_dir
    box = f"""
        [[mailboxes]]
        name = "corpus"
        connector = "maildir"
        path = "{tree}"
        owner = "alice@example.com"
        [sync]
        batch_size = 10
        """
    cfg = write_config(db_url, box, name="killed.toml")
    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    reference_cfg = write_config(reference_url, box, name="reference.toml")
    cli("sync", config=reference_cfg)
    reference = canonical_state(reference_url)
    assert len(reference["messages"]) > 2000

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
