"""Creating kafka-python clients: wait for an unreachable broker without spinning, create topics."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError

from consumers.kafka_settings import KafkaSettings

#: Seconds between attempts to reach the broker: doubling from the first to the last.
CONNECT_DELAY_FIRST_S = 1.0
CONNECT_DELAY_MAX_S = 30.0
#: Seconds a TCP reachability check waits per bootstrap server.
TCP_CHECK_TIMEOUT_S = 2.0

C = TypeVar("C")


def accepts_connections(bootstrap_servers: str, timeout_s: float = TCP_CHECK_TIMEOUT_S) -> bool:
    """Does any bootstrap server accept a TCP connection? Checked before building a client, because a
    kafka-python client that fails to bootstrap leaks its network thread and sockets."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def connect(
    create: Callable[[], C], bootstrap_servers: str, warn: Callable[[str], None], stop: threading.Event
) -> C | None:
    """Create a client, retrying for as long as the broker is unreachable; None if `stop` is set first.

    Only unreachability is retried; other Kafka errors (configuration, authentication) are raised.
    """
    delay = CONNECT_DELAY_FIRST_S
    while not stop.is_set():
        reason = "no TCP connection"
        if accepts_connections(bootstrap_servers):
            try:
                return create()
            except (KafkaTimeoutError, KafkaConnectionError) as error:
                reason = type(error).__name__
        warn(f"Kafka broker {bootstrap_servers} unreachable ({reason}); retrying in {delay:g} s")
        stop.wait(delay)
        delay = min(delay * 2, CONNECT_DELAY_MAX_S)
    return None


def new_consumer(settings: KafkaSettings, group: str, max_poll_records: int) -> KafkaConsumer:
    return KafkaConsumer(**settings.consumer_config(group, max_poll_records))


def new_producer(settings: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(**settings.producer_config())


def ensure_topics(settings: KafkaSettings, topics: dict[str, int]) -> list[str]:
    """Create the topics (name → partitions) that do not exist yet; return the ones created."""
    admin: Any = KafkaAdminClient(**settings.common())
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
