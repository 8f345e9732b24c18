"""Producing a JSON Lines file to a topic, keyed by member id (replaying exports, tests, the demo).

Each line is sent unchanged. The key is the line's `member_id` when the line
is a JSON object that has one, so each member's messages stay in one
partition, in file order; other lines (the consumer will dead-letter them)
are sent without a key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError

from schemas.parsing import strip_bom

#: Seconds to wait for the last acknowledgements.
FLUSH_TIMEOUT_S = 120.0


class ProduceError(RuntimeError):
    """Some lines were not acknowledged by the broker."""


@dataclass
class ProduceResult:
    sent: int = 0
    without_key: int = 0
    #: Partition → last offset acknowledged (what a consumer must reach to have read everything).
    last_offsets: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "without_key": self.without_key, "partitions": len(self.last_offsets)}


def member_key(line: bytes) -> bytes | None:
    try:
        message = json.loads(strip_bom(line))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than json allows
        return None
    member_id = message.get("member_id") if isinstance(message, dict) else None
    return member_id.encode() if isinstance(member_id, str) and member_id else None


def produce_lines(
    producer: Any,
    topic: str,
    lines: Iterable[bytes],
    on_sent: Callable[[int], None] | None = None,
) -> ProduceResult:
    """Send every line; raise ProduceError naming the first failure if any line was not acknowledged."""
    result = ProduceResult()
    futures = []
    for number, line in enumerate(lines, start=1):
        key = member_key(line)
        try:
            futures.append((number, producer.send(topic, key=key, value=line)))
        except KafkaError as error:
            raise ProduceError(f"line {number}: {type(error).__name__}: {error}") from error
        result.sent += 1
        result.without_key += key is None
        if on_sent is not None and result.sent % 1000 == 0:
            on_sent(result.sent)
    producer.flush(timeout=FLUSH_TIMEOUT_S)
    for number, future in futures:
        if not future.is_done or future.failed():
            raise ProduceError(f"line {number} was not acknowledged: {future.exception or 'timed out'}")
        metadata = future.value
        result.last_offsets[metadata.partition] = max(result.last_offsets.get(metadata.partition, -1), metadata.offset)
    if on_sent is not None:
        on_sent(result.sent)
    return result
