"""Creating kafka-python clients: wait for an unreachable broker without spinning, create topics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from consumers.kafka_settings import KafkaSettings

#: Seconds between attempts to reach the broker: doubling from the first to the last.
CONNECT_DELAY_FIRST_S = 1.0
CONNECT_DELAY_MAX_S = 30.0

C = TypeVar("C")


def connect(create: Callable[[], C], describe: str, warn: Callable[[str], None], stop: threading.Event) -> C | None:
    """Create a client, retrying for as long as the broker is unreachable; None if `stop` is set first."""
    delay = CONNECT_DELAY_FIRST_S
    while not stop.is_set():
        try:
            return create()
        except KafkaError as error:
            warn(f"Kafka broker {describe} unreachable ({type(error).__name__}); retrying in {delay:g} s")
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
