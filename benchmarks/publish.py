"""Publishing balance events against a bare kafka-python producer (not a test).

    python -m benchmarks.publish [--changes 100000] [--members 5000]

Builds a PostgreSQL ledger with at least `--changes` balance, tier and redemption changes (generated stream),
then, side by side in one run, against a local broker (or KAFKA_BOOTSTRAP_SERVERS):
- the bare producer: kafka-python with the ledger's producer settings (acks=all) sending the very records the
  publisher sends (computed beforehand, so only the sending is timed), then one flush;
- `publish`: the same code the CLI runs (views caught up first, so the audit trail's catch-up is not timed),
  from position 0 to the head: reading the audit trail, building each record, sending, flushing per page
  and saving the position, with one request in flight per broker for per-member order.
The last line printed is one JSON object with every figure and the ratio (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import sys
import time
from typing import Any

from benchmarks.common import Discard, fresh_database
from consumers.jsonlines import ingest_lines
from consumers.kafka_clients import ensure_topics, new_producer
from consumers.kafka_publish import KafkaSink
from consumers.kafka_settings import KafkaSettings
from devkit.broker import kafka_cluster
from devkit.streamgen import StreamGenerator
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections.publish import Publisher, PublishTally
from projections.runner import Projections
from schemas.balance_events import Outbound

DATABASE = "pl_bench_publish"
PARTITIONS = 4


class _Collect:
    def __init__(self) -> None:
        self.records: list[Outbound] = []

    def send(self, record: Outbound) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass


def _build(changes: int, members: int) -> LedgerApplication:
    app = LedgerApplication(parse_store_url(fresh_database(DATABASE)), Program())
    stream = StreamGenerator(members=members, days=365, seed=11).lines(10**9)
    while (app.recorder.max_notification_id() or 0) < changes * 1.1:
        chunk = list(itertools.islice(stream, 20_000))
        ingest_lines(app, io.BytesIO(b"\n".join(chunk)), "bench.jsonl", Discard(), batch_size=1_000)
    Projections(app).catch_up()
    return app


def _bare(settings: KafkaSettings, topic: str, records: list[Outbound]) -> float:
    producer = new_producer(settings)
    started = time.perf_counter()
    for record in records:
        producer.send(topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return seconds


def _publish(app: LedgerApplication, settings: KafkaSettings, topic: str, profile: bool) -> tuple[float, int]:
    producer = new_producer(settings, max_in_flight_requests_per_connection=1)
    publisher = Publisher(Projections(app), topic, KafkaSink(producer, topic))
    tally = PublishTally()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    publisher.publish_available(tally)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    producer.close()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    return seconds, sum(tally.published.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=5_000)
    parser.add_argument("--profile", action="store_true", help="profile the publisher; top functions on stderr")
    args = parser.parse_args()

    app = _build(args.changes, args.members)
    collected = _Collect()
    Publisher(Projections(app), "collect", collected).publish_available(PublishTally())
    records = collected.records
    figures: dict[str, Any] = {"events": app.recorder.max_notification_id(), "changes": len(records)}
    with kafka_cluster(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as (bootstrap, _):
        settings = KafkaSettings(bootstrap)
        ensure_topics(settings, {"bench.bare": PARTITIONS, "bench.publish": PARTITIONS})
        bare_s = _bare(settings, "bench.bare", records)
        publish_s, published = _publish(app, settings, "bench.publish", args.profile)
    app.close()
    if published != len(records):
        raise AssertionError(f"published {published}, expected {len(records)}")
    figures.update(
        bare_seconds=round(bare_s, 2), bare_per_s=round(len(records) / bare_s),
        publish_seconds=round(publish_s, 2), publish_per_s=round(published / publish_s),
    )  # fmt: skip
    figures["publish_to_bare"] = round(figures["publish_per_s"] / figures["bare_per_s"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
