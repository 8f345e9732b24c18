"""The ledger's limits and defaults that the CLI declares its commands with.

Dependency-free: the CLI builds every command's options (and catches OutOfRangeError) before it loads
eventsourcing or psycopg; the application and ingestion (consumers/) enforce them from here.
"""

#: Most messages one transaction may hold.
BATCH_SIZE_MAX = 10_000
#: The event store unless one is named.
DEFAULT_STORE_URL = "sqlite:///points-ledger.db"


class OutOfRangeError(ValueError):
    """A time outside the range the program computes with."""
