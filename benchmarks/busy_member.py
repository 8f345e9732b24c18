"""One busy member: does a message cost the same after 20,000 of them as after 1,000? (not a test)

    python -m benchmarks.busy_member [--purchases 20000] [--span-days 365] [--batch-size 100] [--store URL]

Real programs have members with a huge history: shared store cards, test cards, corporate accounts. This
ingests `--purchases` purchases of ONE member, spread evenly over `--span-days` (365 by default: every lot
stays open and every purchase stays in the tier window, so the member's live state is as large as it can
get), in batches of `--batch-size` through the ledger's own ingest path, and times each batch. It prints
the time per message of the first 1,000 and of the last 1,000 messages, their ratio
`late_to_early_ratio` (goal: at most 1.5), and the store's bytes per event (events, snapshots and the
claim index; on SQLite the file's size, on PostgreSQL the database's size minus that of an empty ledger).
The store is a fresh SQLite file unless `--store` names a PostgreSQL database to create (it is dropped
afterwards). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import SERVER, Discard, admin, drop_database
from consumers.jsonlines import ingest_lines
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect

#: Messages at each end of the stream whose cost is compared.
WINDOW = 1_000
START = datetime(2024, 1, 1, tzinfo=UTC)


def stream(purchases: int, span: timedelta) -> Iterator[bytes]:
    """`purchases` purchases of member BUSY-1, evenly spread over `span`, amounts 1.00 to 99.99."""
    step = span / purchases
    for n in range(purchases):
        occurred_at = (START + step * n).isoformat().replace("+00:00", "Z")
        amount = f"{1 + n % 99}.{n % 100:02d}"
        yield json.dumps({
            "event_id": f"e{n}", "type": "purchase", "member_id": "BUSY-1", "occurred_at": occurred_at,
            "transaction_id": f"T{n}", "amount": amount, "currency": "USD",
        }).encode()  # fmt: skip


def ingest_timed(app: LedgerApplication, lines: list[bytes], batch_size: int) -> list[float]:
    """Seconds per message of every message, taken as the mean of its batch (each batch one ingest call,
    so that one batch's time is not spread over the next's)."""
    per_message: list[float] = []
    received_at = START + timedelta(days=3650)
    for start in range(0, len(lines), batch_size):
        chunk = lines[start : start + batch_size]
        began = time.perf_counter()
        tally = ingest_lines(
            app, io.BytesIO(b"\n".join(chunk)), "busy.jsonl", Discard(), batch_size=batch_size, received_at=received_at
        )
        seconds = time.perf_counter() - began
        if tally.recorded != len(chunk):
            raise RuntimeError(f"expected every purchase recorded, got {tally.as_dict()}")
        per_message.extend([seconds / len(chunk)] * len(chunk))
    return per_message


def store_bytes(store_url: str, path: Path | None) -> int:
    if path is not None:
        return path.stat().st_size
    with connect(parse_store_url(store_url)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def run(purchases: int, span_days: int, batch_size: int, store: str | None) -> dict[str, object]:
    lines = list(stream(purchases, timedelta(days=span_days)))
    with tempfile.TemporaryDirectory() as tmp:
        database = None
        path: Path | None = None
        if store is None:
            path = Path(tmp) / "busy.db"
            store_url = f"sqlite:///{path}"
        else:
            database = f"bench_busy_{uuid.uuid4().hex[:8]}"
            admin(f'CREATE DATABASE "{database}"')
            store_url = f"{SERVER}/{database}"
        try:
            app = LedgerApplication(parse_store_url(store_url), Program())
            empty = store_bytes(store_url, path)
            per_message = ingest_timed(app, lines, batch_size)
            events = app.recorder.max_notification_id() or 0
            member = app.member("BUSY-1")
            app.close()
            size = store_bytes(store_url, path) - (empty if path is None else 0)
        finally:
            if database is not None:
                drop_database(database)
    early = sum(per_message[:WINDOW]) / WINDOW
    late = sum(per_message[-WINDOW:]) / WINDOW
    return {
        "store": "sqlite" if store is None else "postgresql",
        "purchases": purchases,
        "span_days": span_days,
        "batch_size": batch_size,
        "events": events,
        "balance": member.balance if member is not None else None,
        "seconds": round(sum(per_message), 2),
        "early_ms_per_message": round(early * 1000, 4),
        "late_ms_per_message": round(late * 1000, 4),
        "late_to_early_ratio": round(late / early, 3),
        "store_bytes": size,
        "store_bytes_per_event": round(size / max(events, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purchases", type=int, default=20_000)
    parser.add_argument("--span-days", type=int, default=365)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    if args.purchases < 2 * WINDOW:
        parser.error(f"--purchases must be at least {2 * WINDOW}")
    result = run(args.purchases, args.span_days, args.batch_size, None if args.store == "sqlite" else args.store)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
