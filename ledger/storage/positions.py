"""Upstream positions recorded with the events they produced, continuing from the one before.

The library's tracking record only insists that a new position be *greater*
than the stored one. Two writers of the same upstream partition (a consumer
evicted from its group that still finishes a batch, and its successor) could
then both record overlapping batches, e.g. offsets 10..20 and 10..25. A
`Position` also names the position it continues from; the check runs inside
the writing transaction (under a per-partition advisory lock on PostgreSQL,
under SQLite's single-writer lock), so the second writer fails instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from ledger.eventsourcing_adapter import (
    Insert,
    max_tracking_id,
    memory_max_tracking_id,
    wrap_assert_tracking_uniqueness,
    wrap_insert_tracking,
)
from ledger.storage.backend import Backend, unsupported


@dataclass(frozen=True)
class Position(Tracking):
    """A tracking record that continues from `previous` (None: the first for this upstream)."""

    previous: int | None = None


class PositionConflictError(IntegrityError):
    """Another writer moved this upstream position first; the batch was not recorded."""


def _check(position: Tracking, current: int | None) -> None:
    if isinstance(position, Position) and current != position.previous:
        raise PositionConflictError(
            f"{position.application_name} is at {current}, not at {position.previous} as this batch expected"
        )


def guard_positions(backend: Backend, recorder: Any) -> None:
    """Make the recorder of a `backend` store check `Position.previous` in the transaction that records it."""
    if backend is Backend.MEMORY:

        def continuing(assert_unique: Insert) -> Insert:
            def assert_continues(tracking: Tracking) -> None:
                _check(tracking, memory_max_tracking_id(recorder, tracking.application_name))
                assert_unique(tracking)

            return assert_continues

        wrap_assert_tracking_uniqueness(recorder, continuing)
        return
    if backend not in {Backend.POSTGRES, Backend.SQLITE}:
        raise unsupported("position guard", backend)
    on_postgres = backend is Backend.POSTGRES

    def checked(insert_tracking: Insert) -> Insert:
        def insert_continuing(cursor: Any, tracking: Tracking) -> None:
            if isinstance(tracking, Position):
                if on_postgres:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (tracking.application_name,))
                _check(tracking, max_tracking_id(recorder, tracking.application_name, cursor))
            insert_tracking(cursor, tracking)

        return insert_continuing

    wrap_insert_tracking(recorder, checked)
