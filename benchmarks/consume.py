"""Kafka consume throughput: a bare kafka-python consumer against `consume` into PostgreSQL (not a test).

    python -m benchmarks.consume [--messages 100000] [--members 5000] [--batch-size 500] [--scale-out 2] [--profile]

Produces the stream to a 4-partition topic (a local Tansu broker unless
KAFKA_BOOTSTRAP_SERVERS is set), then, in the same run, measures (a) a bare
group consumer that only `json.loads` each value and (b) the ledger's consume
loop into a fresh PostgreSQL database until every position is recorded. Each
runs in a child process of its own so its peak memory is its own; rates count
from the first record received (a group join is not throughput) until every
position is recorded. Then (c) --scale-out N consumers (default 2) in one group
into another fresh database, started together: their combined rate, and what
it is to (b)'s. With --profile, (b) runs under cProfile and the top functions
are printed. The last line printed is one JSON object with every figure and
the ratio b/a.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from kafka import KafkaConsumer

from benchmarks.common import SERVER, admin, drop_database
from consumers.defaults import DEFAULT_BATCH_SIZE
from consumers.kafka_batch import recorded_through
from consumers.kafka_clients import ensure_topics, new_producer
from consumers.kafka_consumer import ConsumeOptions
from consumers.kafka_producer import produce_lines
from consumers.kafka_run import consume
from consumers.kafka_settings import KafkaSettings, dead_letter_topic
from devkit.broker import kafka_cluster
from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.outcomes import Tally
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect

PARTITIONS = 4
SETTINGS = {"session_timeout_ms": 3_000, "heartbeat_interval_ms": 1_000}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare(bootstrap: str, topic: str, messages: int) -> dict[str, Any]:
    """(a) kafka-python in a group, json.loads of each value, nothing else."""
    settings = KafkaSettings(bootstrap, **SETTINGS)  # type: ignore[arg-type]
    consumer = KafkaConsumer(topic, **settings.consumer_config(f"bench-bare-{uuid.uuid4().hex[:8]}", 10_000))
    seen, first_at = 0, None
    while seen < messages:
        for records in consumer.poll(timeout_ms=1_000).values():
            if first_at is None:
                first_at = time.perf_counter()
            for record in records:
                with contextlib.suppress(ValueError):  # the stream has invalid lines on purpose
                    json.loads(record.value)
            seen += len(records)
    seconds = time.perf_counter() - (first_at or time.perf_counter())
    consumer.close(autocommit=False)
    return {"messages": seen, "seconds": seconds, "messages_per_s": seen / seconds, "peak_rss_mib": _peak_rss_mib()}


def ledger(bootstrap: str, topic: str, store: str, last_offsets: dict[int, int], batch_size: int,
           profile: bool, group: str) -> dict[str, Any]:  # fmt: skip
    """(b) the consume loop into PostgreSQL, stopped when every partition's last offset is recorded (by this
    process or, in a group of several, by any). Times are wall-clock (time.time), so that the parent can
    combine several processes: from this process's first record to the moment all was recorded."""
    settings = KafkaSettings(bootstrap, **SETTINGS)  # type: ignore[arg-type]
    app = LedgerApplication(parse_store_url(store), Program())
    stop = threading.Event()
    first_at: list[float] = []

    def on_progress(tally: Tally) -> None:
        if not first_at:
            first_at.append(time.time())

    def watch() -> None:  # a cheap position query every 0.2 s, beside the loop
        while not stop.wait(0.2):
            if recorded_through(app, topic, last_offsets):
                stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    options = ConsumeOptions((topic,), group, batch_size)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    tally = consume(app, settings, options, {topic: dead_letter_topic(topic)}, stop, warn=print,
                    on_progress=on_progress)  # fmt: skip
    done_at = time.time()
    if profiler:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(
            int(os.environ.get("BENCH_TOP", "25"))
        )
        if os.environ.get("BENCH_CALLERS"):
            pstats.Stats(profiler, stream=out).print_callers(os.environ["BENCH_CALLERS"])
        print(out.getvalue(), file=sys.stderr)
    app.close()
    return {"messages": tally.processed, "first_at": first_at[0] if first_at else None, "done_at": done_at,
            "peak_rss_mib": _peak_rss_mib()}  # fmt: skip


def _command(phase: str, arguments: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.consume", "--child", phase, json.dumps(arguments)]


def _result(stdout: bytes) -> dict[str, Any]:
    """A child's result: its last stdout line."""
    return json.loads(stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def _child(phase: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its last stdout line is the result."""
    return _result(subprocess.run(_command(phase, arguments), stdout=subprocess.PIPE, check=True).stdout)


def _group_of(count: int, arguments: dict[str, Any]) -> dict[str, Any]:
    """`count` ledger consumers in one group on one database, started together: the combined rate, from the
    first record any of them received until all was recorded."""
    group = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    children = [subprocess.Popen(_command("ledger", {**arguments, "group": group}), stdout=subprocess.PIPE)
                for _ in range(count)]  # fmt: skip
    results = []
    for child in children:
        stdout, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"a ledger consumer failed ({child.returncode})")
        results.append(_result(stdout))
    started = min(r["first_at"] for r in results if r["first_at"] is not None)
    seconds = max(r["done_at"] for r in results) - started
    with connect(parse_store_url(arguments["store"])) as conn:
        events = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]  # type: ignore[index]
    processed = sum(r["messages"] for r in results)
    return {"consumers": count, "messages": processed, "events": events, "seconds": seconds,
            "messages_per_s": processed / seconds, "events_per_s": events / seconds,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "per_consumer": [r["messages"] for r in results]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--profile", action="store_true", help="profile (b) and print the top functions on stderr")
    parser.add_argument("--scale-out", type=int, default=2, metavar="N",
                        help="then N consumers in one group into another database (1: skip)")  # fmt: skip
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        phase, arguments = args.child[0], json.loads(args.child[1])
        if phase == "ledger":
            arguments["last_offsets"] = {int(p): o for p, o in arguments["last_offsets"].items()}
        print(json.dumps(bare(**arguments) if phase == "bare" else ledger(**arguments)))
        return

    topic = f"bench.{uuid.uuid4().hex[:8]}"
    dbname = f"pl_bench_{uuid.uuid4().hex[:10]}"
    admin(f'CREATE DATABASE "{dbname}"')
    try:
        with kafka_cluster(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as (bootstrap, _):
            settings = KafkaSettings(bootstrap)
            ensure_topics(settings, {topic: PARTITIONS, dead_letter_topic(topic): 1})
            lines = generate(args.messages, args.members, days=365, seed=101)
            producer = new_producer(settings)
            started = time.perf_counter()
            produced = produce_lines(producer, topic, lines)
            produce_s = time.perf_counter() - started
            producer.close()
            print(f"produced:   {produced.sent:>9,} messages in {produce_s:.1f} s ({produced.sent / produce_s:,.0f}/s)")
            a = _child("bare", {"bootstrap": bootstrap, "topic": topic, "messages": produced.sent})
            peak_a = a["peak_rss_mib"]
            print(f"(a) bare:   {a['messages_per_s']:>9,.0f} messages/s  (json.loads only; peak {peak_a:.0f} MiB)")
            arguments = {"bootstrap": bootstrap, "topic": topic, "store": f"{SERVER}/{dbname}",
                         "last_offsets": produced.last_offsets, "batch_size": args.batch_size,
                         "profile": args.profile}  # fmt: skip
            b = _group_of(1, arguments)
            print(f"(b) ledger: {b['messages_per_s']:>9,.0f} messages/s  ({b['events_per_s']:,.0f} events/s into "
                  f"PostgreSQL; peak {b['peak_rss_mib']:.0f} MiB)")  # fmt: skip
            if args.scale_out > 1:
                admin(f'CREATE DATABASE "{dbname}_scale"')
                c = _group_of(args.scale_out, {**arguments, "store": f"{SERVER}/{dbname}_scale", "profile": False})
                print(f"(c) {args.scale_out} ledger consumers in one group, one database: "
                      f"{c['messages_per_s']:>9,.0f} messages/s (x{c['messages_per_s'] / b['messages_per_s']:.2f} "
                      f"of one; split {c['per_consumer']})")  # fmt: skip
    finally:
        drop_database(dbname)
        drop_database(f"{dbname}_scale")
    ratio = b["messages_per_s"] / a["messages_per_s"]
    print(f"(b) / (a) = {ratio:.3f} (goal >= 0.2)")
    print(json.dumps({
        "messages": produced.sent, "members": args.members, "partitions": PARTITIONS, "batch_size": args.batch_size,
        "produce_messages_per_s": round(produced.sent / produce_s),
        "bare_messages_per_s": round(a["messages_per_s"]), "bare_peak_rss_mib": round(a["peak_rss_mib"]),
        "ledger_messages_per_s": round(b["messages_per_s"]), "ledger_events_per_s": round(b["events_per_s"]),
        "ledger_events": b["events"], "ledger_peak_rss_mib": round(b["peak_rss_mib"]),
        "ratio_ledger_to_bare": round(ratio, 3),
        **({"scale_out_consumers": c["consumers"], "scale_out_messages_per_s": round(c["messages_per_s"]),
            "scale_out_to_one": round(c["messages_per_s"] / b["messages_per_s"], 2)} if args.scale_out > 1 else {}),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
