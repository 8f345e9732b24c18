"""The Kafka side of `publish`: a sink that sends balance events and knows when the broker acknowledged them.

kafka-python's `flush` waits for in-flight requests but does not raise when a record failed; each send's
future is checked after it, so a record the broker did not acknowledge stops the publisher before its
position moves past it (it is sent again on the next run).
"""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaError

from consumers.kafka_producer import FLUSH_TIMEOUT_S, ProduceError
from schemas.balance_events import Outbound


class KafkaSink:
    """Sends records to one topic, keyed by member id; `flush` raises ProduceError if any was not acknowledged."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.pending: list[Any] = []

    def send(self, record: Outbound) -> None:
        try:
            self.pending.append(
                self.producer.send(self.topic, key=record.key, value=record.value, headers=record.headers)
            )
        except KafkaError as error:
            raise ProduceError(f"{record.name} for {record.key.decode()}: {type(error).__name__}: {error}") from error

    def flush(self) -> None:
        self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        pending, self.pending = self.pending, []
        for future in pending:
            if not future.is_done or future.failed():
                raise ProduceError(f"a balance event was not acknowledged: {future.exception or 'timed out'}")
