"""schemathesis against the live OpenAPI schema of a real `mailmanager web` process: every
operation of `/api/v1`, with generated valid and invalid input, as an admin token (which
may call every route) and as a salesperson's read-only token (refusals must be documented
answers too). Asserted: no server error (5xx), every answer's status code, content type
and body conform to the schema, invalid input is refused. The number of cases is printed
(run with `-s` to see it) and bounded below: every operation tested, none errored, at
least 20 cases each.

Each token gets its own server: the admin run writes, deletes and bulk-upserts records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.web.apisupport import make_token
from tests.web.support import WebServer

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
    ]
)
EXAMPLES = int(os.environ.get("MAILMANAGER_SCHEMATHESIS_EXAMPLES", "5"))
UNLIMITED = "\n[api]\nrequests_per_minute = 1000000\n"


def schemathesis(server: WebServer, token: str, out: Path) -> tuple[int, str, dict[str, object]]:
    """Run schemathesis's CLI against the server: (exit code, output, its JSON report)."""
    report = out / "report.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261206",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        os.environ.get("MAILMANAGER_SCHEMATHESIS_WORKERS", "2"),
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=env, cwd=out, check=False
    )
    body = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, body


@pytest.mark.parametrize("user", ["dave@example.com", "alice@example.com"])
def test_schemathesis_finds_no_server_error_nor_schema_violation(
    start_web_server: Callable[..., WebServer], tmp_path: Path, user: str
) -> None:
    server = start_web_server(edit=lambda text: text + UNLIMITED)
    scopes = ["--scope", "read", "--scope", "write", "--scope", "admin"]
    _, token = make_token(server, user, *(scopes if user.startswith("dave") else []))
    code, output, report = schemathesis(server, token, tmp_path)
    cases: dict[str, int] = report.get("test_cases", {})  # type: ignore[assignment]
    operations: dict[str, int] = report.get("operations", {})  # type: ignore[assignment]
    print(f"\nschemathesis as {user}: {cases} over {operations}, exit {code}")
    assert code == 0, output[-20000:]
    assert operations["tested"] == operations["total"] >= 2, operations
    assert operations["errored"] == 0 and cases["errored"] == 0, output[-5000:]
    assert cases["generated"] >= 20 * operations["total"], cases
