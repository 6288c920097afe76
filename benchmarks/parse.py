"""Parser throughput over the shared real-mail corpus.

Usage: python benchmarks/parse.py [--corpus DIR] [--min-messages N] [--skip-others]

Reads every message of the corpus (`mailmanager.testing.corpus`: mbox files are split with
`mailbox.mbox`, other files are single messages), repeats the set until it holds at least
`--min-messages` messages, then times, on one core and in this order:

- `mailmanager.parsing.parse`,
- `email.message_from_bytes(raw, policy=email.policy.default)` (headers and MIME tree only,
  no body decoding),
- mail-parser's `mailparser.parse_from_bytes` (when installed).

It prints messages per second for each and the process's peak RSS after each step.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mailmanager.mail import parsing
from mailmanager.testing import corpus as shared_corpus


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(label: str, func: Callable[[bytes], object], messages: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in messages:
        func(raw)
    elapsed = time.perf_counter() - start
    rate = len(messages) / elapsed
    print(f"{label:<45} {rate:>9,.0f} msgs/s  ({elapsed:6.2f} s)  peak RSS {peak_rss_mb():,.0f} MB")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=shared_corpus.CORPUS)
    parser.add_argument("--min-messages", type=int, default=5000)
    parser.add_argument("--skip-others", action="store_true", help="time only our parser")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    logging.disable(logging.CRITICAL)  # mail-parser logs every defect it meets
    corpus = shared_corpus.corpus_messages(args.corpus)
    repeats = -(-args.min_messages // len(corpus))
    messages = corpus * repeats
    total = sum(len(m) for m in messages)
    print(
        f"{len(corpus)} corpus messages x {repeats} = {len(messages)} messages, "
        f"{total / 1e6:,.1f} MB; peak RSS after loading {peak_rss_mb():,.0f} MB"
    )
    timed("mailmanager.parsing.parse", parsing.parse, messages)
    if args.skip_others:
        return 0

    def stdlib_default(raw: bytes) -> object:
        return email.message_from_bytes(raw, policy=email.policy.default)

    timed("email.message_from_bytes(policy=default)", stdlib_default, messages)
    try:
        import mailparser  # type: ignore[import-untyped]
    except ImportError:
        print("mail-parser is not installed; skipped")
        return 0

    def mail_parser(raw: bytes) -> object:
        try:
            return mailparser.parse_from_bytes(raw)
        except Exception as exc:  # it raises on some corpus files; count them as parsed
            return exc

    timed("mailparser.parse_from_bytes", mail_parser, messages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
