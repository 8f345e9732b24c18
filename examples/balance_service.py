"""An example downstream service: keeps its own table of member balances from `points-ledger publish`.

    python examples/balance_service.py --bootstrap-servers HOST:PORT --db balances.sqlite3 \
        [--topic loyalty.balance-events] [--group balance-service] [--until-idle 10]

It needs only kafka-python and the standard library. What it shows:
- de-duplication by the CloudEvents `ce_id` header: the publisher delivers at least once, so a record may
  arrive twice (after a publisher crash); the id is remembered in the same transaction as its effect;
- per-member order by `sequence`: a member's records share a key, hence a partition, hence an order; a
  record whose sequence is not above the member's last one changes nothing;
- offsets committed to Kafka only after the database commit, so a crash of this service re-reads records
  (and skips them by id) rather than losing them;
- unknown event types and versions are skipped, counted, and logged: a newer publisher never breaks it.
Prints {"applied", "duplicates", "stale", "skipped", "members"} when it stops (SIGTERM/SIGINT or idle).
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import time
from typing import Any

from kafka import KafkaConsumer

KNOWN_TYPE = "com.points-ledger.BalanceChanged.v1"
OTHER_KNOWN_TYPES = {"com.points-ledger.TierChanged.v1", "com.points-ledger.RedemptionRejected.v1"}


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE IF NOT EXISTS balances (member_id TEXT PRIMARY KEY, balance INTEGER NOT NULL, "
        "tier TEXT NOT NULL, sequence INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS seen (ce_id TEXT PRIMARY KEY);"
    )
    return db


def apply(db: sqlite3.Connection, headers: dict[str, str], value: bytes, counts: dict[str, int]) -> None:
    """One record, in the caller's transaction."""
    ce_id, ce_type = headers.get("ce_id"), headers.get("ce_type")
    if ce_id is None or ce_type is None:
        counts["skipped"] += 1
        return
    if db.execute("SELECT 1 FROM seen WHERE ce_id = ?", (ce_id,)).fetchone():
        counts["duplicates"] += 1
        return
    db.execute("INSERT INTO seen (ce_id) VALUES (?)", (ce_id,))
    if ce_type != KNOWN_TYPE:
        counts["other" if ce_type in OTHER_KNOWN_TYPES else "skipped"] += 1
        return
    event: dict[str, Any] = json.loads(value)
    row = db.execute("SELECT sequence FROM balances WHERE member_id = ?", (event["member_id"],)).fetchone()
    if row is not None and row[0] >= event["sequence"]:
        counts["stale"] += 1
        return
    db.execute(
        "INSERT INTO balances (member_id, balance, tier, sequence) VALUES (?, ?, ?, ?) ON CONFLICT (member_id) "
        "DO UPDATE SET balance = excluded.balance, tier = excluded.tier, sequence = excluded.sequence",
        (event["member_id"], event["balance"], event["tier"], event["sequence"]),
    )
    counts["applied"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", default="loyalty.balance-events")
    parser.add_argument("--group", default="balance-service")
    parser.add_argument("--db", required=True, help="SQLite file for the balances table")
    parser.add_argument("--until-idle", type=float, default=None, help="stop after this many idle seconds")
    parser.add_argument("--session-timeout-ms", type=int, default=10_000)
    args = parser.parse_args()

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    db = open_db(args.db)
    consumer = KafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap_servers, group_id=args.group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(args.session_timeout_ms // 3, 100),
    )  # fmt: skip
    counts = dict.fromkeys(("applied", "duplicates", "stale", "other", "skipped"), 0)
    last_record = time.monotonic()
    held: set[object] = set()  # the partitions held at the last poll: idle time counts from when they came
    try:
        while not stopping:
            batches = consumer.poll(timeout_ms=500)
            if consumer.assignment() != held:  # joined or rebalanced: no record could arrive before
                held, last_record = set(consumer.assignment()), time.monotonic()
            if not batches:
                idle = time.monotonic() - last_record
                if args.until_idle is not None and held and idle > args.until_idle:
                    break
                continue
            with db:  # one transaction per poll: the effects and the ids seen commit together
                for records in batches.values():
                    for record in records:
                        headers = {name: raw.decode() for name, raw in record.headers or []}
                        apply(db, headers, record.value, counts)
            consumer.commit()  # after the database commit: a crash in between re-reads, and skips by ce_id
            last_record = time.monotonic()
    finally:
        consumer.close()
    members = db.execute("SELECT COUNT(*) FROM balances").fetchone()[0]
    db.close()
    print(json.dumps({**counts, "members": members}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
