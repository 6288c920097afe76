"""Run the real `mailmanager` CLI as a subprocess and read the database it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailmanager.db import models, store


def cli(
    *args: str, config: Path | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mailmanager"]
    if config is not None:
        cmd += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def cli_json(*args: str, config: Path) -> Any:
    return json.loads(cli(*args, "--json", config=config).stdout)


def canonical_state(url: str) -> dict[str, Any]:
    """Everything a sync decides, without database ids: comparable across databases."""
    engine = store.make_engine(url)
    with engine.connect() as conn:
        M, L, F, Q = models.Message, models.MessageLocation, models.Folder, models.Quarantine
        keys = dict(conn.execute(sa.select(M.id, M.key)).all())
        by_thread: dict[int, set[str]] = {}
        for mid, tid in conn.execute(sa.select(M.id, M.thread_id)):
            by_thread.setdefault(tid, set()).add(keys[mid])
        locations = {
            (folder, pid, keys[mid])
            for folder, pid, mid in conn.execute(
                sa.select(F.remote_id, L.provider_id, L.message_id).join(F, F.id == L.folder_id)
            )
        }
        quarantine = set(
            conn.execute(
                sa.select(F.remote_id, Q.provider_id, Q.reason).join(F, F.id == Q.folder_id)
            ).all()
        )
        participants = conn.scalar(sa.select(sa.func.count()).select_from(models.Participant))
        thread_rows = conn.scalar(sa.select(sa.func.count()).select_from(models.Thread))
    engine.dispose()
    return {
        "messages": set(keys.values()),
        "threads": {frozenset(g) for g in by_thread.values()},
        "thread_rows": thread_rows,
        "locations": locations,
        "quarantine": quarantine,
        "participants": participants,
    }
