"""Where invalid input goes: never dropped, always with the reason."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

#: The error class of a dead letter whose message made a rule raise (files and Kafka alike).
RULE_FAILED = "RuleFailed"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One invalid line, kept as it was, with why it was refused."""

    source: str
    line: int
    raw: bytes
    reason: str
    error_class: str
    truncated: bool = False

    def as_record(self) -> dict[str, object]:
        text = self.raw.decode("utf-8", errors="replace")
        record: dict[str, object] = {
            "source": self.source,
            "line": self.line,
            "text": text,
            "reason": self.reason,
            "error_class": self.error_class,
        }
        if text.encode("utf-8") != self.raw:
            record["text_hex"] = self.raw.hex()
        if self.truncated:
            record["truncated"] = True
        return record


class DeadLetterSink(Protocol):
    def write(self, letter: DeadLetter) -> None: ...

    def flush(self) -> None: ...


class JsonLinesDeadLetters:
    """Dead letters appended to a JSON Lines file (appended: earlier runs' letters stay)."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def write(self, letter: DeadLetter) -> None:
        self._file.write(json.dumps(letter.as_record(), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._file.flush()


class StderrDeadLetters:
    """Without --dead-letter, each invalid line is reported on stderr, one line each, through `say` (the CLI's
    writer of stderr lines, which keeps what a reason quotes of the message from acting on the terminal)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say

    def write(self, letter: DeadLetter) -> None:
        self._say(f"invalid: {letter.source}:{letter.line}: {letter.reason}")

    def flush(self) -> None:
        sys.stderr.flush()
