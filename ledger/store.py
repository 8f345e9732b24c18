"""Store URLs → the eventsourcing library's own persistence settings.

`memory://`, `sqlite:///relative.db` (`sqlite:////absolute.db`) and
`postgresql://user[:password]@host[:port]/dbname`. eventsourcing's own
`POSTGRES_*` environment variables still apply where the URL is silent.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

DEFAULT_STORE_URL = "sqlite:///points-ledger.db"
#: Seconds to wait for PostgreSQL to accept a connection before giving up.
POSTGRES_CONNECT_TIMEOUT_S = 5
#: Seconds a writer waits for the events table lock (one writer at a time) before failing.
POSTGRES_LOCK_TIMEOUT_S = 30
#: Seconds SQLite waits for another writer's lock.
SQLITE_LOCK_TIMEOUT_S = 30


#: Failures that mean "the store cannot be reached right now"; trying again later may work.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)


class StoreError(ValueError):
    """A store URL we cannot use."""


class StoreNotFoundError(StoreError):
    """A reading command pointed at a ledger that does not exist."""


@dataclass(frozen=True)
class Store:
    """A parsed store URL and the eventsourcing environment it stands for."""

    url: str
    kind: str
    env: dict[str, str]
    path: Path | None = None

    def describe(self) -> str:
        """The URL with any password hidden, for messages."""
        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url

    def require_existing(self) -> None:
        """Reading commands must not create an empty SQLite file by accident."""
        if self.path is not None and not self.path.exists():
            raise StoreNotFoundError(f"no ledger at {self.path} (store {self.url}); ingest something first")


def parse_store_url(url: str) -> Store:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return Store(url, "memory", {"PERSISTENCE_MODULE": "eventsourcing.popo"})
    if scheme == "sqlite":
        return _sqlite_store(url, parts.netloc, parts.path)
    if scheme in {"postgresql", "postgres"}:
        return _postgres_store(url)
    raise StoreError(f"unsupported store URL {url!r}: use memory://, sqlite:///FILE or postgresql://USER@HOST:PORT/DB")


def _sqlite_store(url: str, netloc: str, path: str) -> Store:
    if netloc or not path.startswith("/") or path == "/":
        raise StoreError(f"bad SQLite URL {url!r}: use sqlite:///relative/file.db or sqlite:////absolute/file.db")
    file = Path(unquote(path[1:]))
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(file),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_S),
    }
    return Store(url, "sqlite", env, path=file)


def _postgres_store(url: str) -> Store:
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port
    except ValueError as error:
        raise StoreError(f"bad PostgreSQL URL {url!r}: {error}") from error
    if not dbname or not parts.hostname:
        raise StoreError(f"bad PostgreSQL URL {url!r}: use postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parts.username or os.environ.get("POSTGRES_USER", "postgres")),
        "POSTGRES_PASSWORD": unquote(parts.password or os.environ.get("POSTGRES_PASSWORD", "")),
        "POSTGRES_CONNECT_TIMEOUT": os.environ.get("POSTGRES_CONNECT_TIMEOUT", str(POSTGRES_CONNECT_TIMEOUT_S)),
        "POSTGRES_LOCK_TIMEOUT": os.environ.get("POSTGRES_LOCK_TIMEOUT", str(POSTGRES_LOCK_TIMEOUT_S)),
    }
    return Store(url, "postgresql", env)
