"""One large JSON object read piece by piece: its top-level fields, and the elements of one array field one at a
time, so that a document of any length is read in bounded memory.

Each value (a top-level field's, or one element's) is decoded whole by the standard library's decoder and
may be at most VALUE_MAX_CHARS long; the text is read CHUNK_BYTES at a time. Only the JSON standard is
accepted (UTF-8, an object at the top, nothing after it but white space).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import IO, Any

#: Bytes read from the file at once.
CHUNK_BYTES = 64 * 1024
#: The longest single value (a top-level field's, or one array element's), in characters.
VALUE_MAX_CHARS = 1024 * 1024
#: The most top-level fields an object may have (the streamed array counts once).
FIELDS_MAX = 64
_WHITE_SPACE = " \t\n\r"


class JsonStreamError(ValueError):
    """The text is not one JSON object (with each key once, at most FIELDS_MAX of them), or holds a value
    longer than VALUE_MAX_CHARS."""


class _Reader:
    """A window on the text: what was read and not yet consumed."""

    def __init__(self, binary: IO[bytes], name: str) -> None:
        self.binary = binary
        self.name = name
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.at = 0  # the next unconsumed character of `text`
        self.ended = False

    def _more(self) -> bool:
        """Read another chunk (dropping what was consumed); False at the end of the file."""
        if self.ended:
            return False
        chunk = self.binary.read(CHUNK_BYTES)
        try:
            decoded = self.decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as error:
            raise JsonStreamError(f"{self.name} is not UTF-8 text: {error.reason}") from error
        self.text = self.text[self.at :] + decoded
        self.at = 0
        self.ended = not chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end), without consuming it."""
        while True:
            while self.at < len(self.text) and self.text[self.at] in _WHITE_SPACE:
                self.at += 1
            if self.at < len(self.text) or not self._more():
                return self.text[self.at : self.at + 1]

    def expect(self, characters: str) -> str:
        """Consume the next character, one of `characters`."""
        found = self.peek()
        if not found or found not in characters:
            shown = repr(found) if found else "the end of the file"
            raise JsonStreamError(
                f"{self.name} is not a JSON object as expected: {shown} where one of {characters} goes"
            )
        self.at += 1
        return found

    def value(self) -> Any:
        """The next JSON value, decoded. A value touching the end of the text read so far may be cut short (a
        number, a literal) or incomplete: more is read until the decoder stops before the end, or the file ends."""
        self.peek()
        decoder = json.JSONDecoder()
        while True:
            try:
                found, end = decoder.raw_decode(self.text, self.at)
            except json.JSONDecodeError as error:
                if self.ended:
                    raise JsonStreamError(f"{self.name} is not valid JSON: {error.msg}") from error
            else:
                if end - self.at > VALUE_MAX_CHARS:
                    break
                if end < len(self.text) or self.ended:
                    self.at = end
                    return found
            if len(self.text) - self.at > VALUE_MAX_CHARS:
                break
            self._more()
        raise JsonStreamError(f"{self.name} holds a value longer than {VALUE_MAX_CHARS} characters")


def fields(binary: IO[bytes], name: str, streamed: str) -> Iterator[tuple[str, Any]]:
    """The top-level object's fields in file order, as (key, value); the value of the array field named
    `streamed` is an iterator of its elements instead, each read when asked for (what the caller leaves
    unread is read and dropped before the next field)."""
    reader = _Reader(binary, name)
    reader.expect("{")
    seen: set[str] = set()
    if reader.peek() == "}":
        reader.expect("}")
    else:
        while True:
            key = reader.value()
            if not isinstance(key, str) or key in seen or len(seen) == FIELDS_MAX:
                raise JsonStreamError(
                    f"{name} is not a JSON object as expected: a key that is not a string, repeated, or beyond "
                    f"the first {FIELDS_MAX}"
                )
            seen.add(key)
            reader.expect(":")
            if key == streamed:
                elements = _elements(reader)
                yield key, elements
                for _ in elements:  # what the caller did not read
                    pass
            else:
                yield key, reader.value()
            if reader.expect(",}") == "}":
                break
    if reader.peek():
        raise JsonStreamError(f"{name} holds more than one JSON object")


def _elements(reader: _Reader) -> Iterator[Any]:
    reader.expect("[")
    if reader.peek() == "]":
        reader.expect("]")
        return
    while True:
        yield reader.value()
        if reader.expect(",]") == "]":
            return
