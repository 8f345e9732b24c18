"""The files `reconcile`, `correct` and `migrate` read and write, a row at a time.

A reconcile report is written as its discrepancies are found: in JSON, the header fields first (`as_of`,
`ledger`, `against`), then `items` with one discrepancy per line, then the summary fields; in CSV, one row
per discrepancy. `correct` reads it back piece by piece (consumers/json_stream.py). A file read more than
once (`migrate` validates every row before applying any; `correct` checks every item first) must be a
regular file: a pipe cannot be read twice.
"""

from __future__ import annotations

import csv
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from points_ledger import output
from points_ledger.errors import CommandError
from points_ledger.files import text_output
from projections.defaults import REPORT_ITEMS

REPORT_CSV_COLUMNS = (
    "member_id", "kind", "ledger_balance", "other_balance", "difference", "ledger_tier", "other_tier", "last_events",
)  # fmt: skip


class ReportWriter:
    """Writes a reconcile report to an open text file, a discrepancy at a time. CSV is written for spreadsheets
    (`output.spreadsheet_cell`: numbers bare, text quoted, a formula-like start neutralised)."""

    def __init__(self, file: IO[str], header: Mapping[str, Any], *, as_csv: bool) -> None:
        self.file = file
        self.as_csv = as_csv
        self.items = 0
        if as_csv:
            self.rows = csv.writer(file, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
            self._written(self.rows.writerow, [output.spreadsheet_cell(column) for column in REPORT_CSV_COLUMNS])
        else:
            opening = output.dumps(dict(header))[:-1]  # the header's fields, the object left open
            self._written(file.write, f'{opening}{", " if header else ""}"{REPORT_ITEMS}": [')

    def item(self, item: Mapping[str, Any]) -> None:
        if self.as_csv:
            self._written(self.rows.writerow, [output.spreadsheet_cell(item[column]) for column in REPORT_CSV_COLUMNS])
        else:
            self._written(self.file.write, ("\n" if self.items == 0 else ",\n") + output.dumps(item))
        self.items += 1

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Close the report with the summary fields (JSON only: a CSV report is its rows)."""
        if not self.as_csv:
            fields = output.dumps(dict(summary))[1:]  # the summary's fields, after the items
            self._written(self.file.write, f"{chr(10) if self.items else ''}]{', ' if summary else ''}{fields}\n")

    def _written(self, write: Callable[[Any], object], content: Any) -> None:
        try:
            write(content)
        except OSError as error:
            raise CommandError(f"cannot write the report to {self.file.name}: {error.strerror or error}") from error


@contextmanager
def report_writer(path: Path, header: Mapping[str, Any], *, force: bool) -> Iterator[ReportWriter]:
    """A ReportWriter on `path`: CSV when it ends in .csv, JSON otherwise. Written through
    `files.text_output`: to a temporary file put in place only once the report is whole, created 0600 (it
    names members and their balances), never over an existing file without `force`."""
    with text_output(path, force=force, private=True) as file:
        yield ReportWriter(file, header, as_csv=path.suffix.lower() == ".csv")


def require_rereadable(path: Path, why: str, size_max: int) -> None:
    """Refuse a file that cannot be read twice (a pipe, a device) or is over `size_max` bytes."""
    try:
        found = path.stat()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from error
    if not stat.S_ISREG(found.st_mode):
        raise CommandError(f"{path} is not a regular file (a pipe?): {why}; save it to a file first")
    if found.st_size > size_max:
        raise CommandError(f"{path} is {found.st_size} bytes; at most {size_max} are read (split it)")


@contextmanager
def opened(path: Path) -> Iterator[IO[bytes]]:
    """`path` open for reading bytes; a failure to open or read it is one line naming it."""
    try:
        with path.open("rb") as binary:
            yield binary
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
