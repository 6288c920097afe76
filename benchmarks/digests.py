"""Digest rendering benchmark: text + HTML digests of 5-20 items per second (target ≥ 1,000).

Items are realistic (accented French subjects and names, 200-character snippets with line
breaks, every kind, some escalations and repeats); half the digests are French, half
English. The whole email is also built (`smtp.build_message`: headers, MIME, quoted-
printable) in a second measurement, since the outbox does that for every send.

    python benchmarks/digests.py              # 2,000 digests
    python benchmarks/digests.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta

from mailmanager.notify import digest, smtp
from mailmanager.reminders import evaluation as reminders

SUBJECTS = [
    "Devis portes coupe-feu — bâtiment B",
    "RE: Offre maintenance été 2027",
    "Renouvellement contrat n°4512",
    "Question sur la facture de décembre",
    "Proposal: fire doors for the new warehouse",
]
NAMES = [("Élodie Durand", "Durand & Fils"), ("Jean Dupont", "Acme Industrie"),
         ("Zoë Müller", "Müller GmbH"), ("Sam O'Brien", "O'Brien Ltd")]  # fmt: skip
SNIPPET = (
    "Bonjour,\nsuite à notre échange de mardi, voici la proposition révisée avec les "
    "délais de livraison. N'hésitez pas à revenir vers moi <si besoin> & à bientôt.\n"
)


def items(rng: random.Random, n: int) -> list[reminders.DigestItem]:
    out = []
    for i in range(n):
        name, company = rng.choice(NAMES)
        out.append(
            reminders.DigestItem(
                reminder_id=rng.randint(1, 10**6),
                kind=rng.choice(reminders.KINDS),
                thread_id=i,
                subject=rng.choice(SUBJECTS),
                contact_name=name,
                contact_email=f"contact{i}@example.org",
                company_name=company,
                opportunity_ref=f"OPP-{rng.randint(1000, 9999)}",
                opportunity_title="Renouvellement parc",
                waiting_since=datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(days=i % 9),
                business_days_waiting=rng.randint(0, 12),
                last_from="alice@example.com",
                last_snippet=SNIPPET[: rng.randint(60, len(SNIPPET))],
                reason="No reply yet",
                mailbox="alice",
                cycle=0,
                escalated_from="bob@example.com" if rng.random() < 0.1 else None,
                repeat=rng.choice((0, 0, 0, 1)),
            )
        )
    return out


def run(n: int, seed: int = 1) -> dict[str, float]:
    rng = random.Random(seed)
    users = [
        digest.Recipient("alice@example.com", "Alice Martin", "fr", "Europe/Paris"),
        digest.Recipient("bob@example.com", "Bob Smith", "en", "Europe/London"),
    ]
    batches = [items(rng, rng.randint(5, 20)) for _ in range(n)]
    digest.render(batches[0], users[0])  # templates compiled once, outside the timing
    started = time.perf_counter()
    rendered = [digest.render(b, users[i % 2], "ACME") for i, b in enumerate(batches)]
    render_s = time.perf_counter() - started
    started = time.perf_counter()
    total = 0
    for i, r in enumerate(rendered):
        user = users[i % 2]
        out = smtp.Outgoing(
            message_id=f"<bench.{i}@example.com>",
            sender="Mailmanager <mm@example.com>",
            recipient=user.email,
            recipient_name=user.name,
            subject=r.subject,
            text=r.text,
            html=r.html,
            date=datetime.now(UTC),
        )
        total += len(smtp.build_message(out))
    build_s = time.perf_counter() - started
    return {
        "digests": n,
        "items": sum(len(b) for b in batches),
        "render_per_s": round(n / render_s),
        "render_and_build_per_s": round(n / (render_s + build_s)),
        "mean_email_bytes": round(total / n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="digests to render")
    args = parser.parse_args()
    print(json.dumps(run(args.n), indent=2))


if __name__ == "__main__":
    main()
