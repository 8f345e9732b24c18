"""Rendering results: JSON for machines, rich tables for people, CSV for spreadsheets. Data to stdout only.

Member ids, reasons and other texts come from whoever sends messages: a table shows them as text (never rich
markup, control characters escaped), a CSV cell never starts a spreadsheet formula (`terminal_text`,
`spreadsheet_cell`). JSON carries them exactly, for programs: the C0 controls are escaped (`\u001b`), other
characters (DEL, C1 controls, bidirectional overrides) are written as they are, so JSON is for machines, not for
reading on a terminal.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any
from uuid import UUID

from points_ledger import readable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ledger.outcomes import Tally

#: Characters a terminal acts on instead of showing: C0 controls (ESC starts a sequence that can clear the
#: screen or retitle the window, BEL rings, CR overwrites the line), DEL, C1 controls (CSI among them), the
#: Unicode bidirectional controls (they reorder what follows them on screen) and the line and paragraph
#: separators.
TERMINAL_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: What makes a spreadsheet read a cell as a formula when it starts the cell (OWASP, "CSV Injection"); NUL too
#: (OWASP ASVS 1.2.10).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\x00")
#: A cell that is exactly a decimal number is data to a spreadsheet, never a formula (-5, -12.50); no leading
#: zeros, so that writing it as a number gives back the very same text.
PLAIN_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def jsonable(value: Any) -> Any:
    """Decimals as strings, times as ISO 8601, containers recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(item) for item in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False)


def console() -> Console:
    from rich.console import Console

    return Console(file=sys.stdout, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(dumps(value) + "\n")


def print_json_lines(rows: Iterable[Any]) -> None:
    for row in rows:
        sys.stdout.write(dumps(row) + "\n")


def _cell(value: Any) -> str:
    value = jsonable(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def terminal_text(text: str) -> str:
    """`text` with every character a terminal would act on shown as its escape (`\\x1b`, `\\u202e`), so that
    what is printed is what the text holds and nothing it holds can act on the terminal."""
    return TERMINAL_CONTROLS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _table_cell(value: Any) -> str:
    """A value as people read it in a table: whole numbers with thousands separators, times in UTC to the
    second (points_ledger.readable); the rest as `_cell` writes it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return readable.number(value)
    if isinstance(value, datetime):
        return readable.when(value)
    return _cell(value)


def shown(value: Any) -> Text:
    """A value as a table shows it: plain text (rich never reads it as markup), control characters escaped,
    numbers and times written for people (`_table_cell`)."""
    from rich.text import Text

    return Text(terminal_text(_table_cell(value)))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def print_record(title: str, record: Mapping[str, Any], caption: str | None = None) -> None:
    """One record as a two-column table (nested mappings flattened with dots), numbers right-aligned."""
    from rich.table import Table

    table = Table(title=shown(title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in _flatten(record):
        table.add_row(shown(key), _aligned(value))
    _print_with_caption(table, caption)


def _print_with_caption(table: Any, caption: str | None) -> None:
    """A table, then its caption beneath, wrapped at the terminal's width (a table's own caption is not)."""
    terminal = console()
    terminal.print(table)
    if caption is not None:
        terminal.print(shown(caption), soft_wrap=False)


def _aligned(value: Any) -> Text:
    text = shown(value)
    if _is_number(value):
        text.justify = "right"
    return text


def print_rows(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
    right_aligned: Collection[str] | None = None,
    compact: bool = False,
) -> None:
    """A table, a row per item: the columns in `right_aligned` (by default, those holding only numbers) are
    aligned right and never wrapped; `caption` (what every row shares: the log position, the range) goes
    beneath, once. Text too long for its column wraps within it, every character kept. `compact`: rules
    under the header only (more room for the text on a narrow terminal)."""
    from rich import box
    from rich.table import Table

    lines = [list(row) for row in rows]
    if right_aligned is None:
        right_aligned = {
            column for index, column in enumerate(columns)
            if any(line[index] is not None for line in lines)
            and all(line[index] is None or _is_number(line[index]) for line in lines)
        }  # fmt: skip
    table = Table(title=shown(title), box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD)
    for column in columns:
        numeric = column in right_aligned
        table.add_column(shown(column), justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    for line in lines:
        table.add_row(*(shown(value) for value in line))
    _print_with_caption(table, caption)


#: What a column of a statement costs beside its text: rich's padding and rule.
STATEMENT_COLUMN_EXTRA = 3


def print_statement(
    title: str, caption: str, headings: Sequence[str], lines: Sequence[tuple[str, Sequence[str]]]
) -> None:
    """A statement: a row per measure or flow (`lines`: its name and its figures, written for people), a
    column per period (or tier) in `headings`, figures aligned right. Columns that do not fit the terminal's
    width go to a further table beneath, which repeats the names, never truncated or squeezed."""
    from rich.table import Table

    terminal = console()
    name_width = max((len(name) for name, _ in lines), default=0) + STATEMENT_COLUMN_EXTRA + 1
    widths = [
        max(len(heading), *(len(figures[index]) for _, figures in lines)) + STATEMENT_COLUMN_EXTRA
        for index, heading in enumerate(headings)
    ]
    blocks: list[list[int]] = [[]]
    used = name_width
    for index, width in enumerate(widths):
        if blocks[-1] and used + width > terminal.width:
            blocks.append([])
            used = name_width
        blocks[-1].append(index)
        used += width
    for number, block in enumerate(blocks):
        table = Table(title=shown(title) if number == 0 else None)
        table.add_column("")
        for index in block:
            table.add_column(shown(headings[index]), justify="right", no_wrap=True)
        for name, figures in lines:
            table.add_row(shown(name), *(shown(figures[index]) for index in block))
        terminal.print(table)
    terminal.print(shown(caption), soft_wrap=False)


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a table printed as it goes: its name and width (numbers are aligned right)."""

    name: str
    width: int
    numeric: bool = False


def print_rows_as_they_come(title: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> None:
    """A table for people that holds nothing in memory: the title, a header, then each row as it comes, each
    cell padded to its column's fixed width (a longer value widens its own line, not the column) and shown as
    `terminal_text`, as every table cell is."""

    def line(cells: Iterable[str]) -> str:
        padded = (
            cell.rjust(c.width) if c.numeric else cell.ljust(c.width) for c, cell in zip(columns, cells, strict=True)
        )
        return "  ".join(padded).rstrip() + "\n"

    sys.stdout.write(f"{terminal_text(title)}\n")
    sys.stdout.write(line(terminal_text(column.name) for column in columns))
    sys.stdout.write(line("-" * column.width for column in columns))
    for row in rows:
        sys.stdout.write(line(terminal_text(_table_cell(value)) for value in row))


def spreadsheet_cell(value: Any) -> str | int | float | Decimal:
    """A value as a CSV cell a spreadsheet may open: a number (or text that is exactly a decimal number, like
    money) stays a number; any other text that would start a formula gets a leading `'`, which spreadsheets
    take as "this is text" (OWASP's advice against CSV injection)."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    text = _cell(value)
    if PLAIN_NUMBER.fullmatch(text):
        return Decimal(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(file: IO[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header line, then one line per row (nested values as JSON), for spreadsheets: every cell through
    `spreadsheet_cell`, numbers bare and text in double quotes, so that a separator inside a cell (a `;`
    where the spreadsheet splits on it) cannot start a cell of its own."""
    writer = csv.writer(file, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([spreadsheet_cell(column) for column in columns])
    for row in rows:
        writer.writerow([spreadsheet_cell(row.get(column)) for column in columns])


def print_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """`write_csv` to stdout."""
    write_csv(sys.stdout, columns, rows)


def _flatten(record: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in record.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def print_tally(tally: Tally, output_format: str, title: str = "ingest") -> None:
    if output_format == "json":
        print_json(tally.as_dict())
    else:
        print_record(title, tally.as_dict())
