"""The development kit on the command line: `dev broker` (a local broker for trials) and `topics create`
(the topics a ledger needs), as a newcomer uses them before `produce`, `consume` and `check`."""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumers.kafka_clients import ensure_topics
from consumers.kafka_settings import KafkaSettings
from devkit.broker import free_port
from points_ledger.cli import main
from tests.cli_helpers import cli_command, cli_env, one_line_error
from tests.kafka_helpers import unique

#: Seconds the broker gets to start (Tansu answers in well under one here) and to stop.
START_TIMEOUT_S = 60.0


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """The command in this process (it checks output and exit status only)."""
    return CliRunner().invoke(main, list(args), env=env)


def first_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The first line the process writes on stdout, or fail after `timeout_s`."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            process.kill()
            pytest.fail(f"no line on stdout within {timeout_s} s: {process.communicate()}")
    return process.stdout.readline()


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux: every thread's children list; a thread that ends while it is read
    has no children to give)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.fixture
def dev_broker() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`points-ledger dev broker` on a port of its own, and the address its first line announced."""
    port = free_port()
    process = subprocess.Popen(
        cli_command("dev", "broker", "--port", str(port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(),
    )  # fmt: skip
    try:
        line = first_line(process, START_TIMEOUT_S)
        assert line == f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}\n", (line, process.stderr)
        yield process, line.strip().partition("=")[2]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_dev_broker_prints_its_address_serves_kafka_and_stops_cleanly_on_sigterm(
    dev_broker: tuple[subprocess.Popen[str], str],
) -> None:
    process, address = dev_broker
    [broker_pid] = children(process.pid)
    topic = unique("devkit")
    ensure_topics(KafkaSettings(address), {topic: 1})
    producer = KafkaProducer(bootstrap_servers=address)
    producer.send(topic, key=b"M1", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    received: list[bytes] = []
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        received = [record.value for records in consumer.poll(timeout_ms=500).values() for record in records]
    consumer.close()
    assert received == [b"hello"]

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=START_TIMEOUT_S)
    assert process.returncode == 0, stderr
    assert "SIGTERM: stopping the local broker" in stderr and "Traceback" not in stderr
    assert not Path(f"/proc/{broker_pid}").exists()  # the broker was stopped and reaped, not left running


def test_dev_broker_names_a_port_in_use_and_how_to_choose_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            cli_command("dev", "broker", "--port", str(port)), capture_output=True, text=True, timeout=60,
            env=cli_env(), check=False,
        )  # fmt: skip
    one_line_error(result, 1, f"port {port} on 127.0.0.1 is in use", "--port")
    assert result.stdout == ""


def test_dev_broker_help_says_it_is_for_local_trials_and_keeps_nothing() -> None:
    result = run("dev", "broker", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for fragment in ("For local trials only", "in memory", "nothing is kept when it stops",
                     "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT", "--port"):  # fmt: skip
        assert fragment in text, fragment


def test_topics_create_makes_the_ingest_dead_letter_and_balance_event_topics_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ingest, events = unique("ingest"), unique("events")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "LEDGER_TOPICS": ingest}
    store = f"sqlite:///{tmp_path / 'l.db'}"
    before = run("--store", store, "check", "--format", "json", env=env)
    fixes = {line["check"]: line["fix"] for line in map(json.loads, before.stdout.splitlines()) if not line["ok"]}
    assert set(fixes) == {f"topic {ingest}", f"topic {ingest}.dlq"}
    assert all("points-ledger topics create" in fix for fix in fixes.values())

    args = ("topics", "create", "--publish-topic", events, "--partitions", "3", "--format", "json")
    created = run(*args, env=env)
    assert created.exit_code == 0, created.stderr
    assert [json.loads(line) for line in created.stdout.splitlines()] == [
        {"topic": ingest, "role": "consumed", "partitions": 3, "status": "created"},
        {"topic": f"{ingest}.dlq", "role": "dead letters", "partitions": 1, "status": "created"},
        {"topic": events, "role": "balance events", "partitions": 3, "status": "created"},
    ]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics([ingest, events])}
    finally:
        admin.close()
    assert described == {ingest: 3, events: 3}

    again = run(*args, env=env)
    assert again.exit_code == 0, again.stderr
    assert {json.loads(line)["status"] for line in again.stdout.splitlines()} == {"exists"}
    after = run("--store", store, "check", "--format", "json", env=env)
    assert all(line["ok"] for line in map(json.loads, after.stdout.splitlines()) if line["check"].startswith("topic"))


def test_topics_create_errors_say_what_to_do(kafka_bootstrap: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    unreachable = run("topics", "create", "--bootstrap-servers", closed)
    assert unreachable.exit_code == 1
    assert f"Kafka broker {closed} unreachable" in unreachable.stderr
    assert "points-ledger dev broker" in unreachable.stderr and "--bootstrap-servers" in unreachable.stderr
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    same = run("topics", "create", "--topic", "a", "--dead-letter-topic", "a", env=env)
    assert same.exit_code == 2 and "cannot be one of the consumed topics" in same.stderr
    clash = run("topics", "create", "--topic", "a", "--publish-topic", "a", env=env)
    assert clash.exit_code == 2 and "--publish-topic" in clash.stderr
