"""One direct connection attempt before opening a PostgreSQL store.

The library's connection pool reports any failure as a timeout after waiting;
one plain connection first says at once *why* (refused, no such database,
authentication failed), which is what a person at the terminal needs.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.store import Store


def connect(store: Store, **options: Any) -> psycopg.Connection[Any]:
    """A plain psycopg 3 connection to a PostgreSQL store (also for tests and benchmarks)."""
    if store.kind != "postgresql":
        raise ValueError(f"{store.describe()} is not a PostgreSQL store")
    env = store.env
    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        dbname=env["POSTGRES_DBNAME"],
        connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
        **options,
    )


def check_reachable(store: Store) -> None:
    """Raise psycopg.OperationalError with the server's reason if the store cannot be reached."""
    if store.kind == "postgresql":
        connect(store).close()
