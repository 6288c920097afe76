"""Syncing mailboxes: drive a connector into the database, batch by batch.

- `engine`: the `Syncer` (one mailbox, folder by folder, the cursor committed with its batch);
- `fetching`: the fetch worker process (connector + parser) feeding the writer;
- `ingest`: writes one fetched batch idempotently; `threadstore`: threads in the database;
- `watch`: push (IMAP IDLE) watchers for the daemon.
After each batch the engine calls the later stages' hooks (`matching.run`, `reminders`).
"""
