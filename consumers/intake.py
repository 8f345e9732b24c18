"""What both ingest paths do alike with their input, a Kafka partition's records (kafka_batch.py) or a file's
lines (jsonlines.py): each parsed item goes to the dead letters if invalid, or into the batch with its source;
a message a rule fails on goes to the dead letters as well; every outcome is counted.

Each path keeps what differs: how an item is parsed and sourced, what a dead letter looks like, how batches
are cut and how they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from consumers.deadletters import RULE_FAILED
from ledger.application import OnFailures
from ledger.member import Source
from ledger.outcomes import Decision, Failure, Tally
from schemas import Invalid, Message

#: An input item: a Kafka record, a file's line.
T = TypeVar("T")


class Intake(Generic[T]):
    """Sorts parsed items into a batch of valid messages and dead letters, and counts the outcomes in `tally`.

    `dead_letter(item, invalid)` writes one item's dead letter; `flush` makes those written so far durable.
    """

    def __init__(self, dead_letter: Callable[[T, Invalid], None], flush: Callable[[], object]) -> None:
        self._dead_letter, self._flush = dead_letter, flush
        self.tally = Tally()
        self._messages: list[tuple[Message, Source]] = []
        self._items: list[T] = []

    def take(self, item: T, parsed: Message | Invalid, source: Source) -> None:
        """An invalid item becomes a dead letter (counted as invalid); a valid one joins the batch."""
        if isinstance(parsed, Invalid):
            self._dead_letter(item, parsed)
            self.tally.count(None)
        else:
            self._messages.append((parsed, source))
            self._items.append(item)

    def __len__(self) -> int:
        """Valid messages taken since the last cut."""
        return len(self._messages)

    def cut(self) -> tuple[list[tuple[Message, Source]], OnFailures]:
        """The batch taken since the last cut, and the `on_failures` that dead-letters its messages a rule fails
        on. The dead letters of the invalid items are confirmed first, before the batch can be recorded."""
        messages, items = self._messages, self._items
        self._messages, self._items = [], []
        written: set[int] = set()  # a batch tried again (a conflict, a write that failed) reports them again

        def dead_letter_failures(failures: Sequence[Failure]) -> None:
            for failure in failures:
                if failure.index in written:
                    continue
                written.add(failure.index)
                self._dead_letter(items[failure.index], Invalid(failure.reason, RULE_FAILED))
            self._flush()

        self._flush()
        return messages, dead_letter_failures

    def count(self, decisions: Iterable[Decision]) -> None:
        """Count the ledger's answers to a recorded batch."""
        for decision in decisions:
            self.tally.count(decision.outcome)
