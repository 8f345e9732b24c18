"""The ledger's time: after a sweep at T, nothing is recorded effective before T, for any member.

A sweep visits only the members with something due (a lot expiring, a tier to review); the others are
left alone. Their ledger time is still at least T, because the sweep first records T as the ledger's
time, and every decision takes t = max(occurred_at, the member's ledger time, the ledger's time). So a
period that was swept never changes afterwards, exactly as if every member had been visited.

The ledger's time is a tracking record (`LEDGER_TIME`, microseconds since the epoch) in the write
side's own tracking table, moved forward only. Each writing transaction names the ledger time its
decisions used and checks it under the events table's lock (PostgreSQL) or SQLite's single-writer lock
(taken before the check, `take_sqlite_write_lock`):
if a sweep moved it meanwhile, the batch fails with `LedgerTimeMovedError` (an IntegrityError, so the
application decides the batch again with the new time) instead of recording a backdated change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from ledger.eventsourcing_adapter import (
    Insert,
    lock_events_table,
    max_tracking_id,
    take_sqlite_write_lock,
    wrap_insert_events,
)
from ledger.micros import from_micros, to_micros
from ledger.storage.backend import Backend, unsupported

#: The tracking record that holds the ledger's time.
LEDGER_TIME = "ledger-time"
#: The keyword a write passes (through the library's `saved_kwargs`) to have its ledger time checked.
EXPECTED_LEDGER_TIME = "expected_ledger_time"


class LedgerTimeMovedError(IntegrityError):
    """A sweep moved the ledger's time after this batch was decided; nothing of the batch was recorded."""


def ledger_time_mark(at: datetime) -> Tracking:
    """The tracking record that moves the ledger's time to `at`."""
    return Tracking(LEDGER_TIME, to_micros(at))


def as_time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def guard_ledger_time(backend: Backend, recorder: Any) -> None:
    """Make the recorder of a `backend` store check EXPECTED_LEDGER_TIME (micros or None) in the transaction
    that writes."""
    if backend is Backend.MEMORY:
        return  # one process, one thread: nothing can move the time between deciding and recording
    if backend not in {Backend.POSTGRES, Backend.SQLITE}:
        raise unsupported("ledger time guard", backend)
    on_postgres = backend is Backend.POSTGRES

    def checked(insert_events: Insert) -> Insert:
        def insert_checked(cursor: Any, stored_events: Any, **kwargs: Any) -> Any:
            if EXPECTED_LEDGER_TIME in kwargs:
                if on_postgres:
                    lock_events_table(recorder, cursor)  # the lock every insert takes: a sweep's mark waits for it
                else:  # the write lock before the read: two processes writing at once wait, not fail
                    take_sqlite_write_lock(recorder, cursor)
                current = max_tracking_id(recorder, LEDGER_TIME, cursor)
                if current != kwargs[EXPECTED_LEDGER_TIME]:
                    raise LedgerTimeMovedError(
                        f"a sweep moved the ledger's time to {as_time(current)} while this batch was decided"
                    )
            return insert_events(cursor, stored_events, **kwargs)

        return insert_checked

    wrap_insert_events(recorder, checked)
