"""Rendering results: JSON for machines, rich tables for people. Data to stdout only."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from rich.console import Console

    from ledger.outcomes import Tally


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


def print_record(title: str, record: Mapping[str, Any]) -> None:
    """One record as a two-column table (nested mappings flattened with dots)."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    for key, value in _flatten(record):
        table.add_row(key, _cell(value))
    console().print(table)


def print_rows(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console().print(table)


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a table printed as it goes: its name and width (numbers are aligned right)."""

    name: str
    width: int
    numeric: bool = False


def print_rows_as_they_come(title: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> None:
    """A table for people that holds nothing in memory: the title, a header, then each row as it comes, each
    cell padded to its column's fixed width (a longer value widens its own line, not the column)."""

    def line(cells: Iterable[str]) -> str:
        padded = (
            cell.rjust(c.width) if c.numeric else cell.ljust(c.width) for c, cell in zip(columns, cells, strict=True)
        )
        return "  ".join(padded).rstrip() + "\n"

    sys.stdout.write(f"{title}\n")
    sys.stdout.write(line(column.name for column in columns))
    sys.stdout.write(line("-" * column.width for column in columns))
    for row in rows:
        sys.stdout.write(line(_cell(value) for value in row))


def print_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header line, then one line per row (nested values as JSON), for spreadsheets."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])


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
