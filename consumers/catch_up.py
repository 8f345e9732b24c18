"""When `consume --until-caught-up` stops: every partition applied through the end it had at the start.

A batch job, a replay into a shadow ledger or a test wants to stop when the
work is done, not after a guessed idle time: an idle limit either stops too
early (a slow group join, a store retry) or wastes its whole length at the end.
The target is each partition's end offset when consume starts (with
read_committed, the last stable offset: an open transaction's records are not
waited for). A partition this consumer holds has reached it when the next
offset to apply does (transaction markers and aborted records count as passed);
one held by another consumer of the group, when the ledger's recorded position
does. Positions only move forward, so a partition that reached its target is
not asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from consumers.kafka_settings import KafkaSettings

#: Seconds to wait for the fetch responses that tell each partition's high-water mark.
HIGH_WATER_TIMEOUT_S = 30.0


class MissingTopicError(RuntimeError):
    """A topic to catch up on does not exist: there is no end to reach."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic} does not exist (create it, or check --topic and the brokers)")


class EndUnknownError(RuntimeError):
    """No fetch response told where some partitions end: there is no end to reach."""

    def __init__(self, partitions: list[str]) -> None:
        super().__init__(
            f"cannot read where {', '.join(partitions)} end: no fetch answered within {HIGH_WATER_TIMEOUT_S:.0f} s "
            "(check the brokers and the consumer's permissions)"
        )


class CatchUp:
    """The partitions still short of their end offset as of the start."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self._remaining = dict(ends)

    def reached(self, next_offset: Callable[[TopicPartition], int]) -> bool:
        """Drop every partition whose next offset to apply (as `next_offset` tells) reached its end; True when
        none is left."""
        for partition, end in list(self._remaining.items()):
            if next_offset(partition) >= end:
                del self._remaining[partition]
        return not self._remaining


def catch_up_target(settings: KafkaSettings, topics: Iterable[str]) -> CatchUp:
    """Every partition of `topics` with records in it, and the offset after its last one, read now.

    The end is asked twice: by ListOffsets, and from the high-water mark of a fetch at the offset before it,
    and the larger is kept. Some Kafka-protocol brokers (Tansu, the local broker) answer ListOffsets with the
    first offset of the last batch + 1; a fetch response's high-water mark is right on all of them. With
    read_committed, a transaction still open now is therefore waited for until it ends.
    """
    probe = KafkaConsumer(**{**settings.consumer_config("", 1), "group_id": None})
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            numbers = probe.partitions_for_topic(topic)
            if not numbers:
                raise MissingTopicError(topic)
            partitions.extend(TopicPartition(topic, number) for number in sorted(numbers))
        return CatchUp(partition_ends(probe, partitions))
    finally:
        probe.close()


def partition_ends(probe: KafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each of `partitions` with records in it, and the offset after its last one: ListOffsets' end, raised to
    the high-water mark of a fetch at the offset before it (see `catch_up_target`). Assigns `probe` to them."""
    ends: dict[TopicPartition, int] = probe.end_offsets(partitions)
    beginnings: dict[TopicPartition, int] = probe.beginning_offsets(partitions)
    listed = {partition: end for partition, end in ends.items() if end > beginnings[partition]}
    probe.assign(list(listed))
    for partition, end in listed.items():
        probe.seek(partition, end - 1)
    deadline = time.monotonic() + HIGH_WATER_TIMEOUT_S
    while any(probe.highwater(partition) is None for partition in listed):
        if time.monotonic() > deadline:
            raise EndUnknownError([f"{p.topic}/{p.partition}" for p in listed if probe.highwater(p) is None])
        try:
            probe.poll(timeout_ms=200, max_records=1)
        except Exception:
            # A record batch it cannot decode; kafka-python would spin in the next poll. The consume loop meets
            # the same batch and stops on it with its own error, so the listed end is good enough here.
            break
    return {partition: max(end, probe.highwater(partition) or 0) for partition, end in listed.items()}
