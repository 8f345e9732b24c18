"""The demo's run: a generated stream produced to Kafka, consumed into a fresh SQLite ledger, summarised.

`points-ledger demo` chooses the broker (a local one unless a cluster is configured), shows progress and
prints the summary; this module does the work in between and imports nothing of the command line (which
imports it only when the demo runs: it loads kafka-python and the ledger).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from consumers.kafka_batch import recorded_through
from consumers.kafka_clients import ensure_topics, new_producer
from consumers.kafka_consumer import ConsumeOptions
from consumers.kafka_producer import ProduceResult, produce_lines
from consumers.kafka_run import consume
from consumers.kafka_settings import KafkaSettings, dead_letter_topic
from devkit.streamgen import StreamGenerator
from ledger.application import LedgerApplication
from ledger.outcomes import Tally
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections import queries
from projections.runner import Projections

DEMO_TOPIC = "loyalty.transactions"
DEMO_PARTITIONS = 4
#: Short group timeouts: the local broker holds each join about half of it.
DEMO_SESSION_TIMEOUT_MS = 3_000
DEMO_HEARTBEAT_INTERVAL_MS = 1_000
#: Most seconds the consume phase may go without a new message before the demo gives up waiting.
DEMO_IDLE_LIMIT_S = 30.0
TOP_BALANCES = 10

#: (label, total) → a context yielding a callback taking (items done, summary): how the caller shows progress.
Progress: TypeAlias = Callable[[str, int], AbstractContextManager[Callable[[int, str], None]]]


class DemoIncompleteError(RuntimeError):
    """The consumer went idle before every produced message was recorded."""


@dataclass(frozen=True)
class DemoRun:
    """One demo: the stream, the topic it goes through and the ledger file it ends in (replaced)."""

    generator: StreamGenerator
    messages: int
    topic: str
    ledger_path: Path
    as_of: datetime


def group_timeouts() -> dict[str, Any]:
    """The demo's consumer group timeouts (short, so that a join on the local broker is quick)."""
    return {"session_timeout_ms": DEMO_SESSION_TIMEOUT_MS, "heartbeat_interval_ms": DEMO_HEARTBEAT_INTERVAL_MS}


def run_demo(
    settings: KafkaSettings, run: DemoRun, *, progress: Progress, warn: Callable[[str], None]
) -> dict[str, Any]:
    """Create the topics, produce the stream, consume it into a new SQLite ledger, sweep at `run.as_of`, and
    return the summary: messages, members per tier, top balances and the liability report."""

    run.ledger_path.unlink(missing_ok=True)
    ensure_topics(settings, {run.topic: DEMO_PARTITIONS, dead_letter_topic(run.topic): 1})
    produced = _produce(settings, run, progress)
    app = LedgerApplication(parse_store_url(f"sqlite:///{run.ledger_path}"), Program())
    try:
        tally = _consume(app, settings, run.topic, produced, progress, warn)
        app.sweep(run.as_of)
        return _summary(app, tally, run.as_of)
    finally:
        app.close()


def _produce(settings: KafkaSettings, run: DemoRun, progress: Progress) -> ProduceResult:

    producer = new_producer(settings)
    try:
        with progress("produce", run.messages) as update:
            lines = run.generator.lines(run.messages)
            return produce_lines(producer, run.topic, lines, on_sent=lambda n: update(n, f"{n:,}"))
    finally:
        producer.close()


def _consume(  # noqa: PLR0917 (the run's pieces, each used)
    app: LedgerApplication, settings: KafkaSettings, topic: str, produced: ProduceResult, progress: Progress,
    warn: Callable[[str], None],
) -> Tally:  # fmt: skip

    stop = threading.Event()

    def all_recorded() -> bool:
        return recorded_through(app, topic, produced.last_offsets)

    options = ConsumeOptions((topic,), f"points-ledger-demo-{os.getpid()}", 1_000, until_idle_s=DEMO_IDLE_LIMIT_S)
    with progress("consume", produced.sent) as update:

        def on_progress(tally: Tally) -> None:
            update(tally.processed, f"{tally.processed:,} / {produced.sent:,}")
            if all_recorded():
                stop.set()

        dead_letters = {topic: dead_letter_topic(topic)}
        tally = consume(app, settings, options, dead_letters, stop, warn=warn, on_progress=on_progress)
    if not all_recorded():
        raise DemoIncompleteError(
            f"the stream was not consumed completely ({tally.processed} of {produced.sent}); is the broker still "
            "up? run the demo again"
        )
    return tally


def _summary(app: LedgerApplication, tally: Tally, as_of: datetime) -> dict[str, Any]:
    """What the demo shows, read from the views (caught up on the whole consumed stream first)."""

    with Projections(app).reading() as (sql, _):
        members = list(queries.balances(sql, as_of))
        liability = queries.liability(sql, as_of, app.program)
    tiers = Counter(member["tier"] for member in members)
    top = sorted(members, key=lambda member: (-member["balance"], member["member_id"]))[:TOP_BALANCES]
    return {
        "messages": tally.as_dict() | {"dead_letters": tally.dead_letters},
        "members_per_tier": {tier.name: tiers.get(tier.name, 0) for tier in app.program.tiers},
        "top_balances": top,
        "liability": liability,
    }
