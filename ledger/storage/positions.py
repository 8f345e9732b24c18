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


def guard_positions(recorder: Any) -> None:
    """Make the recorder check `Position.previous` in the transaction that records it."""
    module = type(recorder).__module__
    if module == "eventsourcing.popo":
        assert_unique = recorder._assert_tracking_uniqueness

        def assert_continues(tracking: Tracking) -> None:
            _check(tracking, recorder._max_tracking_ids[tracking.application_name])
            assert_unique(tracking)

        recorder._assert_tracking_uniqueness = assert_continues
        return
    if module not in {"eventsourcing.postgres", "eventsourcing.sqlite"}:
        raise TypeError(f"no position guard for recorders of {module}")
    insert_tracking = recorder._insert_tracking
    on_postgres = module == "eventsourcing.postgres"

    def insert_continuing(cursor: Any, tracking: Tracking) -> None:
        if isinstance(tracking, Position):
            if on_postgres:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (tracking.application_name,))
            _check(tracking, recorder._max_tracking_id(tracking.application_name, cursor))
        insert_tracking(cursor, tracking)

    recorder._insert_tracking = insert_continuing
