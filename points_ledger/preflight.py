"""One direct connection attempt before opening a PostgreSQL store.

The library's connection pool reports any failure as a timeout after waiting;
one plain connection first says at once *why* (refused, no such database,
authentication failed), which is what a person at the terminal needs.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.storage.pgconnect import connection_kwargs
from ledger.storage.store import Store


def connect(store: Store, **options: Any) -> psycopg.Connection[Any]:
    """A plain psycopg 3 connection to a PostgreSQL store (also for tests and benchmarks), with the same
    parameters (TLS, password, PG* fallbacks) as the library's pool gets."""
    return psycopg.connect(**{**connection_kwargs(store), **options})


def check_reachable(store: Store) -> None:
    """Raise psycopg.OperationalError with the server's reason if the store cannot be reached."""
    if store.kind == "postgresql":
        connect(store).close()
