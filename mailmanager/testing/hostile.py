"""Hostile messages, generated: what an attacker sends to stop or slow a mailbox (issue #16).

Each `Case` builds a whole message from a `scale` (a count of parts, levels, addresses,
ids, bytes...) and a `tag` that makes its ids unique, so one mailbox can hold many. `full`
is the scale the issue's report used (the benchmark's, `benchmarks/hostile.py`); `small`
is one the property test can afford many times (`tests/integration/
test_hostile_sync_property.py`). `canary` is the ordinary message put after each one: it
must be stored, whatever came before it.

Pure functions of their arguments: the same call gives the same bytes. `measured_sync` runs
`mailmanager sync` in a subprocess and reads its peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ALICE = "alice@example.com"
CLIENT = "jean@acme.fr"
DATE = "Mon, 2 Nov 2026 09:00:00 +0000"
UTF7_SURROGATE = "=?utf-7?Q?+2D0-?="
ABSURD_DATES = (
    "Mon, 31 Dec 99999 25:61:61 +9999",
    "Thu, 01 Jan 0000 00:00:00 +0000",
    "9999999999999999999999",
    "Sat, 29 Feb 2025 12:00:00 -2400",
    "-1",
    "Tue, 1 Jan 1601 00:00:00 -0000",
)
BAD_CHARSETS = ("x-unknown", "utf-7", "unicode-escape", "utf-16", "rot13", 'bo"gus', "")


def _message(tag: str, subject: str, body: bytes, extra: str = "", date: str = DATE) -> bytes:
    head = (
        f"From: Jean Dupont <{CLIENT}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{tag}@acme.fr>\r\nDate: {date}\r\nMIME-Version: 1.0\r\n{extra}"
    )
    if "Content-Type:" not in extra:
        head += "Content-Type: text/plain; charset=utf-8\r\n"
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body


def canary(tag: str) -> bytes:
    """An ordinary message, `<canary-{tag}@acme.fr>`."""
    return _message(f"canary-{tag}", f"Canari {tag}", b"Bonjour, rien d'hostile ici.\r\n")


def canary_id(tag: str) -> str:
    return f"canary-{tag}@acme.fr"


def write_maildir(folder: Path, messages: Iterable[bytes]) -> int:
    """`messages` as the files of a Maildir folder's `cur/`, named so that they sort in this
    order, byte for byte; returns their total size."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    total = 0
    for i, raw in enumerate(messages):
        (folder / "cur" / f"{1764000000 + i}.M{i}P1.hostile:2,S").write_bytes(raw)
        total += len(raw)
    return total


def many_parts(n: int, tag: str) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return _message(
        tag,
        "Beaucoup de parties",
        parts + b"--p--\r\n",
        'Content-Type: multipart/mixed; boundary="p"\r\n',
    )


def deep_nesting(n: int, tag: str) -> bytes:
    opens = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(n)
    )
    inner = b"--b%d\r\nContent-Type: text/plain\r\n\r\nau fond\r\n--b%d--\r\n" % (n, n)
    closes = b"".join(b"--b%d--\r\n" % i for i in reversed(range(n)))
    return _message(
        tag,
        "Imbrication profonde",
        opens + inner + closes,
        'Content-Type: multipart/mixed; boundary="b0"\r\n',
    )


def many_addresses(n: int, tag: str) -> bytes:
    to = ",\r\n ".join(f"Personne {i} <p{i}@client{i % 97}.fr>" for i in range(n))
    return _message(tag, "Beaucoup de destinataires", b"Bonjour a tous\r\n", f"Cc: {to}\r\n")


def long_references(n: int, tag: str) -> bytes:
    refs = "\r\n ".join(f"<ref{i}.{tag}@acme.fr>" for i in range(n))
    return _message(
        tag,
        "Re: longue conversation",
        b"Suite\r\n",
        f"References: {refs}\r\nIn-Reply-To: <ref{n - 1}.{tag}@acme.fr>\r\n",
    )


def nul_bytes(n: int, tag: str) -> bytes:
    body = (b"Bon\x00jour " * n) + b"\r\n"
    raw = _message(tag, "Oct\x00ets nuls", body, "X-Note: \x00\x00\r\n")
    return raw.replace(b"Jean Dupont", b"Jean\x00Dupont")


def bad_charsets(n: int, tag: str) -> bytes:
    parts = b""
    for i in range(n):
        cs = BAD_CHARSETS[i % len(BAD_CHARSETS)].encode()
        parts += (
            b'--c\r\nContent-Type: text/plain; charset="%s"\r\n\r\n+2D0- \xff\xfe\x00 %d\r\n'
            % (
                cs,
                i,
            )
        )
    subject = " ".join(f"=?{cs}?Q?+2D0-=FF?=" for cs in BAD_CHARSETS)
    return _message(
        tag, subject, parts + b"--c--\r\n", 'Content-Type: multipart/mixed; boundary="c"\r\n'
    )


def rfc2231(n: int, tag: str) -> bytes:
    params = ";\r\n ".join(f"filename*{i}*=utf-8''%E2%82%AC{i}" for i in range(n))
    body = (
        b"--r\r\nContent-Type: text/plain\r\n\r\nvoir la piece jointe\r\n"
        b"--r\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Disposition: attachment;\r\n {params}\r\n\r\n".encode()
        + b"AAAA\r\n--r--\r\n"
    )
    return _message(
        tag, "Continuations RFC 2231", body, 'Content-Type: multipart/mixed; boundary="r"\r\n'
    )


def absurd_date(n: int, tag: str) -> bytes:
    return _message(tag, "Date absurde", b"Quand ?\r\n", date=ABSURD_DATES[n % len(ABSURD_DATES)])


def utf7_surrogate(n: int, tag: str) -> bytes:
    """The ~160 bytes that stopped a mailbox for good: a UTF-7 lone surrogate in the
    subject, the display name and the body (`n` repeats it in the body)."""
    return (
        f"From: {UTF7_SURROGATE} <{CLIENT}>\r\nTo: {ALICE}\r\n"
        f"Subject: {UTF7_SURROGATE}\r\nMessage-ID: <{tag}@acme.fr>\r\nDate: {DATE}\r\n"
        'Content-Type: text/plain; charset="utf-7"\r\n\r\n'
    ).encode() + b"+2D0-\r\n" * max(n, 1)


def cjk_message_id(n: int, tag: str) -> bytes:
    """A Message-ID (and References id) of `n` CJK characters, 3 bytes each in UTF-8: over
    PostgreSQL's btree limit for an index row at 900."""
    long_id = "".join(chr(0x4E00 + i * 7919 % 20000) for i in range(n)) + f".{tag}@acme.fr"
    raw = _message(tag, "Identifiant long", b"Bonjour\r\n", f"References: <{long_id}>\r\n")
    return raw.replace(f"<{tag}@acme.fr>".encode(), f"<{long_id}>".encode(), 1)


def nested_divs(n: int, tag: str) -> bytes:
    """An HTML body of `n` nested `<div>` (11 bytes a level: 190,000 levels are 2 MB)."""
    html = b"<html><body>" + b"<div>" * n + b"Bonjour" + b"</div>" * n + b"</body></html>"
    return _message(tag, "HTML imbrique", html, "Content-Type: text/html; charset=utf-8\r\n")


def oversize(n: int, tag: str) -> bytes:
    """A text body of `n` bytes (over `[sync] max_message_size`, 50 MB by default)."""
    line = b"x" * 998 + b"\r\n"
    return _message(tag, "Gros message", line * (n // len(line) + 1))


_LONG_BOUNDARY = "z" * 20  # 24 bytes a line: 2 million lines are 48 MB


def boundary_lines(n: int, tag: str) -> bytes:
    """`n` boundary lines: as many empty parts, far past the part cap."""
    z = b"--" + _LONG_BOUNDARY.encode()
    return _message(
        tag,
        "Lignes de frontiere",
        (z + b"\r\n") * n + z + b"--\r\n",
        f'Content-Type: multipart/mixed; boundary="{_LONG_BOUNDARY}"\r\n',
    )


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int, str], bytes]  # (scale, tag) → raw; its Message-ID holds the tag
    full: int  # the scale
    small: int  # the property test's largest


CASES: tuple[Case, ...] = (
    Case("many_parts", many_parts, 10_000, 800),
    Case("deep_nesting", deep_nesting, 1_000, 120),
    Case("many_addresses", many_addresses, 100_000, 3_000),
    Case("long_references", long_references, 50_000, 3_000),
    Case("nul_bytes", nul_bytes, 100_000, 2_000),
    Case("bad_charsets", bad_charsets, 1_000, 40),
    Case("rfc2231", rfc2231, 10_000, 500),
    Case("absurd_date", absurd_date, len(ABSURD_DATES) - 1, len(ABSURD_DATES) - 1),
    Case("utf7_surrogate", utf7_surrogate, 1, 50),
    Case("cjk_message_id", cjk_message_id, 900, 900),
    Case("nested_divs", nested_divs, 190_000, 20_000),
    Case("oversize", oversize, 120_000_000, 1_200_000),
    Case("boundary_lines", boundary_lines, 2_000_000, 30_000),
)
BY_NAME = {case.name: case for case in CASES}


# Runs the command in its argv (after a timeout in seconds) and reports its exit code, output
# and peak RSS. A launcher of its own, because a child's peak RSS counts the memory of the
# process that started it (Linux keeps the high-water mark across fork and exec): started
# from this small process, the sync's figure is its own, not the test runner's.
_LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
try:
    p = subprocess.run(sys.argv[2:], capture_output=True, timeout=float(sys.argv[1]))
    code, out, err = p.returncode, p.stdout, p.stderr
except subprocess.TimeoutExpired as exc:
    code, out, err = -9, exc.stdout or b"", b"timed out after " + sys.argv[1].encode()
print(json.dumps({
    "code": code,
    "seconds": time.perf_counter() - started,
    "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "stdout": out.decode("utf-8", "replace"),
    "stderr": err.decode("utf-8", "replace")[-4000:],
}))
"""


@dataclass(frozen=True)
class Measured:
    """What one `mailmanager sync` subprocess did."""

    code: int  # its exit code; -9 when it ran past the timeout and was killed
    seconds: float  # wall clock, interpreter start-up included
    peak_mb: float  # peak RSS of the sync, or of the largest parse worker it started
    stdout: str
    stderr: str  # its last 4,000 characters


def measured_sync(config_path: Path, *args: str, timeout: float = 600) -> Measured:
    """`mailmanager --config CONFIG sync ARGS...` in a subprocess, measured."""
    env = {k: v for k, v in os.environ.items() if k != "MAILMANAGER_CONFIG"}
    cmd = [sys.executable, "-m", "mailmanager", "--config", str(config_path), "sync", *args]
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(timeout), *cmd],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=timeout + 60,
    )
    found = json.loads(launched.stdout)
    return Measured(
        code=found["code"],
        seconds=found["seconds"],
        peak_mb=found["peak_kb"] / 1024,
        stdout=found["stdout"],
        stderr=found["stderr"],
    )
