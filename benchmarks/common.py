"""What every benchmark needs: the local PostgreSQL server, fresh databases, a dead-letter sink that keeps
nothing. Run the benchmarks as modules from the repository root (`python -m benchmarks.ingest`), so that
this module is importable."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def benchmark_store(name: str, store: str | None, postgres: bool) -> Iterator[tuple[str, Path]]:
    """The store a benchmark `name` runs on and a temporary folder for its files: `store` as given, a throwaway
    PostgreSQL database (`postgres`: created, and dropped afterwards), or a fresh SQLite file in the folder."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        if not postgres:
            yield store or f"sqlite:///{Path(tmp) / 'ledger.db'}", Path(tmp)
            return
        database = f"pl_bench_{name}_{uuid.uuid4().hex[:10]}"
        try:
            yield fresh_database(database), Path(tmp)
        finally:
            drop_database(database)
