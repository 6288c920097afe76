"""Test support shipped with the package: what the test suite and the benchmarks share.

Like `connectors.memory` (and procrastinate's `procrastinate.testing`), these helpers live
in the product so that `benchmarks/` imports them from the installed package rather than
reaching into `tests/`:

- `fakes/`: loopback servers speaking the Gmail REST, Microsoft Graph and EWS wire formats
  (`gmail_server`, `graph_server`, `ews_server`), for the connectors' tests and benchmarks;
- `dovecot`: a private, rootless Dovecot on 127.0.0.1;
- `bulkmail`: deterministic synthetic mailboxes of any size;
- `corpus`: the shared real-mail corpus, read with the stdlib alone, and replicated to any
  size;
- `bench`: the full fetch the connector benchmarks time.

Helpers only the tests use (`tests/mailgen.py`, `tests/remindergen.py`, `tests/drain.py`,
the connector harnesses) stay in `tests/`.

Production code never imports this package (an import-linter contract holds it), and it
never imports `connectors`. Some modules need what only the `test` extra installs:
`fakes.graph_server` imports PyJWT; the others need the runtime dependencies alone (Dovecot
itself, for `dovecot`, is a system binary).
"""
