"""`topics create`: the Kafka topics the ledger reads and writes, created from the effective settings."""

from __future__ import annotations

import click

from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.errors import CommandError, first_line, reported_errors, warn
from points_ledger.kafka_options import TOPIC, broker_unreachable, kafka_options, topic_options
from points_ledger.publish_command import DEFAULT_PUBLISH_TOPIC

#: Partitions of a new consumed or balance-events topic: as many consumers (publisher readers) can share it.
DEFAULT_PARTITIONS = 4
#: Dead letters are few and read by people: one partition keeps them in the order they were written.
DEFAULT_DEAD_LETTER_PARTITIONS = 1


@click.group()
def topics() -> None:
    """The Kafka topics the ledger reads and writes."""


@topics.command("create")
@kafka_options
@topic_options
@click.option(
    "--publish-topic", type=TOPIC, default=DEFAULT_PUBLISH_TOPIC, show_default=True,
    help="The balance-events topic `publish` writes to (its --topic).",
)  # fmt: skip
@click.option(
    "--partitions", type=click.IntRange(1, 1000), default=DEFAULT_PARTITIONS, show_default=True,
    help="Partitions of each consumed topic and of the balance-events topic: at most this many consumers in "
    "one group share a topic (partitions can be added later, never removed).",
)  # fmt: skip
@click.option(
    "--dead-letter-partitions", type=click.IntRange(1, 1000), default=DEFAULT_DEAD_LETTER_PARTITIONS,
    show_default=True, help="Partitions of each dead-letter topic.",
)  # fmt: skip
@click.option(
    "--replication-factor", type=click.IntRange(1, 32), default=1, show_default=True,
    help="Copies of each partition: 1 on a single broker (a trial); your cluster's usual count (often 3) "
    "in production.",
)  # fmt: skip
@format_option
@pass_context
def topics_create(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, publish_topic: str, partitions: int, dead_letter_partitions: int, replication_factor: int,
    output_format: str,
) -> None:  # fmt: skip
    """Create the topics the ledger needs that do not exist yet: every consumed topic (--topic, default
    loyalty.transactions), its dead-letter topic (--dead-letter-topic, default <topic>.dlq) and the
    balance-events topic (--publish-topic).

    Names come from the effective settings (flags > environment > config file), as `consume` and `check`
    read them. Topics that exist are left as they are and reported as existing: running it again changes
    nothing (exit 0). Prints one line per topic: topic, role, partitions, status (created or exists).
    Exit 1 if the brokers cannot be reached or refuse to create a topic, 2 on bad settings.
    """
    from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    from consumers.kafka_clients import accepts_connections, create_topics

    config = context.settings
    with reported_errors(lambda: "-"):
        settings = config.kafka_settings()
    try:
        dead_letters = list(dict.fromkeys(config.consume.dead_letter_topics().values()))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--topic") from error
    consumed = config.consume.topics
    if set(dead_letters) & set(consumed):
        raise click.BadParameter(
            "a dead-letter topic cannot be one of the consumed topics", param_hint="--dead-letter-topic"
        )
    if publish_topic in {*consumed, *dead_letters}:
        raise click.BadParameter(
            "the balance-events topic cannot be a consumed or a dead-letter topic", param_hint="--publish-topic"
        )
    roles = {topic: "consumed" for topic in consumed} | dict.fromkeys(dead_letters, "dead letters")
    roles[publish_topic] = "balance events"
    wanted = {topic: dead_letter_partitions if role == "dead letters" else partitions for topic, role in roles.items()}
    servers = settings.bootstrap_servers
    if not accepts_connections(servers):
        raise broker_unreachable(servers, "no TCP connection")
    with reported_errors(lambda: "-"):
        try:
            states = create_topics(settings, wanted, replication_factor=replication_factor)
        except (KafkaConnectionError, KafkaTimeoutError) as error:
            raise broker_unreachable(servers, error) from error
        except KafkaError as error:
            raise CommandError(_refusal(servers, error)) from error
    rows = [
        {"topic": state.name, "role": roles[state.name], "partitions": state.partitions,
         "status": "created" if state.created else "exists"}
        for state in states
    ]  # fmt: skip
    for state in states:
        if not state.created and state.partitions is not None and state.partitions < wanted[state.name]:
            warn(f"{state.name} exists with {state.partitions} partition(s), fewer than the {wanted[state.name]} "
                 "asked for: it is left as it is (add partitions with your Kafka tools if more consumers are to "
                 "share it)")  # fmt: skip
    if output_format == "json":
        output.print_json_lines(rows)
    else:
        output.print_rows("topics", ["topic", "role", "partitions", "status"], ([*row.values()] for row in rows))


def _refusal(servers: str, error: Exception) -> str:
    from kafka.errors import AuthorizationError

    if isinstance(error, AuthorizationError):
        return (
            f"{servers} refused to create a topic ({first_line(error)}): grant this user CREATE on the cluster, or "
            "ask the Kafka administrators to create the topics `points-ledger check` lists"
        )
    return (
        f"{servers} could not create the topics: {first_line(error)}; the topics created before it stay: run it "
        "again once the cause is fixed"
    )


COMMANDS = [topics]
