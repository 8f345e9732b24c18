"""`consume` and `produce`: the ledger on a Kafka stream."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import click

from consumers.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_ISOLATION_LEVEL,
    ISOLATION_LEVELS,
    PARTITIONS_PER_POLL_MAX,
    REPLAY_BATCH_SIZE,
)
from ledger.limits import BATCH_SIZE_MAX
from points_ledger import output
from points_ledger.context import Context, format_option, pass_context, setting_option
from points_ledger.errors import CommandError, reported_errors, warn
from points_ledger.kafka_options import (
    TOPIC,
    broker_unreachable,
    consumed_topic_options,
    idempotence_option,
    kafka_options,
    metrics_options,
    no_broker_hint,
)
from points_ledger.lifecycle import CRASH_BEFORE_COMMIT_ENV, crash_batch, stop_on_signals
from points_ledger.progress import count_progress

if TYPE_CHECKING:
    from ledger.outcomes import Tally


@click.command()
@kafka_options
@idempotence_option
@consumed_topic_options
@setting_option(
    "consume",
    "batch_size",
    "--batch-size",
    type=click.IntRange(1, BATCH_SIZE_MAX),
    show_default=str(DEFAULT_BATCH_SIZE),
    help="Most messages per transaction; a poll asks for this many per partition held, for at most "
    f"{PARTITIONS_PER_POLL_MAX} (env LEDGER_BATCH_SIZE).",
)
@click.option(
    "--until-idle",
    "until_idle_s",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after this long without a new message while holding partitions (time in a group join or "
    "rebalance does not count; without partitions for SECONDS + 60 it stops too). For batch jobs and tests. "
    "Default: run until stopped.",
)
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Stop once every partition of the topics is applied through the end it had when consume started "
    "(with read_committed, its last stable offset); partitions another consumer of the group holds count "
    "by the position the store recorded. For batch jobs, replays and tests: it ends when the work is done, "
    "not after a guessed idle time. With --until-idle too, whichever comes first.",
)
@metrics_options
@setting_option(
    "kafka",
    "isolation_level",
    "--isolation-level",
    type=click.Choice(ISOLATION_LEVELS),
    show_default=DEFAULT_ISOLATION_LEVEL,
    help="read_committed: of a transactional producer's records only those of committed transactions are "
    "applied; read_uncommitted also applies those of aborted ones (env KAFKA_ISOLATION_LEVEL). Producers that "
    "do not use transactions are read the same either way.",
)
@setting_option(
    "kafka",
    "session_timeout_ms",
    "--session-timeout-ms",
    type=click.IntRange(1000, 300_000),
    show_default="10000",
    help="Group session timeout; a consumer silent this long loses its partitions.",
)
@setting_option(
    "consume",
    "store_attempts",
    "--store-attempts",
    type=click.IntRange(1, 20),
    show_default="3",
    help="Tries per batch while the store is unavailable (0.5 s, 1 s, 2 s … apart; on PostgreSQL each "
    "try includes the library's own 10 reconnects), then exit 3.",
)
@click.option(
    "--from-beginning", is_flag=True,
    help="Replay: join a consumer group of its own (<group>.replay-<random>, named on stderr) and read every "
    "partition from offset 0, or from the position the store recorded for it. For a shadow ledger "
    "(--store of its own, perhaps a corrected --program); the production group's members and offsets are "
    f"left alone. Batches of up to {REPLAY_BATCH_SIZE:,} messages unless --batch-size (or its env/file setting) "
    "says otherwise.",
)  # fmt: skip
@format_option
@pass_context
def consume(
    context: Context, until_idle_s: float | None, until_caught_up: bool, from_beginning: bool, output_format: str
) -> None:
    """Apply messages from Kafka to the ledger, exactly once, in partition order.

    Each partition's records from one poll are applied in one transaction that
    also records the partition's position; on every (re)assignment the consumer
    continues right after the recorded position, so crashes, restarts and
    rebalances neither lose nor double a message. Invalid messages (and any a
    rule fails on) go to the dead-letter topic unchanged, with headers saying
    why. SIGTERM/SIGINT finish the current batch, commit and exit 0. Prints
    {processed, recorded, duplicates, rejected, invalid, failed} at the end.
    """
    from consumers.kafka_clients import accepts_connections
    from consumers.kafka_consumer import ConsumeOptions
    from consumers.kafka_run import consume as consume_run
    from consumers.metrics import ConsumerMetrics
    from consumers.retry import RetryPolicy

    config = context.settings
    topics = config.consume.topics
    dead_letter_topics = config.consume.dead_letter_topics()
    if set(dead_letter_topics.values()) & set(topics):
        raise click.BadParameter(
            "a dead-letter topic cannot be one of the consumed topics", param_hint="--dead-letter-topic"
        )
    with reported_errors(lambda: "-"):
        settings = config.kafka_settings()
    group = replay_group(config.consume.group) if from_beginning else config.consume.group
    batch_size = config.consume.batch_size
    if from_beginning:
        if context.loaded()[1].of("consume", "batch_size") == "default":
            batch_size = REPLAY_BATCH_SIZE
        warn(f"replaying from the beginning in consumer group {group}, in batches of up to {batch_size:,} messages")
    options = ConsumeOptions(
        topics, group, batch_size, until_idle_s,
        RetryPolicy(attempts=config.consume.store_attempts), crash_batch(), until_caught_up,
        crash_batch(CRASH_BEFORE_COMMIT_ENV),
    )  # fmt: skip
    metrics = ConsumerMetrics()
    show_progress = sys.stdout.isatty() and sys.stderr.isatty()
    servers = settings.bootstrap_servers
    with (
        stop_on_signals() as stop,
        context.ledger(must_exist=False) as app,
        count_progress("consume", None, enabled=show_progress) as progress,
    ):
        if not accepts_connections(servers):  # said once the store is open: a bad store is the error to show
            warn(f"nothing answers at {servers}: waiting for it; {no_broker_hint(servers)}")
        if config.metrics.port is not None:
            metrics.serve(config.metrics.port, config.metrics.address)
        tally = consume_run(
            app, settings, options, dead_letter_topics, stop, metrics=metrics, warn=warn,
            on_progress=lambda t: progress(t.processed, _summary(t)),
        )  # fmt: skip
    output.print_tally(tally, output_format, "consume")


def replay_group(group: str) -> str:
    """A consumer group nobody else is in: it holds no committed offsets and takes no partitions from
    `group`; where to start is the store's recorded position, or offset 0 when it has none."""
    return f"{group}.replay-{uuid.uuid4().hex[:12]}"


def _summary(tally: Tally) -> str:
    return f"{tally.processed:,} messages, {tally.recorded:,} recorded, {tally.dead_letters:,} dead letters"


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@kafka_options
@idempotence_option
@click.option("--topic", type=TOPIC, default=None, help="Topic to send to. Default: the first topic consumed.")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1000),
    default=4,
    show_default=True,
    help="Partitions if the topic has to be created.",
)
@format_option
@pass_context
def produce(context: Context, file: str, topic: str | None, partitions: int, output_format: str) -> None:
    """Send a JSON Lines FILE ('-' for stdin) to a topic, one record per line, keyed by member id.

    Lines are sent unchanged (invalid ones too: the consumer dead-letters them);
    blank lines are skipped. Creates the topic if it does not exist. Prints
    {sent, without_key, partitions}.
    """
    from kafka.errors import KafkaError

    from consumers.kafka_clients import ensure_topics, new_producer
    from consumers.kafka_producer import ProduceError, produce_lines

    topic = topic or context.settings.consume.topics[0]
    with reported_errors(lambda: "-"):
        settings = context.settings.kafka_settings()
        try:
            producer = new_producer(settings)
        except KafkaError as error:
            raise broker_unreachable(settings.bootstrap_servers, error) from error
        try:
            for created in ensure_topics(settings, {topic: partitions}):
                warn(f"created topic {created} with {partitions} partitions")
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115 (closed below)
            with stream:
                result = produce_lines(producer, topic, _whole_lines(stream))
        except ProduceError as error:
            raise CommandError(str(error)) from error
        finally:
            producer.close()
    if output_format == "json":
        output.print_json(result.as_dict())
    else:
        output.print_record("produce", result.as_dict())


def _whole_lines(stream: BinaryIO) -> Iterator[bytes]:
    from consumers.jsonlines import read_lines
    from consumers.kafka_producer import ProduceError
    from schemas.parsing import MESSAGE_MAX_BYTES

    for number, raw, truncated in read_lines(stream):
        if truncated:
            raise ProduceError(f"line {number} is longer than {MESSAGE_MAX_BYTES} bytes; lines before it were sent")
        yield raw


COMMANDS = [consume, produce]
