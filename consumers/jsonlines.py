"""JSON Lines ingest: lines applied in file order, in batches, one transaction per batch.

Files are read as the tools that write them expect: a UTF-8 byte-order mark at the start is skipped,
CRLF line ends work, and blank lines are skipped (not counted); line numbers stay the file's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from consumers.deadletters import DeadLetter, DeadLetterSink
from consumers.defaults import DEFAULT_BATCH_SIZE
from consumers.intake import Intake
from ledger.application import LedgerApplication
from ledger.limits import BATCH_SIZE_MAX
from ledger.outcomes import Tally
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

    def dead_letter(line: tuple[int, bytes, bool], invalid: Invalid) -> None:
        number, raw, truncated = line
        dead_letters.write(DeadLetter(source_name, number, raw, invalid.reason, invalid.error_class, truncated))

    intake: Intake[tuple[int, bytes, bool]] = Intake(dead_letter, dead_letters.flush)

    def batches() -> Iterator[Batch]:
        """Parse lines into batches of valid messages; invalid lines become dead letters at once."""
        for line in read_lines(stream):
            number, raw, truncated = line
            intake.take(line, _parse(raw, truncated, acceptance, received_at), {"file": source_name, "line": number})
            if len(intake) >= batch_size:
                yield _batch()
        if len(intake):
            yield _batch()

    def _batch() -> Batch:
        messages, on_failures = intake.cut()
        return Batch(messages, on_failures=on_failures)

    for _, decisions in apply_pipelined(app, batches()):
        intake.count(decisions)
        if on_batch is not None:
            on_batch(intake.tally)
    dead_letters.flush()
    if on_batch is not None:
        on_batch(intake.tally)
    return intake.tally


def _parse(raw: bytes, truncated: bool, acceptance: Acceptance, received_at: datetime) -> Message | Invalid:
    if truncated:
        return Invalid(f"line is longer than {MESSAGE_MAX_BYTES} bytes", "TooLarge")
    return parse_message(raw, acceptance, received_at=received_at)
