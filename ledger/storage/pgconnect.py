"""The libpq connection parameters of a PostgreSQL store: one place for every connection we open.

Two kinds of connection reach the server: our own direct ones (the CLI's first one and `check`'s, in
`points_ledger.preflight`; the schema lock's, below; a rebuild's VACUUM, `projections.db`) and the
eventsourcing library's pool. The library builds its pool from POSTGRES_* settings only, with
host, port, user, dbname and always a `password` — an empty string when there is none, and libpq
takes an empty string as "given": PGPASSWORD is then never consulted (only the passfile is).
`configure_pool` therefore replaces the pool's (still closed) connection kwargs with ours: the URL's
libpq parameters (sslmode, ...), a connect timeout, and a password only when we have one, so libpq's
own PG* variables and passfile lookup work wherever the URL is silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore

from ledger.storage.store import Store

#: Shown in pg_stat_activity unless the URL's application_name or PGAPPNAME says otherwise.
FALLBACK_APPLICATION_NAME = "points-ledger"


def connection_kwargs(store: Store) -> dict[str, Any]:
    """psycopg.connect keyword arguments for `store` (no `password` key unless the store has one)."""
    if store.kind != "postgresql":
        raise ValueError(f"{store.describe()} is not a PostgreSQL store")
    env = store.env
    kwargs: dict[str, Any] = {
        "host": env["POSTGRES_HOST"],
        "port": int(env["POSTGRES_PORT"]),
        "user": env["POSTGRES_USER"],
        "dbname": env["POSTGRES_DBNAME"],
        "connect_timeout": int(env["POSTGRES_CONNECT_TIMEOUT"]),
        "fallback_application_name": FALLBACK_APPLICATION_NAME,
        **store.libpq,
    }
    if env["POSTGRES_PASSWORD"]:
        kwargs["password"] = env["POSTGRES_PASSWORD"]
    return kwargs


def configure_pool(owner: Any, store: Store) -> None:
    """Give the library's connection pool (`owner.datastore.pool`; `owner` is the library's PostgreSQL
    factory or one of its recorders) our connection parameters (see the module doc).

    Call it before the pool first connects: the library creates the pool closed, and a recorder's
    constructor already connects (to register type adapters), so configure the factory before asking it
    for a recorder. The new kwargs replace the old in one assignment. Anything not on PostgreSQL is left
    alone; an open pool must already have our parameters.
    """
    datastore = getattr(owner, "datastore", None)
    if store.kind != "postgresql" or not isinstance(datastore, PostgresDatastore):
        return
    pool = datastore.pool
    if not isinstance(pool.kwargs, dict):
        raise TypeError(f"the library's pool kwargs are a {type(pool.kwargs).__name__}, not a dict")
    kwargs = {key: value for key, value in pool.kwargs.items() if key != "password"}
    kwargs.update(connection_kwargs(store))
    if kwargs == pool.kwargs:
        return
    if not pool.closed:
        raise RuntimeError("the library's connection pool connected before it was configured")
    pool.kwargs = kwargs


#: The advisory lock key every points-ledger process takes while it creates tables (any fixed bigint).
SCHEMA_LOCK_KEY = 0x706F696E74735F6C  # "points_l"


@contextmanager
def schema_lock(store: Store) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock while creating tables, so processes starting together on a
    new database take turns: concurrent `CREATE TABLE IF NOT EXISTS` / `CREATE TYPE` collide in the catalog
    (duplicate relation or type names, "tuple concurrently updated"). The lock lives on a connection of its
    own and ends with it, also if the process dies. Nothing is locked on other stores."""
    if store.kind != "postgresql":
        yield
        return
    with psycopg.connect(**connection_kwargs(store), autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        yield
