"""How we talk to Kafka: topic names and the kafka-python client settings (defaults: consumers/defaults.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from consumers.defaults import (
    COMPRESSION_CODECS,
    DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_ISOLATION_LEVEL,
    ISOLATION_LEVELS,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
)
from schemas.parsing import MESSAGE_MAX_BYTES

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
    #: Codec of batches we produce (dead letters, `produce`); consumers read every codec.
    compression: str = "none"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    #: Never printed: SecretStr masks itself in repr and str.
    sasl_password: SecretStr | None = None
    #: PEM files: the CA bundle that signs the brokers' certificates, and our own certificate and key (mutual TLS).
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    #: Consumers see committed transactions only: a transactional producer's aborted records never reach the
    #: ledger (the brokers' control records between transactions leave gaps in the offsets).
    isolation_level: str = DEFAULT_ISOLATION_LEVEL

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.compression not in COMPRESSION_CODECS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSION_CODECS)}")
        if self.isolation_level not in ISOLATION_LEVELS:
            raise ValueError(f"isolation level must be one of {', '.join(ISOLATION_LEVELS)}")
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"{self.security_protocol} needs a SASL mechanism: one of {', '.join(SASL_MECHANISMS)}")
        if uses_sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"{self.security_protocol} needs a SASL username and password")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    def common(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            config |= {
                "ssl_cafile": self.ssl_cafile,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
                "ssl_password": self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
                "ssl_check_hostname": self.ssl_check_hostname,
            }
        if self.security_protocol.startswith("SASL_"):
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            }
        return config

    def consumer_config(self, group: str, max_poll_records: int) -> dict[str, Any]:
        return {
            **self.common(),
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "allow_auto_create_topics": False,
            "max_poll_records": max_poll_records,
            "isolation_level": self.isolation_level,
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
            "compression_type": None if self.compression == "none" else self.compression,
        }
