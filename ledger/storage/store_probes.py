"""Read-only probes of a PostgreSQL store, for `check`: the server, its clock, and what the user may do with
the ledger's tables.

The table names and the catalog queries belong with the storage code that creates those tables; `check`
decides what to probe and how to report it. Nothing here writes, and each probe runs one or two queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ledger.storage.claim_index import TABLE as CLAIMS_TABLE
from ledger.storage.position_log import POSITION_LOG_TABLE

#: The library's events table of the ledger (the application named "Ledger").
EVENTS_TABLE = "ledger_events"
#: Tables of the ledger that a first start of this version creates beside an older ledger's (filled from it).
LATER_TABLES = (CLAIMS_TABLE, POSITION_LOG_TABLE)


@dataclass(frozen=True, slots=True)
class Server:
    """What a connection tells of the server without a query."""

    major_version: int
    tls: bool


@dataclass(frozen=True, slots=True)
class TableRights:
    """What the connected user may do with the ledger's tables in its current schema."""

    user: str
    schema: str
    #: May the user create tables in the schema?
    can_create: bool
    #: The ledger's tables that exist: none before a first start, else the events table and LATER_TABLES there.
    tables: tuple[str, ...]
    #: Of LATER_TABLES, those that do not exist yet.
    missing: tuple[str, ...]
    #: May the user insert into and read every table of `tables` (False when there are none)?
    can_read_and_append: bool


def server(connection: psycopg.Connection[Any]) -> Server:
    return Server(connection.info.server_version // 10000, bool(connection.pgconn.ssl_in_use))


def server_clock(connection: psycopg.Connection[Any]) -> datetime | None:
    """The database server's current time."""
    row = connection.execute("SELECT now()").fetchone()
    return None if row is None else row[0]


def table_rights(connection: psycopg.Connection[Any]) -> TableRights | None:
    """The ledger creates its tables on first use, then inserts and reads; an older ledger gets the tables it
    lacks (LATER_TABLES) created and filled on the first start of this version. None if the catalog says
    nothing."""
    row = connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL, "
        "array(SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL), current_user, "
        "has_schema_privilege(current_user, current_schema(), 'CREATE'), current_schema()",
        (EVENTS_TABLE, list(LATER_TABLES)),
    ).fetchone()
    if row is None:
        return None
    exists, missing, user, can_create, schema = row
    if not exists:
        return TableRights(user, schema, can_create, (), tuple(missing), False)
    tables = (EVENTS_TABLE, *(table for table in LATER_TABLES if table not in missing))
    granted = connection.execute(
        "SELECT bool_and(has_table_privilege(current_user, t, 'INSERT') AND has_table_privilege(current_user, t, "
        "'SELECT')) FROM unnest(%s::text[]) AS t",
        (list(tables),),
    ).fetchone()
    return TableRights(user, schema, can_create, tables, tuple(missing), granted is not None and bool(granted[0]))
