"""The fenced blocks of README.md and docs/*.md, the markers before them, and how a shown output is matched.

The docs are read as a user reads them: a ```console block is commands (`$ `) each followed by what it prints,
a ```bash or ```sh block is commands whose output is not shown, and a data block (```jsonl, ```csv, ```toml)
marked `<!-- file: NAME -->` is a file the examples after it use. The convention is in docs/testing.md
("Examples in the docs run as tests"); this module implements it, tests/test_doc_examples.py runs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The pages whose examples run.
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

#: Blocks of commands: each runs, or is marked `not run` with a reason.
COMMAND_LANGUAGES = frozenset({"console", "bash", "sh", "shell"})
#: Blocks of data: a file when marked `file: NAME`, else an illustration.
DATA_LANGUAGES = frozenset({"jsonl", "json", "csv", "toml"})
#: Unlabelled fences hold pictures (layer diagrams), never commands.
PLAIN = ""
#: What the markers before a block may say.
MARKERS = ("not run", "file", "setup", "continues")
#: Stands for text, lines, keys or items not shown; `...` only where a JSON value or member would be.
ELLIPSIS = "…"
#: Error lines (ours, and click's for usage): a console command whose output shows one must fail (exit status
#: not 0), and one that shows none must succeed.
ERROR_LINES = ("points-ledger: error:", "Error: ")

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"<!--\s*(not run|file|setup|continues)\s*(?::\s*(.*?))?\s*-->", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: where it starts, its language, its text and the markers just above it."""

    page: Path
    line: int
    language: str
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """`operating.md:141`: the page and the line of the opening fence, as a failure names the block."""
        return f"{self.page.name}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in COMMAND_LANGUAGES and "not run" not in self.markers


def page_blocks(page: Path) -> list[Block]:
    """Every fenced block of `page`, with the HTML-comment markers that end on the line before its fence."""
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    number = 0
    while number < len(lines):
        fence = _FENCE.match(lines[number])
        if fence is None:
            number += 1
            continue
        end = lines.index("```", number + 1)
        markers = _markers_before(lines, number)
        blocks.append(Block(page, number + 1, fence.group(1), "\n".join(lines[number + 1 : end]), markers))
        number = end + 1
    return blocks


def _markers_before(lines: Sequence[str], fence: int) -> dict[str, str]:
    """The markers of the HTML comments that end right above line `fence`, one after another, no gap."""
    start = fence
    while start > 0 and lines[start - 1].rstrip().endswith("-->"):
        start -= 1
        while "<!--" not in lines[start]:
            start -= 1
    return {match.group(1): (match.group(2) or "").strip() for match in _MARKER.finditer("\n".join(lines[start:fence]))}


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in page_blocks(page)]


def previous_runnable(block: Block) -> Block:
    """The runnable block before `block` on its page: the one a `continues` block goes on from."""
    earlier = [other for other in page_blocks(block.page) if other.runs and other.line < block.line]
    if not earlier:
        raise ValueError(f"{block.id} continues, but no block before it runs")
    return earlier[-1]


def files_before(block: Block) -> dict[str, str]:
    """The `file:` blocks above `block` on its page, by name (a later one of the same name wins)."""
    return {
        other.markers["file"]: other.text + "\n"
        for other in page_blocks(block.page)
        if "file" in other.markers and other.line < block.line
    }


@dataclass(frozen=True)
class Shown:
    """A console command and the output shown under it."""

    command: str
    output: list[str]

    @property
    def must_fail(self) -> bool:
        return any(line.startswith(ERROR_LINES) for line in self.output)


def commands_of(block: Block) -> str:
    """The commands of a block, without the output a console block shows."""
    if block.language != "console":
        return block.text
    return "\n".join(shown.command for shown in console_commands(block.text))


def console_commands(text: str) -> list[Shown]:
    """The `$ ` commands of a console block, each with the lines up to the next one."""
    shown: list[Shown] = []
    for line in text.split("\n"):
        if line.startswith("$ "):
            shown.append(Shown(line[2:], []))
        elif not shown:
            raise ValueError(f"a console block must start with a command (`$ `), not {line!r}")
        else:
            shown[-1].output.append(line)
    return shown


# --- matching -----------------------------------------------------------------------------------------------


def output_matches(expected: Sequence[str], actual: Sequence[str]) -> bool:
    """Line by line, exactly (trailing blanks aside); a line that is only `…` stands for any lines (none too);
    see `line_matches` for the rest."""
    wanted = [line.rstrip() for line in expected]
    got = [line.rstrip() for line in actual]
    while wanted and not wanted[-1]:
        wanted.pop()
    while got and not got[-1]:
        got.pop()
    return _lines_match(wanted, got)


def _lines_match(expected: Sequence[str], actual: Sequence[str]) -> bool:
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head in {ELLIPSIS, "..."}:
        return any(_lines_match(rest, actual[skip:]) for skip in range(len(actual) + 1))
    return bool(actual) and line_matches(head, actual[0]) and _lines_match(rest, actual[1:])


def line_matches(expected: str, actual: str) -> bool:
    """A JSON line (one starting with `{` or `[`) matches by value (`json_matches`); any other line is text in
    which each `…` stands for any characters."""
    if expected[:1] in {"{", "["}:
        try:
            wanted, got = json.loads(_json_pattern(expected)), json.loads(actual)
        except ValueError:
            return False
        return json_matches(wanted, got)
    return _text_pattern(expected).fullmatch(actual) is not None


#: What `…` or `...` becomes in a JSON pattern: a member or an item nobody would write.
_MORE = "\u0000more"


def _json_pattern(text: str) -> str:
    """`text` as JSON, with each `…` or `...` that stands where a member or an item would (outside strings)
    made the `_MORE` marker, which `json_matches` reads as "and more here"."""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_string:
            in_string = not (char == '"' and not escaped)
            escaped = char == "\\" and not escaped
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]":
            stack.pop()
        elif text.startswith((ELLIPSIS, "..."), index):
            marker = json.dumps(_MORE)
            out.append(f"{marker}: null" if stack and stack[-1] == "{" else marker)
            index += 1 if char == ELLIPSIS else 3
            continue
        out.append(char)
        index += 1
    return "".join(out)


def json_matches(expected: Any, actual: Any) -> bool:
    """The shown keys with the shown values, in the shown order, and no other key unless `…` says more; the
    shown items first, and no more unless `…` ends the list; a string with `…` in it as text (`_text_pattern`);
    any other value equal and of the same type (1 is not 1.0, nor true)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and _object_matches(expected, actual)
    if isinstance(expected, list):
        return isinstance(actual, list) and _array_matches(expected, actual)
    if isinstance(expected, str) and ELLIPSIS in expected:
        return isinstance(actual, str) and _text_pattern(expected).fullmatch(actual) is not None
    return type(expected) is type(actual) and expected == actual


def _object_matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    shown = {key: value for key, value in expected.items() if key != _MORE}
    if _MORE not in expected and set(actual) != set(shown):
        return False
    in_order = [key for key in actual if key in shown]
    return in_order == list(shown) and all(json_matches(value, actual[key]) for key, value in shown.items())


def _array_matches(expected: list[Any], actual: list[Any]) -> bool:
    more = bool(expected) and expected[-1] == _MORE
    shown = expected[:-1] if more else expected
    if len(actual) < len(shown) or (not more and len(actual) != len(shown)):
        return False
    return all(json_matches(item, got) for item, got in zip(shown, actual, strict=False))


def _text_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split(ELLIPSIS)), re.DOTALL)


def mismatch_report(command: str, expected: Sequence[str], actual: Sequence[str]) -> str:
    """What a failure prints: the command, what the doc shows and what it printed."""
    return "\n".join(["$ " + command, "--- the doc shows:", *expected, "--- it printed:", *actual])
