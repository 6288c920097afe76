"""The whole CRM as an in-memory matcher index, kept from one sync batch to the next.

A sync batch matches a few hundred threads. Reading the part of the CRM they reach costs
about as much as matching them, so a process that keeps matching (the daemon, a first sync,
`mailmanager match --all`) loads the whole CRM once and keeps it, per database engine.

**When is the copy current?** Database triggers (`crmtriggers`, created by migration 0008
and by `store.create_schema`) give the single `crm_generation` row a new token (random on
SQLite, the changing transaction's id on PostgreSQL) whenever a statement changes what the
matcher reads: contact addresses, contacts' companies, company domains, opportunities
(reference, company, stage, dates) and their contacts. A copy is used only while the stored
token is still the one it was loaded with, one small query per batch; any change, by this
process, another worker, the CLI or plain SQL, makes the next batch load the CRM again.
Such a token (not a counter) cannot come back after a rolled-back change, so a copy read
inside a transaction that rolled back is never current; on PostgreSQL, a copy read by a
transaction that has itself changed the CRM is not kept.

The matcher's own writes (contacts it auto-creates) are applied to the copy directly;
`own_changes` takes the token row's lock first, so the token it reads afterwards accounts
for exactly those writes (they are the last CRM writes of a sync batch's transaction).
"""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mailmanager.matching import cascade as matcher
from mailmanager.matching import reads as linkindex

WHOLE_ABOVE = 3000  # threads: a run (or a process's batches together) this big loads it all
GC_YOUNG = 20000  # see `_tune_gc`


@dataclass
class _Entry:
    token: int
    index: matcher.Index


_CACHE: weakref.WeakKeyDictionary[Engine, _Entry] = weakref.WeakKeyDictionary()
_PARTIAL: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def token(s: Session) -> int | None:
    """The stored token; None when the row is missing (then nothing is cached)."""
    return _read(s)[0]


def _read(s: Session) -> tuple[int | None, bool]:
    """(the token, whether this very transaction changed the CRM: PostgreSQL's token is then
    this transaction's id, and any further change it makes would leave the token as it is)."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        sql = "SELECT token, token = txid_current_if_assigned() FROM crm_generation WHERE id = 1"
    else:
        sql = "SELECT token, 0 FROM crm_generation WHERE id = 1"
    row = conn.exec_driver_sql(sql).first()
    return (None, False) if row is None else (int(row[0]), bool(row[1]))


def whole_index(s: Session, threads: int, dry_run: bool = False) -> matcher.Index | None:
    """The whole CRM for a run of `threads` threads, or None: load the part each chunk needs.

    The cached copy when it is current; else the whole CRM is loaded (and cached) when this
    run, or this process's runs together, match more than `WHOLE_ABOVE` threads. A dry run
    gets a copy whose contacts it may add placeholders to.
    """
    engine = s.get_bind()
    assert isinstance(engine, Engine)
    now, changed_here = _read(s)
    entry = _CACHE.get(engine)
    if entry is None or now is None or entry.token != now:
        _CACHE.pop(engine, None)
        entry = None
        partial = _PARTIAL.get(engine, 0) + threads
        if threads <= WHOLE_ABOVE and partial <= WHOLE_ABOVE:
            _PARTIAL[engine] = partial
            return None
        index = linkindex.load_all(s)
        if now is None or changed_here:  # not cached: see `_read`
            return index
        entry = _CACHE[engine] = _Entry(now, index)
        _tune_gc()
        _PARTIAL.pop(engine, None)
    if dry_run:
        return dataclasses.replace(
            entry.index,
            contacts=dict(entry.index.contacts),
            contact_company=dict(entry.index.contact_company),
            address_memo={},
        )
    return entry.index


def _tune_gc() -> None:
    """This process matches in bulk: make the cyclic garbage collector cheaper for it.

    The copy is a few million long-lived objects: `gc.freeze` moves them (and whatever else
    lives now) out of the collector's sight, or every full collection walks them all; they
    are still freed, by reference counting, when the copy is dropped (they hold no cycles).
    Matching allocates many short-lived tuples: a youngest-generation threshold of 20,000
    instead of 700 runs the collector a thirtieth as often, which saves a fifth of the
    matcher's time in `benchmarks/match.py`.
    """
    gc.collect()  # what is garbage now must not be frozen with the rest
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG:
        gc.set_threshold(GC_YOUNG, middle, old)


@contextmanager
def own_changes(s: Session, index: matcher.Index | None) -> Iterator[None]:
    """Around CRM writes the caller also applies to `index`: the cached copy stays current
    (when it was), instead of being loaded again at the next batch."""
    engine = s.get_bind()
    assert isinstance(engine, Engine)
    entry = _CACHE.get(engine)
    if index is None or entry is None or entry.index is not index:
        yield
        return
    conn = s.connection()
    # Lock the row: no other transaction can change the token until this one ends, so the
    # token read after the writes differs from `before` by these writes alone.
    conn.exec_driver_sql("UPDATE crm_generation SET token = token WHERE id = 1")
    before = token(s)
    yield
    after = token(s)
    if before is not None and before == entry.token and after is not None:
        entry.token = after  # a rollback restores `before`: the copy is then out of date
    else:
        _CACHE.pop(engine, None)


def forget(engine: Engine) -> None:
    """Drop the engine's cached copy (tests, and callers that know the CRM changed)."""
    _CACHE.pop(engine, None)
    _PARTIAL.pop(engine, None)
