"""Balance files from other systems: a legacy export to carry over (`migrate`), or balances to reconcile
against (`reconcile --against`).

`migrate` carries a legacy loyalty system's export (CSV) over as one `opening_balance` per member.

The file is `member_id,balance[,tier][,expires_at][,enrolled_at]` with a header; an empty optional cell is
absent. Every row becomes wire messages (an `enrollment` when `enrolled_at` is given, then the
`opening_balance`) and is validated by the same parser as every inbound message, so a row is refused for
the same reasons a message would be. Event ids derive from the file's content (its SHA-256) and the
member id: running the same file again changes nothing, and a corrected file cannot give a member a second
opening balance (the ledger rejects it as `duplicate_opening_balance`).

Files are read a line at a time (`FileLines`), and the members they name are kept on disk (`MemberTable`):
memory does not grow with rows. `migrate` reads its file three times: its digest, then every row checked,
then the rows applied.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from consumers.file_batches import decided_rows, refusal
from consumers.member_table import MemberTable
from ledger.application import LedgerApplication
from ledger.outcomes import Outcome
from schemas import Acceptance, Enrollment, Invalid, Message, OpeningBalance, parse_message
from schemas.messages import MEMBER_ID_MAX_CHARS

REQUIRED_COLUMNS = ("member_id", "balance")
OPTIONAL_COLUMNS = ("tier", "expires_at", "enrolled_at")
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
#: Members applied per transaction (each up to two messages).
MIGRATE_BATCH = 1_000
#: Largest file read, in bytes, counted as it is read (a pipe is held to it too). A legacy export of millions of
#: members is a few hundred MB; memory does not depend on it, the time and the temporary disk space do.
CSV_MAX_BYTES = 2 * 1024**3
#: Longest line, in bytes (a legacy export's line is under 200).
LINE_MAX_BYTES = 64 * 1024
#: Bytes hashed at once when a file's digest is taken.
DIGEST_CHUNK_BYTES = 1024 * 1024


class LegacyFileError(ValueError):
    """The file as a whole cannot be read as a legacy export (encoding, header)."""


@dataclass(frozen=True, slots=True)
class LegacyRow:
    """A valid row: its line, its member and the messages that carry it over."""

    line: int
    member_id: str
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    member_id: str | None
    reason: str
    #: Refused because its expiry is not later than the cut-over time (the time the balances are carried over
    #: at): a cut-over set too late, not a bad expiry, as a rule.
    expires_by_cut_over: bool = False


def file_digest(binary: IO[bytes], name: str) -> str:
    """The SHA-256 of the whole file (what its rows' event ids derive from), read in chunks."""
    digest = hashlib.sha256()
    size = 0
    while chunk := binary.read(DIGEST_CHUNK_BYTES):
        size = _counted(size + len(chunk), name)
        digest.update(chunk)
    return digest.hexdigest()


def _counted(size: int, name: str) -> int:
    if size > CSV_MAX_BYTES:
        raise LegacyFileError(f"{name} is over {CSV_MAX_BYTES} bytes, the most that is read (split it)")
    return size


class FileLines:
    """A balance file's lines as text, read one at a time: UTF-8 (a byte-order mark at the start is skipped),
    each line at most LINE_MAX_BYTES, the whole at most CSV_MAX_BYTES. Hashes what it reads (`digest`)."""

    def __init__(self, binary: IO[bytes], name: str) -> None:
        self.binary = binary
        self.name = name
        self._digest = hashlib.sha256()

    def __iter__(self) -> Iterator[str]:
        size = 0
        while raw := self.binary.readline(LINE_MAX_BYTES + 1):
            if len(raw) > LINE_MAX_BYTES:
                raise LegacyFileError(f"{self.name} has a line longer than {LINE_MAX_BYTES} bytes at byte {size}")
            self._digest.update(raw)
            start, size = size, _counted(size + len(raw), self.name)
            try:
                yield raw.decode("utf-8-sig" if start == 0 else "utf-8")
            except UnicodeDecodeError as error:
                position = start + error.start + (3 if start == 0 and raw.startswith(codecs.BOM_UTF8) else 0)
                raise LegacyFileError(f"{self.name} is not UTF-8 text: {error.reason} at byte {position}") from error

    def digest(self) -> str:
        """The SHA-256 of what was read (of the whole file, once every line was)."""
        return self._digest.hexdigest()


def read_rows(lines: FileLines, at: datetime, acceptance: Acceptance, digest: str) -> Iterator[LegacyRow | BadRow]:
    """Every row of the export in file order, valid (with its messages, whose ids derive from the file's
    `digest`) or with the reason it is not. Nothing is applied here."""
    export = _Export(lines.name, digest[:16], at, acceptance)
    with MemberTable() as members:
        for row in _rows(lines, lines.name, OPTIONAL_COLUMNS, members):
            if isinstance(row, BadRow):
                yield row
                continue
            line, cells = row
            if _expires_by(cells.get("expires_at", ""), at):
                reason = f"expires_at {cells['expires_at']} is not later than the cut-over time {at.isoformat()}"
                yield BadRow(line, cells["member_id"] or None, reason, expires_by_cut_over=True)
                continue
            parsed = _row_messages(cells, line, export)
            yield BadRow(line, cells["member_id"] or None, parsed) if isinstance(parsed, str) else parsed


def _expires_by(expires_at: str, at: datetime) -> bool:
    """An expiry given as a time with an offset, no later than `at` (anything else is left to the parser)."""
    try:
        expires = datetime.fromisoformat(expires_at)
    except ValueError:
        return False
    return expires.tzinfo is not None and expires <= at


def _rows(
    lines: Iterable[str], name: str, optional: Sequence[str], members: MemberTable
) -> Iterator[tuple[int, dict[str, str]] | BadRow]:
    """Each data row of a balance file as (line, cells stripped), or why it cannot be read as one: a wrong
    number of cells, a member already on an earlier line, a balance that is not a whole number. Every member
    named goes into `members` with its first line (and its balance and tier, when they can be read)."""
    reader = csv.DictReader(lines, strict=True)
    try:
        _check_header(reader.fieldnames, name, optional)
        for record in reader:
            line = reader.line_num
            cells = {key.strip(): (value or "").strip() for key, value in record.items() if key is not None}
            member_id = cells.get("member_id") or None
            whole = _WHOLE_NUMBER.fullmatch(cells.get("balance", ""))
            first = None
            if member_id is not None:
                balance = int(cells["balance"]) if whole else None
                first = members.add(member_id, line, balance, cells.get("tier") or None)
            if None in record or any(value is None for value in record.values()):
                yield BadRow(line, member_id, "the row does not have one cell per column")
            elif first is not None:
                yield BadRow(line, member_id, f"member {member_id} is also on line {first}")
            elif not whole:
                yield BadRow(line, member_id, f"balance: must be a whole number of points, not {cells['balance']!r}")
            else:
                yield line, cells
    except csv.Error as error:
        raise LegacyFileError(f"{name}, line {reader.line_num}: not CSV: {error}") from error


def _check_header(columns: Sequence[str] | None, name: str, optional: Sequence[str] = OPTIONAL_COLUMNS) -> None:
    if not columns:
        raise LegacyFileError(f"{name} is empty: a header line is required")
    names = [column.strip() for column in columns]
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    unknown = [column for column in names if column not in (*REQUIRED_COLUMNS, *optional)]
    if missing or unknown or len(set(names)) != len(names):
        raise LegacyFileError(
            f"{name}: the header must name member_id, balance and optionally {', '.join(optional)} "
            f"(each once); found {', '.join(names)}"
        )


def read_balances(lines: FileLines, members: MemberTable) -> Iterator[BadRow]:
    """Read a balance file to reconcile against (`member_id,balance[,tier]`, as a legacy system, a POS or a CRM
    exports it) into `members`; yields the rows that cannot be read and why. With none, `members.in_order()`
    gives each member's balance and tier."""
    for row in _rows(lines, lines.name, ("tier",), members):
        if isinstance(row, BadRow):
            yield row
            continue
        line, cells = row
        member_id = cells["member_id"]
        if not 1 <= len(member_id) <= MEMBER_ID_MAX_CHARS:
            yield BadRow(line, member_id or None, f"member_id: must be 1 to {MEMBER_ID_MAX_CHARS} characters")


@dataclass(frozen=True, slots=True)
class _Export:
    """What every row's messages take from the file: its name, its digest, the cut-over, what is accepted."""

    name: str
    digest: str
    at: datetime
    acceptance: Acceptance


def _row_messages(cells: dict[str, str], line: int, export: _Export) -> LegacyRow | str:
    """The row's messages, or why it is invalid (a reason naming the column)."""
    name, digest, at, acceptance = export.name, export.digest, export.at, export.acceptance
    member_id, balance = cells["member_id"], cells["balance"]
    occurred_at = at.isoformat()
    common = {"member_id": member_id, "occurred_at": occurred_at}
    opening: dict[str, Any] = {
        **common, "type": "opening_balance", "event_id": f"migrate-{digest}-{member_id}",
        "opening_balance_id": f"migrate-{digest}-{member_id}", "points": int(balance),
        "legacy_ref": f"{name}:{line}"[:256],
    }  # fmt: skip
    for column in ("tier", "expires_at"):
        if cells.get(column):
            opening[column] = cells[column]
    wire: list[dict[str, Any]] = [opening]
    if cells.get("enrolled_at"):
        enrollment = {**common, "type": "enrollment", "event_id": f"migrate-{digest}-{member_id}-enrolled",
                      "enrolled_at": cells["enrolled_at"]}  # fmt: skip
        wire.insert(0, enrollment)
    messages = []
    for message in wire:
        parsed = parse_message(json.dumps(message).encode(), acceptance)
        if isinstance(parsed, Invalid):
            return parsed.reason
        if not isinstance(parsed, OpeningBalance | Enrollment):
            raise TypeError(f"unexpected message {type(parsed).__name__}")
        messages.append(parsed)
    return LegacyRow(line, member_id, tuple(messages))


def migrate(
    app: LedgerApplication, rows: Iterable[LegacyRow | BadRow], name: str, on_batch: Callable[[int], None] | None = None
) -> Iterator[tuple[LegacyRow | BadRow, str, str | None]]:
    """Each row in file order with its outcome and, but for `migrated`, the reason: the valid rows of each
    MIGRATE_BATCH rows applied in one transaction (`on_batch` is told how many after its commit), each
    `migrated`, `skipped` (already migrated from this file) or `rejected` (by the ledger's rules); an invalid
    row `skipped`. Holds one batch of rows at a time."""
    chosen = iter(rows)
    while batch := list(itertools.islice(chosen, MIGRATE_BATCH)):
        valid = [row for row in batch if isinstance(row, LegacyRow)]
        decided = iter([decision for _, decision in decided_rows(app, valid, name, MIGRATE_BATCH, on_batch)])
        for row in batch:
            if isinstance(row, BadRow):
                yield row, "skipped", row.reason
                continue
            decision = next(decided)
            if decision.outcome is Outcome.RECORDED:
                yield row, "migrated", None
            elif decision.outcome is Outcome.DUPLICATE:
                yield row, "skipped", "already migrated"
            else:
                yield row, "rejected", refusal(decision)
