"""Editing a ledger's database by hand, as someone with write access to it (and no chain key) would."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devkit.streamgen import generate
from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect
from tests.cli_helpers import cli


@contextmanager
def database(store_url: str) -> Iterator[Any]:
    """A direct connection to the ledger's database, as someone editing it by hand would open one."""
    if store_url.startswith("sqlite"):
        connection = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        try:
            yield connection
            connection.commit()
        finally:
            connection.close()
        return
    with connect(parse_store_url(store_url), autocommit=True) as pg:
        yield pg


def on_sqlite(store_url: str) -> bool:
    return store_url.startswith("sqlite")


def events_table(store_url: str) -> tuple[str, str]:
    """(table, position column) of the library's stored events."""
    return ("stored_events", "rowid") if on_sqlite(store_url) else ("ledger_events", "notification_id")


def snapshots_table(store_url: str) -> str:
    return "stored_snapshots" if on_sqlite(store_url) else "ledger_snapshots"


def tracking_table(store_url: str) -> str:
    """The ledger's own tracking table (upstream positions)."""
    return "tracking" if on_sqlite(store_url) else "ledger_tracking"


def run(connection: Any, store_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """One statement written with `?` placeholders, in either database; its rows, if any."""
    cursor = connection.execute(statement if on_sqlite(store_url) else statement.replace("?", "%s"), params)
    return list(cursor.fetchall()) if cursor.description else []


def edit_event(store_url: str, position: int, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` in the stored bytes of the event at log `position`."""
    table, column = events_table(store_url)
    with database(store_url) as connection:
        [(state,)] = run(connection, store_url, f"SELECT state FROM {table} WHERE {column} = ?", (position,))
        edited = bytes(state).replace(old, new, 1)
        assert edited != bytes(state), f"{old!r} is not in the event at {position}"
        run(connection, store_url, f"UPDATE {table} SET state = ? WHERE {column} = ?", (edited, position))


def first_event(store_url: str, topic_suffix: str) -> tuple[int, bytes]:
    """(position, stored bytes) of the first event whose topic ends with `topic_suffix`."""
    table, column = events_table(store_url)
    with database(store_url) as connection:
        rows = run(
            connection, store_url,
            f"SELECT {column}, state FROM {table} WHERE topic LIKE ? ORDER BY {column} LIMIT 1", (f"%{topic_suffix}",),
        )  # fmt: skip
    [(position, state)] = rows
    return int(position), bytes(state)


def verify_lines(store_url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """`verify --format json`: its exit status and its lines (the discrepancies, then the summary)."""
    result = cli("verify", *args, "--format", "json", store=store_url, env=env)
    assert result.stdout, result.stderr
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def ingested(
    store_url: str, tmp_path: Path, messages: int = 1_200, members: int = 40, env: dict[str, str] | None = None
) -> str:
    """A ledger of generated messages (and its views, caught up), written in the environment `env`."""
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(generate(messages, members, 400, seed=5)) + b"\n")
    result = cli("ingest", str(stream), "--dead-letter", str(tmp_path / "dead.jsonl"), store=store_url, env=env)
    assert result.returncode == 0, result.stderr
    assert cli("balances", store=store_url, env=env).returncode == 0  # the views caught up
    return store_url
