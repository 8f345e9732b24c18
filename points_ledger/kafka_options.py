"""Command-line options shared by every command that talks to Kafka: the connection, its security, topics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from consumers.defaults import (
    COMPRESSION_CODECS,
    DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_GROUP,
    DEFAULT_TOPIC,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
)
from points_ledger.context import setting_option
from points_ledger.errors import CommandError


class TopicName(click.ParamType[str]):
    name = "TOPIC"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from consumers.kafka_settings import check_topic_name

        try:
            return check_topic_name(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


TOPIC = TopicName()
F = TypeVar("F", bound=Callable[..., Any])


def kafka_options(command: F) -> F:
    """The Kafka connection and its security, for every command that talks to Kafka. Secrets have no flag:
    KAFKA_SASL_PASSWORD / KAFKA_SSL_KEY_PASSWORD, or a file named here, in the environment or the config."""
    options = [
        setting_option("kafka", "bootstrap_servers", "--bootstrap-servers", metavar="HOST:PORT[,…]",
                       show_default=DEFAULT_BOOTSTRAP_SERVERS,
                       help="Kafka brokers to start from (env KAFKA_BOOTSTRAP_SERVERS)."),
        setting_option("kafka", "security_protocol", "--security-protocol", type=click.Choice(SECURITY_PROTOCOLS),
                       show_default="PLAINTEXT", help="How to talk to the brokers (env KAFKA_SECURITY_PROTOCOL)."),
        setting_option("kafka", "sasl_mechanism", "--sasl-mechanism", type=click.Choice(SASL_MECHANISMS),
                       help="SASL mechanism, for SASL_PLAINTEXT and SASL_SSL (env KAFKA_SASL_MECHANISM)."),
        setting_option("kafka", "sasl_username", "--sasl-username", metavar="USER",
                       help="SASL user (env KAFKA_SASL_USERNAME)."),
        setting_option("kafka", "sasl_password_file", "--sasl-password-file", metavar="FILE",
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="File whose first line is the SASL password (env KAFKA_SASL_PASSWORD_FILE; or put "
                       "the password itself in KAFKA_SASL_PASSWORD). There is no flag for the password."),
        setting_option("kafka", "ssl_cafile", "--ssl-cafile", metavar="PEM", type=click.Path(path_type=Path),
                       help="CA certificates that sign the brokers' certificates (env KAFKA_SSL_CAFILE). "
                       "Default: the system's trusted CAs."),
        setting_option("kafka", "ssl_certfile", "--ssl-certfile", metavar="PEM", type=click.Path(path_type=Path),
                       help="Our client certificate, for brokers that ask for one (env KAFKA_SSL_CERTFILE)."),
        setting_option("kafka", "ssl_keyfile", "--ssl-keyfile", metavar="PEM", type=click.Path(path_type=Path),
                       help="The client certificate's private key (env KAFKA_SSL_KEYFILE)."),
        setting_option("kafka", "ssl_key_password_file", "--ssl-key-password-file", metavar="FILE",
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="File holding the private key's password (env KAFKA_SSL_KEY_PASSWORD_FILE, or "
                       "KAFKA_SSL_KEY_PASSWORD)."),
        setting_option("kafka", "ssl_check_hostname", "--ssl-check-hostname/--no-ssl-check-hostname", default=None,
                       show_default="check",
                       help="Check that a broker's certificate names the host we connected to "
                       "(env KAFKA_SSL_CHECK_HOSTNAME)."),
        setting_option("kafka", "compression", "--compression", type=click.Choice(COMPRESSION_CODECS),
                       show_default="none",
                       help="Codec of the batches we produce (env KAFKA_COMPRESSION); every codec is read."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def idempotence_option(command: F) -> F:
    return setting_option(
        "kafka", "idempotent_producer", "--idempotent-producer/--no-idempotent-producer", default=None,
        show_default="off", help="Idempotent producer (real Kafka clusters; not with the local Tansu broker).",
    )(command)  # fmt: skip


def _topics_option() -> Callable[[F], F]:
    return setting_option(
        "consume",
        "topics",
        "--topic",
        type=TOPIC,
        multiple=True,
        show_default=DEFAULT_TOPIC,
        help="Topic to consume; repeat for several (env LEDGER_TOPICS, comma-separated).",
    )


def _dead_letter_option() -> Callable[[F], F]:
    return setting_option(
        "consume",
        "dead_letter_topic",
        "--dead-letter-topic",
        type=TOPIC,
        help="Where invalid messages go (env LEDGER_DEAD_LETTER_TOPIC). Default: <topic>.dlq for each topic.",
    )


def consumed_topic_options(command: F) -> F:
    """The topics consumed, their group and dead-letter topic: for `consume` and for `check`."""
    options = [
        _topics_option(),
        setting_option(
            "consume",
            "group",
            "--group",
            show_default=DEFAULT_GROUP,
            help="Consumer group; processes in one group split the partitions (env LEDGER_GROUP).",
        ),
        _dead_letter_option(),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def topic_options(command: F) -> F:
    """The topics consumed and their dead-letter topic, without the group: for `topics create`."""
    return _topics_option()(_dead_letter_option()(command))


def metrics_options(command: F) -> F:
    """Where to serve Prometheus metrics, for every long-running Kafka command."""
    options = [
        setting_option(
            "metrics",
            "port",
            "--metrics-port",
            type=click.IntRange(1, 65535),
            help="Serve Prometheus metrics on this port, /metrics (env LEDGER_METRICS_PORT).",
        ),
        setting_option(
            "metrics",
            "address",
            "--metrics-address",
            show_default="127.0.0.1",
            help="Address the metrics server binds (env LEDGER_METRICS_ADDRESS).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def no_broker_hint(servers: str) -> str:
    """What to do when nothing answers at `servers`."""
    return (
        f"is a Kafka broker running at {servers}? For a local trial, start one in another shell with "
        "`points-ledger dev broker`; otherwise name yours with --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS"
    )


def broker_unreachable(servers: str, reason: object) -> CommandError:
    """The error of a command that needs the brokers at once (it does not wait for them, as `consume` does)."""
    return CommandError(f"Kafka broker {servers} unreachable: {reason}; {no_broker_hint(servers)}")
