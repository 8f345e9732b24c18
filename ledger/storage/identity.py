"""The ledger's id: what a report names so that it can be checked against the ledger it came from.

The id is created once per ledger, the first time anyone asks for it, and kept in the ledger's own database:
a record named LEDGER_ID in the write side's tracking table (beside the ledger's time, ledger/storage/ledger_time.py),
whose value is a random 63-bit number. It is not an event, so no reader of the event log meets it; a rebuild
never touches the write side's tracking table, so it survives; every process reads the same record. A shadow
ledger (`consume --from-beginning` into another store) has its own. A copy of the database carries the id
with it: the id tells ledgers apart, it does not prove anything about who holds one.
"""

from __future__ import annotations

import secrets
from typing import Any

from eventsourcing.persistence import Tracking

from ledger.storage.backend import Backend, OnBackend

#: The tracking record that holds the ledger's id.
LEDGER_ID = "ledger-id"
#: Ids are drawn from 1 .. 2**63 - 1 (the tracking table's column is a signed 64-bit integer).
_ID_BOUND = 2**63 - 1


class LedgerIdError(RuntimeError):
    """The store keeps its tracking records in a way the ledger's id cannot be kept in."""


def ledger_id(ledger: OnBackend) -> str:
    """The ledger's id (16 hex digits), created on the first call for this ledger (the ledger application).

    Creating is one INSERT that does nothing when another process created the id first, so concurrent first
    calls agree on one id."""
    recorder = ledger.recorder
    value = recorder.max_tracking_id(LEDGER_ID)
    if value is None:
        _create(ledger.backend, recorder, secrets.randbelow(_ID_BOUND - 1) + 1)
        value = recorder.max_tracking_id(LEDGER_ID)
        if value is None:
            raise LedgerIdError("the ledger's id was recorded but cannot be read back")
    return f"{value:016x}"


def _create(backend: Backend, recorder: Any, value: int) -> None:
    if backend is Backend.MEMORY:  # one process: nobody else can create it meanwhile
        recorder.insert_tracking(Tracking(LEDGER_ID, value))
        return
    if backend not in {Backend.POSTGRES, Backend.SQLITE}:
        raise LedgerIdError(f"no ledger id on a {backend.value} store")
    datastore = recorder.datastore
    if not datastore.single_row_tracking:
        raise LedgerIdError("the ledger's id needs the library's single-row tracking table (the default)")
    if backend is Backend.POSTGRES:
        table = f'"{datastore.schema}"."{recorder.tracking_table_name}"'
        statement = f"INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (application_name) DO NOTHING"  # noqa: S608
    else:
        statement = "INSERT INTO tracking VALUES (?, ?) ON CONFLICT (application_name) DO NOTHING"
    with datastore.transaction(commit=True) as cursor:
        cursor.execute(statement, (LEDGER_ID, value))
