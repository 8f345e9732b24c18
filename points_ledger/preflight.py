"""One direct connection attempt before opening a PostgreSQL store.

The library's connection pool reports any failure as a timeout after waiting;
one plain connection first says at once *why* (refused, no such database,
authentication failed), which is what a person at the terminal needs.
"""

from __future__ import annotations

import psycopg

from ledger.store import Store


def check_reachable(store: Store) -> None:
    """Raise psycopg.OperationalError with the server's reason if the store cannot be reached."""
    if store.kind != "postgresql":
        return
    env = store.env
    connection = psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        dbname=env["POSTGRES_DBNAME"],
        connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
    )
    connection.close()
