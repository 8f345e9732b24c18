"""Ingest throughput on SQLite and PostgreSQL against the raw PostgreSQL insert floor (not a test).

    python -m benchmarks.ingest [--messages 100000] [--members 2000] [--batch-size 500]

Generates a realistic stream, ingests it into a fresh SQLite file and a fresh
PostgreSQL database, then inserts the very rows the PostgreSQL ingest stored
into a table of the same shape with psycopg 3 `executemany`, one transaction per
batch of the ingest's batch size: the floor no Python ingest can beat. The last
line printed is one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import SERVER, Discard, admin
from consumers.defaults import DEFAULT_BATCH_SIZE
from consumers.jsonlines import ingest_lines
from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect


def _ingest(store_url: str, stream: bytes, batch_size: int) -> dict[str, float]:
    app = LedgerApplication(parse_store_url(store_url), Program())
    started = time.perf_counter()
    tally = ingest_lines(app, io.BytesIO(stream), "bench.jsonl", Discard(), batch_size=batch_size)
    seconds = time.perf_counter() - started
    events = app.recorder.max_notification_id() or 0
    app.close()
    return {"seconds": seconds, "messages": tally.processed, "events": events,
            "events_per_s": events / seconds, "messages_per_s": tally.processed / seconds}  # fmt: skip


def _raw_floor(dbname: str, batch_size: int) -> dict[str, float]:
    """executemany of the ingest's own stored rows into an identical table, a transaction per batch."""
    with connect(parse_store_url(f"{SERVER}/{dbname}")) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM ledger_events ORDER BY notification_id"
        ).fetchall()
        conn.execute("CREATE TABLE raw_events (LIKE ledger_events INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for start in range(0, len(rows), batch_size):
                cursor.executemany(
                    "INSERT INTO raw_events (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                    rows[start : start + batch_size],
                )
                conn.commit()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(rows), "rows_per_s": len(rows) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()

    stream = b"\n".join(generate(args.messages, args.members, days=730, seed=99)) + b"\n"
    dbname = f"pl_bench_{uuid.uuid4().hex[:10]}"
    admin(f'CREATE DATABASE "{dbname}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = _ingest(f"sqlite:///{Path(tmp) / 'bench.db'}", stream, args.batch_size)
        print(f"sqlite:     {sqlite['events_per_s']:>9,.0f} events/s  ({sqlite['messages_per_s']:,.0f} messages/s)")
        postgres = _ingest(f"{SERVER}/{dbname}", stream, args.batch_size)
        print(f"postgresql: {postgres['events_per_s']:>9,.0f} events/s  ({postgres['messages_per_s']:,.0f} messages/s)")
        floor = _raw_floor(dbname, args.batch_size)
        print(
            f"raw floor:  {floor['rows_per_s']:>9,.0f} rows/s  (psycopg 3 executemany, {args.batch_size}/transaction)"
        )
    finally:
        admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    ratio = postgres["events_per_s"] / floor["rows_per_s"]
    print(f"postgresql ingest / raw floor = {ratio:.2f} (goal >= 0.33)")
    figures = {
        "messages": args.messages,
        "members": args.members,
        "batch_size": args.batch_size,
        "events": postgres["events"],
        "sqlite_events_per_s": round(sqlite["events_per_s"]),
        "postgres_events_per_s": round(postgres["events_per_s"]),
        "postgres_messages_per_s": round(postgres["messages_per_s"]),
        "raw_floor_rows_per_s": round(floor["rows_per_s"]),
        "postgres_to_floor_ratio": round(ratio, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
