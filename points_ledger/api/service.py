"""What one server process holds open for its lifetime: the ledger, its views, its API keys, the console's
sessions and its thread pool.

The eventsourcing library is synchronous, so a route's work runs on the process's own thread pool
(`executor`, `api.threads` threads, handed work by asyncio's `run_in_executor`: anyio's `to_thread`, what
the framework uses, cost a fifth of a balance look-up in bookkeeping). The pool's size is also the size of
the ledger's PostgreSQL connection pool, so a request never waits for a connection that another thread of
the same process holds. Reads share the one `Projections` (its catch-up takes a lock per view, so
concurrent readers never apply an event twice). Writes take the process's write lock: the ledger's
in-memory members are one writer's; other processes (more workers, `consume`) are kept apart by the store
itself (each member's next version is taken once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from ledger.storage.api_keys import ApiKeyStore
    from ledger.storage.console_sessions import ConsoleSessionStore
    from ledger.storage.store import Store
    from points_ledger.config import ApiSection, LedgerSettings
    from projections.runner import Projections

#: Connections the pool may open beyond `api.threads`, for the short-lived extra ones (a schema lock).
POOL_OVERFLOW = 4


@dataclass
class LedgerService:
    """The open ledger of one server process."""

    app: LedgerApplication
    projections: Projections
    keys: ApiKeyStore
    sessions: ConsoleSessionStore
    api: ApiSection
    executor: ThreadPoolExecutor
    write_lock: threading.Lock = field(default_factory=threading.Lock)


def pooled_store(store: Store, threads: int) -> Store:
    """`store` with a PostgreSQL connection pool of `threads` connections (and a few more at a pinch)."""
    if store.kind != "postgresql":
        return store
    env = {**store.env, "POSTGRES_POOL_SIZE": str(threads), "POSTGRES_MAX_OVERFLOW": str(POOL_OVERFLOW)}
    return replace(store, env=env)


@contextmanager
def ledger_service(settings: LedgerSettings) -> Iterator[LedgerService]:
    """Open the ledger named by `settings` (it must exist: create it with `ingest`, `consume` or `api-key
    create` first) for the lifetime of a server process."""
    from ledger.application import LedgerApplication
    from ledger.eventsourcing_adapter import keep_pooled_connections
    from ledger.program import load_program
    from ledger.storage.api_keys import api_key_store
    from ledger.storage.console_sessions import ConsoleSessionStore
    from projections.runner import Projections

    store = pooled_store(settings.store_config(), settings.api.threads)
    store.require_existing()
    app = LedgerApplication(store, load_program(settings.program))
    if store.kind == "sqlite":  # PostgreSQL's pool is sized by `pooled_store`
        keep_pooled_connections(app.recorder, settings.api.threads)
    executor = ThreadPoolExecutor(settings.api.threads, thread_name_prefix="points-ledger-api")
    try:
        keys = api_key_store(app)
        sessions = ConsoleSessionStore(keys)
        yield LedgerService(app, Projections(app), keys, sessions, settings.api, executor)
    finally:
        executor.shutdown(wait=True)  # the work in flight ends before its ledger closes
        app.close()
