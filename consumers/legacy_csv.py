"""Balance files from other systems: a legacy export to carry over (`migrate`), or balances to reconcile
against (`reconcile --against`).

`migrate` carries a legacy loyalty system's export (CSV) over as one `opening_balance` per member.

The file is `member_id,balance[,tier][,expires_at][,enrolled_at]` with a header; an empty optional cell is
absent. Every row becomes wire messages (an `enrollment` when `enrolled_at` is given, then the
`opening_balance`) and is validated by the same parser as every inbound message, so a row is refused for
the same reasons a message would be. Event ids derive from the file's content (its SHA-256) and the
member id: running the same file again changes nothing, and a corrected file cannot give a member a second
opening balance (the ledger rejects it as `duplicate_opening_balance`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.file_batches import decided_rows, refusal
from ledger.application import LedgerApplication
from ledger.outcomes import Outcome
from schemas import Acceptance, Enrollment, Invalid, Message, OpeningBalance, parse_message
from schemas.messages import MEMBER_ID_MAX_CHARS

REQUIRED_COLUMNS = ("member_id", "balance")
OPTIONAL_COLUMNS = ("tier", "expires_at", "enrolled_at")
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
#: Members applied per transaction (each up to two messages).
MIGRATE_BATCH = 1_000
#: Largest export read, in bytes (a legacy export of millions of members is a few hundred MB).
CSV_MAX_BYTES = 2 * 1024**3


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


@dataclass(slots=True)
class MigrationResult:
    rows: int = 0
    migrated: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "migrated": len(self.migrated),
            "skipped": len(self.skipped),
            "rejected": len(self.rejected),
            "members_migrated": self.migrated,
            "members_skipped": self.skipped,
            "members_rejected": self.rejected,
        }


def file_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_rows(content: bytes, name: str, at: datetime, acceptance: Acceptance) -> tuple[list[LegacyRow], list[BadRow]]:
    """Every row of the export, valid or with the reason it is not (nothing is applied here)."""
    export = _Export(name, file_digest(content)[:16], at, acceptance)
    rows: list[LegacyRow] = []
    bad: list[BadRow] = []
    for row in _rows(content, name, OPTIONAL_COLUMNS):
        if isinstance(row, BadRow):
            bad.append(row)
            continue
        line, cells = row
        parsed = _row_messages(cells, line, export)
        if isinstance(parsed, str):
            bad.append(BadRow(line, cells["member_id"] or None, parsed))
        else:
            rows.append(parsed)
    return rows, bad


def _rows(content: bytes, name: str, optional: Sequence[str]) -> Iterator[tuple[int, dict[str, str]] | BadRow]:
    """Each data row of a balance file as (line, cells stripped), or why it cannot be read as one: a wrong
    number of cells, a member already on an earlier line, a balance that is not a whole number."""
    reader = csv.DictReader(io.StringIO(_decoded(content, name), newline=""), strict=True)
    _check_header(reader.fieldnames, name, optional)
    first_line: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            cells = {key.strip(): (value or "").strip() for key, value in record.items() if key is not None}
            member_id = cells.get("member_id") or None
            if None in record or any(value is None for value in record.values()):
                yield BadRow(line, member_id, "the row does not have one cell per column")
            elif member_id is not None and member_id in first_line:
                yield BadRow(line, member_id, f"member {member_id} is also on line {first_line[member_id]}")
            elif not _WHOLE_NUMBER.fullmatch(cells["balance"]):
                yield BadRow(line, member_id, f"balance: must be a whole number of points, not {cells['balance']!r}")
            else:
                yield line, cells
            if member_id is not None:
                first_line.setdefault(member_id, line)
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


def _decoded(content: bytes, name: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LegacyFileError(f"{name} is not UTF-8 text: {error.reason} at byte {error.start}") from error


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's balance (and tier, when the file has one) as another system states it."""

    balance: int
    tier: str | None


def read_balances(content: bytes, name: str) -> tuple[dict[str, Balance], list[BadRow]]:
    """A balance file to reconcile against (`member_id,balance[,tier]`, as a legacy system, a POS or a CRM
    exports it): each member's balance, or the rows that cannot be read and why."""
    balances: dict[str, Balance] = {}
    bad: list[BadRow] = []
    for row in _rows(content, name, ("tier",)):
        if isinstance(row, BadRow):
            bad.append(row)
            continue
        line, cells = row
        member_id = cells["member_id"]
        if not 1 <= len(member_id) <= MEMBER_ID_MAX_CHARS:
            bad.append(BadRow(line, member_id or None, f"member_id: must be 1 to {MEMBER_ID_MAX_CHARS} characters"))
        else:
            balances[member_id] = Balance(int(cells["balance"]), cells.get("tier") or None)
    return balances, bad


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
    app: LedgerApplication,
    rows: list[LegacyRow],
    name: str,
    result: MigrationResult,
    on_batch: Callable[[int], None] | None = None,
) -> MigrationResult:
    """Apply each row's messages, MIGRATE_BATCH members per transaction; sort the members into migrated,
    skipped (already migrated from this file) and rejected (by the ledger's rules)."""
    for row, decision in decided_rows(app, rows, name, MIGRATE_BATCH, on_batch):
        if decision.outcome is Outcome.RECORDED:
            result.migrated.append(row.member_id)
        elif decision.outcome is Outcome.DUPLICATE:
            result.skipped.append({"member_id": row.member_id, "line": row.line, "reason": "already migrated"})
        else:
            result.rejected.append({"member_id": row.member_id, "line": row.line, "reason": refusal(decision)})
    return result
