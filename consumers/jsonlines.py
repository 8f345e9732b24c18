"""JSON Lines ingest: lines applied in file order, in batches, one transaction per batch.

Files are read as the tools that write them expect: a UTF-8 byte-order mark at the start is skipped,
CRLF line ends work, and blank lines are skipped (not counted); line numbers stay the file's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import BinaryIO

from consumers.deadletters import RULE_FAILED, DeadLetter, DeadLetterSink
from consumers.defaults import DEFAULT_BATCH_SIZE
from ledger.application import LedgerApplication
from ledger.limits import BATCH_SIZE_MAX
from ledger.member import Source
from ledger.outcomes import Failure, Tally
from ledger.pipeline import Batch, apply_pipelined
from schemas import Acceptance, Invalid, Message, parse_message
from schemas.parsing import MESSAGE_MAX_BYTES, strip_bom

#: Byte-order marks of encodings that are not UTF-8: such a file must be converted, not read line by line.
_OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


class InputEncodingError(ValueError):
    """The input is not UTF-8 text (a UTF-16 or UTF-32 export, say)."""


def read_lines(stream: BinaryIO, limit: int = MESSAGE_MAX_BYTES) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the line end, truncated) for every non-blank line; memory stays bounded
    by `limit`. Raises InputEncodingError for a UTF-16/32 byte-order mark."""
    number = 0
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        number += 1
        if number == 1:
            _refuse_other_encodings(chunk)
            chunk = strip_bom(chunk)
        truncated = False
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            truncated = True
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        if truncated:
            yield number, chunk[:limit], True
        elif (line := chunk.rstrip(b"\r\n")).strip():
            yield number, line, False


def _refuse_other_encodings(first: bytes) -> None:
    for bom, encoding in _OTHER_BOMS.items():
        if first.startswith(bom):
            raise InputEncodingError(f"the input is {encoding} (it starts with a {encoding} byte-order mark); "
                                     f"convert it to UTF-8 first (iconv -f {encoding} -t UTF-8 IN > OUT) and give "
                                     "OUT instead")  # fmt: skip


def ingest_lines(
    app: LedgerApplication,
    stream: BinaryIO,
    source_name: str,
    dead_letters: DeadLetterSink,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    received_at: datetime | None = None,
    on_batch: Callable[[Tally], None] | None = None,
) -> Tally:
    """Apply every valid line in order; every invalid one, and every one a rule fails on, becomes a dead
    letter. `received_at` (default: now) is the arrival time messages from the future are judged by."""
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise ValueError(f"batch size must be 1..{BATCH_SIZE_MAX}")
    acceptance, received_at = app.program.acceptance(), received_at or datetime.now(UTC)
    tally = Tally()

    def batches() -> Iterator[Batch]:
        """Parse lines into batches of valid messages; invalid lines become dead letters at once."""
        batch: list[tuple[Message, Source]] = []
        lines: list[bytes] = []
        for number, raw, truncated in read_lines(stream):
            parsed = _parse(raw, truncated, acceptance, received_at)
            if isinstance(parsed, Invalid):
                dead_letters.write(DeadLetter(source_name, number, raw, parsed.reason, parsed.error_class, truncated))
                tally.count(None)
                continue
            batch.append((parsed, {"file": source_name, "line": number}))
            lines.append(raw)
            if len(batch) >= batch_size:
                yield _batch(batch, lines)
                batch, lines = [], []
        if batch:
            yield _batch(batch, lines)

    def _batch(messages: list[tuple[Message, Source]], lines: list[bytes]) -> Batch:
        written: set[int] = set()  # a batch tried again (a conflict, a write that failed) reports them again

        def dead_letter_failures(failures: Sequence[Failure]) -> None:
            for failure in failures:
                if failure.index in written:
                    continue
                written.add(failure.index)
                source = messages[failure.index][1]
                letter = DeadLetter(source_name, int(source["line"]), lines[failure.index], failure.reason, RULE_FAILED)
                dead_letters.write(letter)
            dead_letters.flush()

        dead_letters.flush()  # the invalid lines before this batch, before it is recorded
        return Batch(messages, on_failures=dead_letter_failures)

    for _, decisions in apply_pipelined(app, batches()):
        for decision in decisions:
            tally.count(decision.outcome)
        if on_batch is not None:
            on_batch(tally)
    dead_letters.flush()
    if on_batch is not None:
        on_batch(tally)
    return tally


def _parse(raw: bytes, truncated: bool, acceptance: Acceptance, received_at: datetime) -> Message | Invalid:
    if truncated:
        return Invalid(f"line is longer than {MESSAGE_MAX_BYTES} bytes", "TooLarge")
    return parse_message(raw, acceptance, received_at=received_at)
