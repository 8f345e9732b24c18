"""What every benchmark needs: the local PostgreSQL server, fresh databases, a dead-letter sink that keeps
nothing. Run the benchmarks as modules from the repository root (`python -m benchmarks.ingest`), so that
this module is importable."""

from __future__ import annotations

from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect

SERVER = "postgresql://postgres@127.0.0.1:5432"


class Discard:
    """A dead-letter sink that drops every letter (benchmark streams are valid anyway)."""

    def write(self, letter: object) -> None:
        pass

    def flush(self) -> None:
        pass


def admin(sql: str) -> None:
    """One statement on the server's `postgres` database, outside a transaction (CREATE/DROP DATABASE)."""
    with connect(parse_store_url(f"{SERVER}/postgres"), autocommit=True) as conn:
        conn.execute(sql)


def fresh_database(name: str, template: str | None = None) -> str:
    """Drop and create database `name` (a copy of database `template`, if given); its store URL."""
    drop_database(name)
    admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return f"{SERVER}/{name}"


def drop_database(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(name: str) -> bool:
    with connect(parse_store_url(f"{SERVER}/postgres"), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
