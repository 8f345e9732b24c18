"""Every use of the eventsourcing library's private API (its underscore names), in one place.

The ledger writes more than the library's recorders do in a write's transaction (claimed ids, upstream
positions continuing from the one before, the ledger's time, the position log), and it writes events
faster than the library's generic paths (its own `trigger_event`, orjson encoding). The library offers no
public hook for either, so those steps reach its private methods. Each reach goes through one function
here, and `CONTRACT` lists every private name with the parameters we call it with:
tests/test_eventsourcing_contract.py checks them against the installed library, so that an upgrade which
renames or reshapes one fails there, with the name, instead of somewhere in a transaction.

This module imports nothing but the library's domain and persistence modules (no database driver): the
domain (ledger.member) and the storage (ledger.storage) both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, TypeVar

from eventsourcing.persistence import JSONTranscoder, Tracking

A = TypeVar("A")
#: A recorder's `_insert_events` or `_insert_tracking` (with the cursor first, except in memory).
Insert = Callable[..., Any]
#: Given the library's method, the one to call instead (which calls the library's in turn).
Wrap = Callable[[Insert], Insert]


class PrivateName(NamedTuple):
    """A private name of the library we use: where it is defined, and the parameters we pass it (for a
    method) or None (an attribute that instances of that class have)."""

    owner: str
    name: str
    parameters: tuple[str, ...] | None


#: Every private name used below, for the contract test. Parameter names are those of the library's own
#: signature after `self`/`cls` ("**" for its keyword catch-all); the test also accepts more parameters
#: that have defaults.
CONTRACT: tuple[PrivateName, ...] = (
    PrivateName("eventsourcing.domain:BaseAggregate", "_create", ("event_class", "id", "**")),
    PrivateName("eventsourcing.domain:BaseAggregate", "_pending_events", None),
    PrivateName("eventsourcing.persistence:JSONTranscoder", "_encode_obj", ("o",)),
    PrivateName("eventsourcing.postgres:PostgresProcessRecorder", "_insert_events", ("curs", "stored_events", "**")),
    PrivateName("eventsourcing.postgres:PostgresProcessRecorder", "_insert_tracking", ("curs", "tracking")),
    PrivateName("eventsourcing.postgres:PostgresProcessRecorder", "_max_tracking_id", ("application_name", "curs")),
    PrivateName("eventsourcing.postgres:PostgresProcessRecorder", "_lock_table", ("curs",)),
    PrivateName("eventsourcing.postgres:PostgresTrackingRecorder", "_insert_tracking", ("curs", "tracking")),
    PrivateName("eventsourcing.sqlite:SQLiteProcessRecorder", "_insert_events", ("c", "stored_events", "**")),
    PrivateName("eventsourcing.sqlite:SQLiteProcessRecorder", "_insert_tracking", ("c", "tracking")),
    PrivateName("eventsourcing.sqlite:SQLiteProcessRecorder", "_max_tracking_id", ("application_name", "c")),
    PrivateName("eventsourcing.sqlite:SQLiteTrackingRecorder", "_insert_tracking", ("c", "tracking")),
    PrivateName("eventsourcing.popo:POPOProcessRecorder", "_insert_events", ("stored_events", "**")),
    PrivateName("eventsourcing.popo:POPOProcessRecorder", "_assert_tracking_uniqueness", ("tracking",)),
    PrivateName("eventsourcing.popo:POPOProcessRecorder", "_max_tracking_ids", None),
    PrivateName("eventsourcing.popo:POPOProcessRecorder", "_database_lock", None),
)


# ---- aggregates (ledger.member) -----------------------------------------------------------------------


def create_aggregate(cls: type[A], event_class: type[Any], **kwargs: Any) -> A:
    """A new aggregate of `cls` from its created event (the library's `_create`, its documented way to
    create an aggregate from a command method rather than from `__init__`)."""
    return cls._create(event_class, **kwargs)  # type: ignore[attr-defined,no-any-return]


def pending_events(aggregate: Any) -> list[Any]:
    """The aggregate's events not yet collected, as the library keeps them (`_pending_events`): appended to by
    the ledger's own faster `trigger_event`, read by `pending_since` without collecting them."""
    return aggregate._pending_events  # type: ignore[no-any-return]


# ---- encoding (ledger.storage.transcoding) ------------------------------------------------------------


def transcodings_encoder(transcoder: JSONTranscoder) -> Callable[[Any], Any]:
    """The transcoder's callback that encodes one object through its registered transcodings
    (`_encode_obj`): what orjson calls for the types it does not write itself."""
    return transcoder._encode_obj


# ---- the writing transaction (ledger.storage) ---------------------------------------------------------


def wrap_insert_events(recorder: Any, wrap: Wrap) -> None:
    """Run `wrap(the recorder's _insert_events)` instead of it: called inside the transaction that writes a
    batch, with the cursor (none in memory), the stored events and the write's keyword arguments (the
    `saved_kwargs` of the processing event, and `tracking`)."""
    recorder._insert_events = wrap(recorder._insert_events)


def wrap_insert_tracking(recorder: Any, wrap: Wrap) -> None:
    """Run `wrap(the recorder's _insert_tracking)` instead of it: called with the cursor and the tracking
    record, inside the writing transaction (SQLite, PostgreSQL)."""
    recorder._insert_tracking = wrap(recorder._insert_tracking)


def wrap_assert_tracking_uniqueness(recorder: Any, wrap: Wrap) -> None:
    """In memory: run `wrap(the recorder's _assert_tracking_uniqueness)` instead of it, under the recorder's
    lock, before a tracking record is kept."""
    recorder._assert_tracking_uniqueness = wrap(recorder._assert_tracking_uniqueness)


def insert_tracking(recorder: Any, cursor: Any, tracking: Tracking) -> None:
    """Write `tracking` in the caller's transaction (a tracking recorder's `_insert_tracking`)."""
    recorder._insert_tracking(cursor, tracking)


def max_tracking_id(recorder: Any, application_name: str, cursor: Any) -> int | None:
    """An upstream's last position, read in the caller's transaction (`_max_tracking_id`)."""
    return recorder._max_tracking_id(application_name, cursor)  # type: ignore[no-any-return]


def lock_events_table(recorder: Any, cursor: Any) -> None:
    """Take the lock every insert of events takes on PostgreSQL (`_lock_table`), in the caller's transaction."""
    recorder._lock_table(cursor)


def take_sqlite_write_lock(recorder: Any, cursor: Any) -> None:
    """Take SQLite's write lock now, in the caller's transaction, before it reads: a write statement (one
    that changes no row) as its first statement. The library's transactions BEGIN deferred, and a deferred
    transaction that reads and then writes fails at once ("database is locked") when another process wrote
    in between; one that writes first waits for the lock (up to the store's lock timeout) instead."""
    table = recorder.events_table_name
    cursor.execute(f"UPDATE {table} SET topic = topic WHERE 0")  # noqa: S608 (the library's own table name)


def memory_max_tracking_id(recorder: Any, application_name: str) -> int | None:
    """An upstream's last position in an in-memory recorder, under its lock (`_max_tracking_ids`)."""
    return recorder._max_tracking_ids[application_name]  # type: ignore[no-any-return]


def memory_lock(recorder: Any) -> AbstractContextManager[Any]:
    """The lock an in-memory recorder holds while it writes (`_database_lock`)."""
    return recorder._database_lock  # type: ignore[no-any-return]


def keep_pooled_connections(recorder: Any, size: int) -> None:
    """Keep up to `size` idle connections in the recorder's pool (the library's SQLite datastore fixes 5, and
    closes every connection a sixth concurrent user opened: one new SQLite connection per request beyond that
    for a server of more threads). The library reads `pool_size` each time a connection comes back."""
    pool = getattr(getattr(recorder, "datastore", None), "pool", None)
    if pool is None or not hasattr(pool, "pool_size"):
        raise TypeError("the recorder has no connection pool to size")
    pool.pool_size = size
