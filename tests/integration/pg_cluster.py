"""A private PostgreSQL cluster for one test (`initdb` + `pg_ctl` on a free port under a
temporary directory), so that the test may restart it without touching the PostgreSQL every
other test and process on the machine uses. Run as root, the cluster runs as `postgres`.
`FAST` settings skip the disk flushes: a clean stop still writes everything, so a restart
loses nothing; only a crash of the machine would."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mailmanager.testing.dovecot import free_port


def pg_bin() -> Path | None:
    """The directory of Debian's `initdb`/`pg_ctl` (the newest version), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


class PrivatePostgres:
    def __init__(self, binaries: Path) -> None:
        self.bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="mm-pg-"))
        self.data, self.port = self.root / "data", free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        # --no-sync: a throw-away cluster need not wait for the disk (seconds on a busy one).
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args], check=True, capture_output=True, user=self.user,
            cwd=self.root,
        )  # fmt: skip

    def start(self, settings: str = "") -> None:
        """Start the server; `settings` adds `-c name=value` options."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {settings}"
        log = str(self.root / "pg.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(binaries: Path, settings: str = "") -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres(binaries)
    try:
        cluster.start(settings)
        yield cluster
    finally:
        cluster.cleanup()
