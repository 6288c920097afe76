"""Synthetic mailboxes of any size, deterministic, for the benchmarks and the loopback fakes.

Two shapes, both drawn from one small French/English sales vocabulary:

- `generate(n)`: realistic mail as the IMAP, Graph and EWS benchmarks seed it: threads of
  1-6 in INBOX / Sent / Archive, 2-200 KB (~15 KB on average), a fifth with a base64 PDF.
- `synthetic_message(i)`: message `i` of the Gmail benchmark's mailbox, built on demand (the
  Gmail fake serves it lazily), plain text of about `size` bytes, in threads of three.

Both are pure functions of their arguments: the same call gives the same bytes, so runs and
processes (the fake and the benchmark measuring it) agree on the mailbox.
"""

from __future__ import annotations

import base64
import random
import textwrap
from collections.abc import Iterator

_VOCABULARY = """proposition devis commande livraison contrat remise tarif client projet réunion
planning budget facture relance offre équipe support suivi délai validation the quote order
delivery contract discount price meeting schedule invoice team timeline approval attached
please regards thanks bonjour cordialement"""
WORDS = _VOCABULARY.split()
_TEXT: bytes | None = None


def generate(n: int, seed: int = 7) -> Iterator[tuple[str, bytes]]:
    """(folder, raw) for n messages in threads of 1-6, client mail in INBOX (5% archived),
    ours in Sent. Sizes: 78% text 2-9 KB, 17% with an 8-30 KB attachment, 5% 40-150 KB (base64
    makes that 2-200 KB)."""
    rng = random.Random(seed)
    text = " ".join(rng.choice(WORDS) for _ in range(200_000)).encode()
    blob = base64.encodebytes(rng.randbytes(240_000))
    made = 0
    thread = 0
    while made < n:
        thread += 1
        client = f"buyer{thread % 97}@client{thread % 41}.fr"
        refs: list[str] = []
        for depth in range(min(rng.randint(1, 6), n - made)):
            ours = depth % 2 == 1
            mid = f"<t{thread}.{depth}.{seed}@{'example.com' if ours else 'client.fr'}>"
            head = [
                f"From: {'Alice Martin <alice@example.com>' if ours else client}",
                f"To: {client if ours else 'Alice Martin <alice@example.com>'}",
                f"Subject: {'Re: ' if depth else ''}Devis {thread}",
                f"Date: {1 + thread % 28:02d} Jun 2026 {8 + depth:02d}:{thread % 60:02d}:00 +0200",
                f"Message-ID: {mid}",
                "MIME-Version: 1.0",
            ]
            if refs:
                head += [f"In-Reply-To: {refs[-1]}", "References: " + " ".join(refs[-10:])]
            refs.append(mid)
            start = rng.randrange(0, len(text) - 12_000)
            body = textwrap.fill(text[start : start + rng.randint(1_200, 8_000)].decode(
                errors="ignore"), 76).encode()  # fmt: skip
            roll = rng.random()
            if roll < 0.78:
                head.append("Content-Type: text/plain; charset=utf-8")
                raw = "\n".join(head).encode() + b"\n\n" + body + b"\n"
            else:
                size = rng.randint(8_000, 30_000) if roll < 0.95 else rng.randint(40_000, 150_000)
                cut = rng.randrange(0, len(blob) - size * 4 // 3 - 100)
                cut -= cut % 77  # start on a base64 line boundary
                att = blob[cut : cut + size * 4 // 3]
                att = att[: len(att) - len(att) % 77]
                head.append('Content-Type: multipart/mixed; boundary="b0"')
                raw = (
                    "\n".join(head).encode() + b"\n\n--b0\nContent-Type: text/plain; "
                    b"charset=utf-8\n\n" + body + b"\n--b0\nContent-Type: application/pdf\n"
                    b'Content-Disposition: attachment; filename="offre.pdf"\n'
                    b"Content-Transfer-Encoding: base64\n\n" + att + b"--b0--\n"
                )
            folder = "Sent" if ours else ("Archive" if rng.random() < 0.05 else "INBOX")
            made += 1
            yield folder, raw


def _text() -> bytes:
    global _TEXT
    if _TEXT is None:
        rng = random.Random(7)
        words = [rng.choice(WORDS) for _ in range(120_000)]
        lines = [" ".join(words[i : i + 11]) for i in range(0, len(words), 11)]
        _TEXT = "\n".join(lines).encode()
    return _TEXT


def synthetic_message(i: int, size: int = 15_000) -> bytes:
    """Message i of the benchmark mailbox: deterministic, `size` bytes on average (0.3x to
    1.7x), in threads of three (the thread's first message is answered by the next two)."""
    rng = random.Random(i)
    text = _text()
    n = int(size * rng.uniform(0.3, 1.7))
    start = rng.randrange(len(text) - n)
    head = i - i % 3
    ours = i % 4 == 0
    sender, to = "Alice Martin <alice@example.com>", f"Client {head} <c{head}@client{head % 97}.fr>"
    lines = [
        f"From: {sender if ours else to}",
        f"To: {to if ours else sender}",
        f"Subject: {'RE: ' if i != head else ''}Projet {head}",
        f"Date: Mon, {1 + i % 28} Jun 2026 {8 + i % 10:02d}:{i % 60:02d}:00 +0200",
        f"Message-ID: <bench-{i}@example.com>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if i != head:
        lines += [
            f"In-Reply-To: <bench-{head}@example.com>",
            f"References: <bench-{head}@example.com>",
        ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + text[start : start + n] + b"\r\n"
