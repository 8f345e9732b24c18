"""Read models at scale on PostgreSQL (not a test).

    python -m benchmarks.rebuild [--messages 900000] [--members 50000] [--days 730] [--fresh]

Builds a ledger of about a million events for 50,000 members once, in the database `pl_bench_views`, and
reuses it on later runs (`--fresh` builds it again). Then, side by side in one run:
- the floor: the whole log read in pages of 5,000 with the library's recorder, each event's JSON state
  decoded by the library's transcoder, nothing built;
- `rebuild` of every view (the same code the CLI runs, with its default workers), and its ratio to the
  floor's events/s; how long it took to load the rows (the rest: primary keys, indexes, VACUUM, swap);
- `balance` latency over 1,000 random members, in-process, each answer a fresh catch-up check and read
  transaction (p50, p99, max);
- `report liability --as-of`, a one-year `report rollforward --by month` and `report kpis --by month`;
- `digest`, and `verify` (one pass over the log, like a rebuild);
- the follower's lag: `consume` of 100,000 messages from a local broker into a fresh database while
  `projections follow` runs beside it, the views' lag sampled every 0.5 s (`--no-follow` skips it).
The last line printed is one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from benchmarks.common import SERVER, Discard, database_exists, fresh_database
from consumers.jsonlines import ingest_lines
from consumers.kafka_clients import ensure_topics, new_producer
from consumers.kafka_producer import produce_lines
from consumers.kafka_settings import KafkaSettings, dead_letter_topic
from devkit.broker import kafka_cluster
from devkit.streamgen import DEFAULT_START, StreamGenerator, generate
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections import kpis, periods, queries
from projections.digest import log_digest
from projections.runner import Projections, rebuild_workers, select_views
from projections.verify import verify

DATABASE = "pl_bench_views"
FLOOR_PAGE = 5_000
BALANCE_SAMPLES = 1_000


def _build(messages: int, members: int, days: int) -> dict[str, float]:
    fresh_database(DATABASE)
    app = LedgerApplication(parse_store_url(f"{SERVER}/{DATABASE}"), Program())
    started = time.perf_counter()
    stream = StreamGenerator(members=members, days=days, seed=7).lines(messages)
    built = 0
    while chunk := list(itertools.islice(stream, 100_000)):
        ingest_lines(app, io.BytesIO(b"\n".join(chunk)), "bench.jsonl", Discard(), batch_size=1_000)
        built += len(chunk)
        print(f"built {built:,} messages", flush=True)
    seconds = time.perf_counter() - started
    app.sweep(DEFAULT_START + timedelta(days=days + 1))
    app.close()
    return {"build_seconds": round(seconds, 1)}


def _floor(app: LedgerApplication) -> dict[str, float]:
    started = time.perf_counter()
    start, events = 1, 0
    while True:
        page = app.recorder.select_notifications(start=start, limit=FLOOR_PAGE)
        for notification in page:
            app.mapper.transcoder.decode(notification.state)
        events += len(page)
        if len(page) < FLOOR_PAGE:
            break
        start = page[-1].id + 1
    seconds = time.perf_counter() - started
    return {"floor_events": events, "floor_seconds": round(seconds, 2), "floor_events_per_s": round(events / seconds)}


LAG_DATABASE = "pl_bench_follow"
LAG_MESSAGES = 100_000
LAG_SAMPLE_S = 0.5


def _status_lag(url: str) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "points_ledger", "--store", url, "projections", "status", "--format", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return max(int(json.loads(line)["lag"]) for line in done.stdout.splitlines())


def _follower_lag(members: int) -> dict[str, Any]:
    """`consume` of LAG_MESSAGES from a local broker into a fresh database with `projections follow` beside it:
    the views' lag behind the log, sampled every LAG_SAMPLE_S while consume runs, and how long the follower
    takes to reach the head once consume has stopped."""
    url = fresh_database(LAG_DATABASE)
    setup = LedgerApplication(parse_store_url(url), Program())
    Projections(setup)  # the ledger's and the views' tables exist before either process starts
    setup.close()
    topic = "bench.follow"
    command = [sys.executable, "-m", "points_ledger", "--store", url]
    with kafka_cluster(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as (bootstrap, _):
        settings = KafkaSettings(bootstrap)
        ensure_topics(settings, {topic: 4, dead_letter_topic(topic): 1})
        producer = new_producer(settings)
        produce_lines(producer, topic, generate(LAG_MESSAGES, members, 365, seed=3))
        producer.close()
        follower = subprocess.Popen([*command, "projections", "follow", "--format", "json"], stdout=subprocess.PIPE)
        consumer = subprocess.Popen(
            [*command, "consume", "--bootstrap-servers", bootstrap, "--topic", topic, "--group", "bench-follow",
             "--session-timeout-ms", "3000", "--until-idle", "3", "--format", "json"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        lags = []
        while consumer.poll() is None:
            lags.append(_status_lag(url))
            time.sleep(LAG_SAMPLE_S)
        stopped = time.perf_counter()
        while _status_lag(url) > 0:
            time.sleep(0.1)
        catch_up_s = time.perf_counter() - stopped
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=60)
    lags.sort()
    return {
        "follow_lag_events_p50": lags[len(lags) // 2] if lags else 0,
        "follow_lag_events_max": lags[-1] if lags else 0,
        "follow_samples": len(lags),
        "follow_head_after_consume_s": round(catch_up_s, 2),
    }


def _timed(function: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=900_000)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--fresh", action="store_true", help="build the data set again")
    parser.add_argument("--no-follow", action="store_true", help="skip the follower-lag measurement")
    args = parser.parse_args()

    figures: dict[str, Any] = {}
    if args.fresh or not database_exists(DATABASE):
        figures.update(_build(args.messages, args.members, args.days))
    app = LedgerApplication(parse_store_url(f"{SERVER}/{DATABASE}"), Program())
    figures["events"] = app.recorder.max_notification_id()
    projections = Projections(app)

    figures.update(_floor(app))
    print(f"floor: {figures['floor_events_per_s']:,} events/s", flush=True)
    started, loaded = time.perf_counter(), [0.0]

    def on_batch(_events: int, _position: int) -> None:
        loaded[0] = time.perf_counter()

    figures["rebuild_workers"] = rebuild_workers("postgresql", figures["events"], None)
    rebuilt, seconds = _timed(lambda: projections.rebuild(select_views(), on_batch))
    position = rebuilt.position
    figures["rebuild_load_seconds"] = round(loaded[0] - started, 2)  # the rest: keys, indexes, VACUUM, swap
    figures["rebuild_seconds"] = round(seconds, 2)
    figures["rebuild_events_per_s"] = round(position / seconds)
    figures["rebuild_to_floor"] = round(figures["rebuild_events_per_s"] / figures["floor_events_per_s"], 3)
    print(f"rebuild: {figures['rebuild_events_per_s']:,} events/s, ratio {figures['rebuild_to_floor']}", flush=True)

    with projections.reading() as (sql, _):
        members = [row["member_id"] for row in queries.balances(sql, None)]
    sample = random.Random(1).sample(members, min(BALANCE_SAMPLES, len(members)))
    latencies = []
    for member_id in sample:
        started = time.perf_counter()
        with projections.reading() as (sql, _):
            if queries.statement(sql, member_id, None) is None:
                raise AssertionError(f"no member {member_id}")
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    figures["balance_ms_p50"] = round(statistics.median(latencies), 2)
    figures["balance_ms_p99"] = round(latencies[int(len(latencies) * 0.99) - 1], 2)
    figures["balance_ms_max"] = round(latencies[-1], 2)

    as_of = DEFAULT_START + timedelta(days=args.days // 2)
    year = (as_of - timedelta(days=365), as_of)
    months = periods.split(*year, "month")
    with projections.reading() as (sql, _):
        _, figures["liability_s"] = _timed(lambda: queries.liability(sql, as_of, app.program))
        _, figures["rollforward_by_month_s"] = _timed(lambda: queries.rollforwards(sql, months))
        _, figures["kpis_by_month_s"] = _timed(
            lambda: kpis.kpi_rows(months, kpis.counts_from_views(sql, months), app.program)
        )
    _, figures["digest_s"] = _timed(lambda: log_digest(app, figures["events"], app.store.chain))
    result, figures["verify_s"] = _timed(lambda: verify(projections, None))
    figures["verify_discrepancies"] = result.found
    if not args.no_follow:
        figures.update(_follower_lag(args.members))
    for key in ("liability_s", "rollforward_by_month_s", "kpis_by_month_s", "digest_s", "verify_s"):
        figures[key] = round(figures[key], 3)
    app.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
