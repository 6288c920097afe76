"""Files that hold mail or secrets and that others than their owner can read (issue #16).

`mailmanager config check` warns about each one (a warning, not an error: the file works,
it is only too open) with its fix, `chmod 600 PATH`. Looked at: the SQLite database and its
-wal/-shm files (they hold raw mail), the token encryption key file
(`MAILMANAGER_SECRET_KEY_FILE`), `database.password_file`, and each mailbox's `*_file`
secret and `certificate_file` (a private key). Files that do not exist are not reported.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from mailmanager.config import schema

KEY_FILE_ENV = "MAILMANAGER_SECRET_KEY_FILE"  # as `db.tokens.ENV_KEY_FILE` (a layer above)
_PRIVATE_OPTIONS = ("certificate_file",)


@dataclass(frozen=True)
class LooseFile:
    """A file readable (or writable) by group or others: what it holds and its mode."""

    path: str
    holds: str
    mode: int

    def warning(self) -> str:
        return (
            f"warning: {self.path} ({self.holds}) is readable by group or others "
            f"(mode {self.mode:04o}); fix: chmod 600 {self.path}"
        )


def loose_files(
    database_url: str,
    base_dir: str,
    password_file: str | None,
    mailbox_options: list[tuple[str, dict[str, object]]],
) -> list[LooseFile]:
    """Each existing file of the module docstring whose mode lets group or others in."""
    found: list[tuple[str, str]] = []
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = schema.resolve_path(url.database, base_dir)
        found += [(db + suffix, "the database: raw mail") for suffix in ("", "-wal", "-shm")]
    if os.environ.get(KEY_FILE_ENV):
        found.append((os.environ[KEY_FILE_ENV], "the token encryption key"))
    if password_file:
        found.append((schema.resolve_path(password_file, "/"), "the database password"))
    for name, options in mailbox_options:
        for key, value in options.items():
            if isinstance(value, str) and (key.endswith("_file") and key != "ssl_ca_file"):
                what = "a private key" if key in _PRIVATE_OPTIONS else "a secret"
                found.append((schema.resolve_path(value, base_dir), f"{what} of mailbox {name}"))
    out: list[LooseFile] = []
    for path, holds in found:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            out.append(LooseFile(path, holds, mode))
    return out
