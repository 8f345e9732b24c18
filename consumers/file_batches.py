"""Applying the messages a file's rows stand for (`migrate`, `correct`), a batch of rows per transaction.

A row may stand for several messages (an enrollment, then an opening balance); all of a row's messages are
in the same transaction, so a row is in the ledger whole or not at all, and the row's outcome is the
decision on its last message, the one that carries it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from ledger.application import LedgerApplication
from ledger.member import Source
from ledger.outcomes import Decision
from schemas import Message


class FileRow(Protocol):
    @property
    def line(self) -> int: ...

    @property
    def messages(self) -> Sequence[Message]: ...


R = TypeVar("R", bound=FileRow)


def decided_rows(
    app: LedgerApplication, rows: Iterable[R], name: str, size: int, on_batch: Callable[[int], None] | None = None
) -> Iterator[tuple[R, Decision]]:
    """Each row with the decision on its last message, `size` rows per transaction (sourced `name`, line);
    `on_batch` is told each batch's row count after its commit. Rows are taken from `rows` a batch at a time,
    and the members of a batch are not kept once it is recorded (each row is a member of its own, seen once):
    memory holds one batch, however many rows there are."""
    chosen = iter(rows)
    while batch := list(itertools.islice(chosen, size)):
        messages: list[tuple[Message, Source]] = [
            (message, {"file": name, "line": row.line}) for row in batch for message in row.messages
        ]
        decisions = iter(app.apply_batch(messages))
        app.forget_members()
        for row in batch:
            yield row, [next(decisions) for _ in row.messages][-1]
        if on_batch is not None:
            on_batch(len(batch))


def refusal(decision: Decision) -> str:
    """Why a row was not recorded: the rule's rejection, or the outcome."""
    return decision.rejection.value if decision.rejection is not None else decision.outcome.value
