"""The ledger's time: after a sweep at T, nothing is recorded effective before T, for any member.

A sweep visits only the members with something due (a lot expiring, a tier to review); the others are
left alone. Their ledger time is still at least T, because the sweep first records T as the ledger's
time, and every decision takes t = max(occurred_at, the member's ledger time, the ledger's time). So a
period that was swept never changes afterwards, exactly as if every member had been visited.

The ledger's time is a tracking record (`LEDGER_TIME`, microseconds since the epoch) in the write
side's own tracking table, moved forward only. Each writing transaction names the ledger time its
decisions used and checks it under the events table's lock (PostgreSQL) or SQLite's single-writer lock:
if a sweep moved it meanwhile, the batch fails with `LedgerTimeMovedError` (an IntegrityError, so the
application decides the batch again with the new time) instead of recording a backdated change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from ledger.micros import from_micros, to_micros

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


def guard_ledger_time(recorder: Any) -> None:
    """Make the recorder check EXPECTED_LEDGER_TIME (micros or None) in the transaction that writes."""
    module = type(recorder).__module__
    if module == "eventsourcing.popo":
        return  # one process, one thread: nothing can move the time between deciding and recording
    if module not in {"eventsourcing.postgres", "eventsourcing.sqlite"}:
        raise TypeError(f"no ledger time guard for recorders of {module}")
    insert_events = recorder._insert_events
    on_postgres = module == "eventsourcing.postgres"

    def insert_checked(cursor: Any, stored_events: Any, **kwargs: Any) -> Any:
        if EXPECTED_LEDGER_TIME in kwargs:
            if on_postgres:
                recorder._lock_table(cursor)  # the lock every insert takes: a sweep's mark waits for it
            current = recorder._max_tracking_id(LEDGER_TIME, cursor)
            if current != kwargs[EXPECTED_LEDGER_TIME]:
                raise LedgerTimeMovedError(
                    f"a sweep moved the ledger's time to {as_time(current)} while this batch was decided"
                )
        return insert_events(cursor, stored_events, **kwargs)

    recorder._insert_events = insert_checked
