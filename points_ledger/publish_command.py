"""`publish`: the ledger's balance changes, tier changes and refused redemptions, to a Kafka topic."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.errors import CommandError, reported_errors, warn
from points_ledger.kafka_options import TOPIC, broker_unreachable, kafka_options, metrics_options
from points_ledger.lifecycle import stop_on_signals
from points_ledger.progress import count_progress
from projections.defaults import DEFAULT_SOURCE, POLL_INTERVAL_S_MAX, POLL_INTERVAL_S_MIN

if TYPE_CHECKING:
    from projections.publish import PublishTally

DEFAULT_PUBLISH_TOPIC = "loyalty.balance-events"


@click.command()
@kafka_options
@metrics_options
@click.option("--topic", type=TOPIC, default=DEFAULT_PUBLISH_TOPIC, show_default=True, help="Topic to publish to.")
@click.option(
    "--partitions", type=click.IntRange(1, 1000), default=4, show_default=True,
    help="Partitions if the topic has to be created.",
)  # fmt: skip
@click.option(
    "--from-beginning", is_flag=True,
    help="Forget this topic's position and publish the whole history again (for a new subscriber).",
)  # fmt: skip
@click.option(
    "--source", default=DEFAULT_SOURCE, show_default=True, help="The CloudEvents `ce_source` of every record."
)
@click.option(
    "--poll-interval", "poll_interval_s", type=click.FloatRange(POLL_INTERVAL_S_MIN, POLL_INTERVAL_S_MAX),
    default=2.0, show_default=True,
    help="Seconds between polls of the log (on PostgreSQL a NOTIFY wakes the publisher at once).",
)  # fmt: skip
@click.option(
    "--until-idle", "until_idle_s", type=click.FloatRange(0.1, None), default=None, metavar="SECONDS",
    help="Stop after this long with nothing new to publish (default: run until SIGTERM/SIGINT).",
)  # fmt: skip
@format_option
@pass_context
def publish(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, topic: str, partitions: int, from_beginning: bool, source: str, poll_interval_s: float,
    until_idle_s: float | None, output_format: str,
) -> None:  # fmt: skip
    """Publish balance events to Kafka until SIGTERM/SIGINT, keyed by member id.

    BalanceChanged for every change of a balance (earned, redeemed, expired, clawed_back, adjusted,
    migrated), TierChanged for every tier change, RedemptionRejected for every refused redemption; JSON
    values (`schemas export` writes their JSON Schemas), CloudEvents headers (`ce_id` is stable per ledger
    change: de-duplicate on it). Each member's records stay in order. The publisher keeps its own position
    per topic and saves it only after the broker acknowledged a page (acks=all): a crash re-sends, never
    skips. Run one publisher per topic. Prints {published, by_type, pages, position, lag} at the end.
    """
    from kafka.errors import KafkaError

    from consumers.kafka_clients import ensure_topics, new_producer
    from consumers.kafka_producer import ProduceError
    from consumers.kafka_publish import KafkaSink
    from consumers.metrics import PublisherMetrics
    from projections.publish import Publisher
    from projections.runner import Projections

    config = context.settings
    with reported_errors(lambda: "-"):
        settings = config.kafka_settings()
        try:
            # one request in flight per broker: a retried batch cannot overtake the next (per-member order)
            producer = new_producer(settings, max_in_flight_requests_per_connection=1)
        except KafkaError as error:
            raise broker_unreachable(settings.bootstrap_servers, error) from error
    metrics = PublisherMetrics()
    show_progress = sys.stdout.isatty() and sys.stderr.isatty()
    try:
        with (
            reported_errors(context.describe_store),
            stop_on_signals() as stop,
            context.ledger(must_exist=False) as app,
            count_progress("publish", None, enabled=show_progress) as progress,
        ):
            for created in ensure_topics(settings, {topic: partitions}):
                warn(f"created topic {created} with {partitions} partitions")
            if config.metrics.port is not None:
                metrics.serve(config.metrics.port, config.metrics.address)
            publisher = Publisher(Projections(app), topic, KafkaSink(producer, topic), source)
            if from_beginning:
                publisher.restart_from_beginning()

            def on_page(tally: PublishTally) -> None:
                metrics.page(dict(tally.published), tally.position, tally.head)
                lag = max(tally.head - tally.position, 0)
                progress(sum(tally.published.values()), f"position {tally.position:,}, lag {lag:,}")

            tally = publisher.run(stop, poll_interval_s=poll_interval_s, until_idle_s=until_idle_s, on_page=on_page)
    except ProduceError as error:
        raise CommandError(f"{error}; the position was not moved past it, a restart sends it again") from error
    finally:
        producer.close()
    if output_format == "json":
        output.print_json(tally.as_dict())
    else:
        output.print_record("publish", tally.as_dict())


COMMANDS = [publish]
