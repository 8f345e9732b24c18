"""JSON Lines ingest: lines applied in file order, in batches, one transaction per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

from consumers.deadletters import DeadLetter, DeadLetterSink
from ledger.application import BATCH_SIZE_MAX, LedgerApplication
from ledger.member import Source
from ledger.outcomes import Tally
from schemas import Invalid, Message, parse_message
from schemas.parsing import MESSAGE_MAX_BYTES

#: Messages per transaction unless told otherwise.
DEFAULT_BATCH_SIZE = 500


def read_lines(stream: BinaryIO, limit: int = MESSAGE_MAX_BYTES) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the newline, truncated) for every line; memory stays bounded by `limit`."""
    number = 0
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        number += 1
        truncated = False
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            truncated = True
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        yield number, chunk.rstrip(b"\r\n") if not truncated else chunk[:limit], truncated


def ingest_lines(
    app: LedgerApplication,
    stream: BinaryIO,
    source_name: str,
    dead_letters: DeadLetterSink,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[Tally], None] | None = None,
) -> Tally:
    """Apply every valid line in order; every invalid one becomes a dead letter."""
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise ValueError(f"batch size must be 1..{BATCH_SIZE_MAX}")
    tally = Tally()
    batch: list[tuple[Message, Source]] = []

    def flush() -> None:
        dead_letters.flush()
        if batch:
            for decision in app.apply_batch(batch):
                tally.count(decision.outcome)
            batch.clear()
        if on_batch is not None:
            on_batch(tally)

    for number, raw, truncated in read_lines(stream):
        parsed = _parse(raw, truncated, app.program.currency)
        if isinstance(parsed, Invalid):
            dead_letters.write(DeadLetter(source_name, number, raw, parsed.reason, parsed.error_class, truncated))
            tally.count(None)
            continue
        batch.append((parsed, {"file": source_name, "line": number}))
        if len(batch) >= batch_size:
            flush()
    flush()
    return tally


def _parse(raw: bytes, truncated: bool, currency: str) -> Message | Invalid:
    if truncated:
        return Invalid(f"line is longer than {MESSAGE_MAX_BYTES} bytes", "TooLarge")
    return parse_message(raw, currency=currency)
