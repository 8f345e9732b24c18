"""Which database a store is: chosen once, from the store's URL, and passed to the code that differs by it.

The library picks its persistence module from `PERSISTENCE_MODULE` (ledger.storage.store sets it from the
URL's scheme); the SQL the ledger writes beside the library's differs by database too. That choice is made
here, from the store (`Backend.of`), and handed to each function that needs it, rather than read back from
the name of the module a recorder's class happens to live in.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from ledger.storage.store import Store


class Backend(StrEnum):
    """A store's database, by the `kind` of its URL."""

    MEMORY = "memory"
    SQLITE = "sqlite"
    POSTGRES = "postgresql"

    @classmethod
    def of(cls, store: Store) -> Backend:
        return cls(store.kind)


def unsupported(what: str, backend: Backend) -> TypeError:
    """The error for code that has no way of doing `what` on `backend`."""
    return TypeError(f"no {what} on a {backend.value} store")


class OnBackend(Protocol):
    """A ledger's own recorder and the backend it writes to (a LedgerApplication is one)."""

    @property
    def backend(self) -> Backend: ...

    @property
    def recorder(self) -> Any: ...
