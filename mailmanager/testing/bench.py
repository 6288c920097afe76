"""Pieces the connector benchmarks share (`benchmarks/*_sync.py`)."""

from __future__ import annotations

import time

from mailmanager import spi


def full_fetch(conn: spi.Connector, limit: int = 200) -> dict[str, float]:
    """Read every folder of `conn` from scratch; count messages and bytes, time it.

    `cpu_us` is the process CPU per message, `loop_cpu` the process CPU of the whole loop.
    The connector is closed at the end.
    """
    count = size = 0
    started, cpu = time.perf_counter(), time.process_time()
    for folder in conn.list_folders():
        cursor: str | None = None
        while True:
            batch = conn.fetch_changes(folder, cursor, limit)
            count += len(batch.messages)
            size += sum(len(m.raw) for m in batch.messages)
            cursor = batch.cursor
            if not batch.more:
                break
    conn.close()
    loop_cpu = time.process_time() - cpu
    return {
        "messages": count,
        "bytes": size,
        "seconds": time.perf_counter() - started,
        "loop_cpu": loop_cpu,
        "cpu_us": loop_cpu / max(count, 1) * 1e6,
    }
