"""Times as integer microseconds since the epoch (UTC): exact, indexable, and the same in every database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """A timezone-aware time as integer microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError(f"naive time {moment!r}: the ledger keeps only timezone-aware times")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
