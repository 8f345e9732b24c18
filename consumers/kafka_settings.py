"""How we talk to Kafka: topic names, defaults and the kafka-python client settings in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas.parsing import MESSAGE_MAX_BYTES

DEFAULT_TOPIC = "loyalty.transactions"
DEFAULT_GROUP = "points-ledger"
DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
#: The dead-letter topic of a source topic unless one is named.
DEAD_LETTER_SUFFIX = ".dlq"
#: Kafka's own rule for topic names.
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: Largest record we produce (a dead letter keeps the whole offending value, plus headers).
PRODUCE_REQUEST_MAX_BYTES = 4 * MESSAGE_MAX_BYTES
#: Milliseconds to wait for the first metadata from the bootstrap servers before retrying.
BOOTSTRAP_TIMEOUT_MS = 5_000
#: Longest wait between reconnection attempts to a broker that went away.
RECONNECT_BACKOFF_MAX_MS = 5_000
#: Milliseconds a produce may take (incl. retries) before it counts as failed.
DELIVERY_TIMEOUT_MS = 30_000
#: Milliseconds one produce request may take.
PRODUCE_REQUEST_TIMEOUT_MS = 10_000


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DEAD_LETTER_SUFFIX}"


def check_topic_name(name: str) -> str:
    """The name, or ValueError saying why Kafka would refuse it."""
    if not TOPIC_NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(f"{name!r} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
    return name


@dataclass(frozen=True)
class KafkaSettings:
    """Connection settings shared by `consume`, `produce` and `demo`."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    client_id: str = "points-ledger"
    #: A consumer that misses heartbeats this long leaves the group (Tansu also holds joins ~half of it).
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    #: Idempotent producers wedge after a Tansu restart; turn on for real clusters.
    enable_idempotence: bool = False

    def common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }

    def consumer_config(self, group: str, max_poll_records: int) -> dict[str, Any]:
        return {
            **self.common(),
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "allow_auto_create_topics": False,
            "max_poll_records": max_poll_records,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
        }

    def producer_config(self) -> dict[str, Any]:
        return {
            **self.common(),
            "acks": "all",
            "enable_idempotence": self.enable_idempotence,
            "max_request_size": PRODUCE_REQUEST_MAX_BYTES,
            "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
            "request_timeout_ms": PRODUCE_REQUEST_TIMEOUT_MS,
            "max_block_ms": DELIVERY_TIMEOUT_MS,
            "linger_ms": 20,
            "batch_size": 256 * 1024,
        }
