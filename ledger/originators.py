"""Which of many aggregates have any stored events, in one query.

Loading an aggregate through the library costs two queries (snapshot, then
events) even when it has never been recorded: measured as about a quarter of
Kafka consume time into PostgreSQL while new members arrive. One query per
batch tells which of its unknown members exist, so only those are loaded.

The answer may only err on the side of "maybe stored": a member wrongly taken
for new would be started again at version 1, which the events table's primary
key refuses (the batch fails loudly instead of forking a member's history).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

#: Ids per SQLite statement (its default limit on parameters is 32,766 since 3.32).
SQLITE_IDS_PER_QUERY_MAX = 1_000
#: One primary-key probe per id (`SELECT DISTINCT … IN (…)` read every event row of each id).
#: `table` is the library's own events table name, never input.
_SQLITE_PROBE = (
    "WITH ids(id) AS (VALUES {rows}) SELECT id FROM ids "
    "WHERE EXISTS (SELECT 1 FROM {table} WHERE originator_id = ids.id)"
)


def maybe_stored(recorder: Any, originator_ids: Collection[UUID]) -> set[UUID]:
    """The ids among `originator_ids` that may have stored events: exact on PostgreSQL and SQLite,
    all of them on other recorders (where loading each one is cheap)."""
    if not originator_ids:
        return set()
    module = type(recorder).__module__
    if module == "eventsourcing.postgres":
        return _on_postgres(recorder, originator_ids)
    if module == "eventsourcing.sqlite":
        return _on_sqlite(recorder, originator_ids)
    return set(originator_ids)


def _on_postgres(recorder: Any, originator_ids: Collection[UUID]) -> set[UUID]:
    text_ids = recorder.datastore.originator_id_type == "text"
    statement = SQL(
        "SELECT id FROM unnest(%s::{id_type}[]) AS ids(id) "
        "WHERE EXISTS (SELECT 1 FROM {schema}.{table} WHERE originator_id = ids.id)"
    ).format(
        id_type=SQL("text" if text_ids else "uuid"),
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
    )
    ids = [str(i) for i in originator_ids] if text_ids else list(originator_ids)
    with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute(statement, (ids,))
        return {UUID(str(row["id"])) for row in cursor.fetchall()}


def _on_sqlite(recorder: Any, originator_ids: Collection[UUID]) -> set[UUID]:
    by_key = {i.hex: i for i in originator_ids}
    keys = list(by_key)
    found: set[UUID] = set()
    with recorder.datastore.transaction(commit=False) as cursor:
        for start in range(0, len(keys), SQLITE_IDS_PER_QUERY_MAX):
            chunk = keys[start : start + SQLITE_IDS_PER_QUERY_MAX]
            rows = ",".join(["(?)"] * len(chunk))
            cursor.execute(_SQLITE_PROBE.format(rows=rows, table=recorder.events_table_name), chunk)
            found.update(by_key[row["id"]] for row in cursor.fetchall())
    return found
