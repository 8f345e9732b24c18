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

from ledger.application import LedgerApplication
from ledger.member import Source
from ledger.outcomes import Outcome
from schemas import Acceptance, Enrollment, Invalid, Message, OpeningBalance, parse_message

REQUIRED_COLUMNS = ("member_id", "balance")
OPTIONAL_COLUMNS = ("tier", "expires_at", "enrolled_at")
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
#: Longest member id (as the wire contract allows).
MEMBER_ID_MAX = 64
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
    reader = csv.DictReader(io.StringIO(_decoded(content, name), newline=""), strict=True)
    _check_header(reader.fieldnames, name)
    export = _Export(name, file_digest(content)[:16], at, acceptance)
    rows: list[LegacyRow] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            member_id = (record.get("member_id") or "").strip() or None
            if None in record or any(value is None for value in record.values()):
                bad.append(BadRow(line, member_id, "the row does not have one cell per column"))
            elif member_id is not None and member_id in seen:
                bad.append(BadRow(line, member_id, f"member {member_id} is also on line {seen[member_id]}"))
            else:
                parsed = _row_messages(record, line, export)
                if isinstance(parsed, str):
                    bad.append(BadRow(line, member_id, parsed))
                else:
                    rows.append(parsed)
            if member_id is not None:
                seen.setdefault(member_id, line)
    except csv.Error as error:
        raise LegacyFileError(f"{name}, line {reader.line_num}: not CSV: {error}") from error
    return rows, bad


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
    reader = csv.DictReader(io.StringIO(_decoded(content, name), newline=""), strict=True)
    _check_header(reader.fieldnames, name, ("tier",))
    balances: dict[str, Balance] = {}
    lines: dict[str, int] = {}
    bad: list[BadRow] = []
    try:
        for record in reader:
            line = reader.line_num
            cells = {key.strip(): (value or "").strip() for key, value in record.items() if key is not None}
            member_id = cells.get("member_id") or None
            if None in record or any(value is None for value in record.values()):
                bad.append(BadRow(line, member_id, "the row does not have one cell per column"))
            elif member_id is None or len(member_id) > MEMBER_ID_MAX:
                bad.append(BadRow(line, member_id, f"member_id: must be 1 to {MEMBER_ID_MAX} characters"))
            elif member_id in lines:
                bad.append(BadRow(line, member_id, f"member {member_id} is also on line {lines[member_id]}"))
            elif not _WHOLE_NUMBER.fullmatch(cells["balance"]):
                bad.append(BadRow(line, member_id, f"balance: must be a whole number, not {cells['balance']!r}"))
            else:
                balances[member_id] = Balance(int(cells["balance"]), cells.get("tier") or None)
            if member_id is not None:
                lines.setdefault(member_id, line)
    except csv.Error as error:
        raise LegacyFileError(f"{name}, line {reader.line_num}: not CSV: {error}") from error
    return balances, bad


@dataclass(frozen=True, slots=True)
class _Export:
    """What every row's messages take from the file: its name, its digest, the cut-over, what is accepted."""

    name: str
    digest: str
    at: datetime
    acceptance: Acceptance


def _row_messages(record: dict[str, Any], line: int, export: _Export) -> LegacyRow | str:
    """The row's messages, or why it is invalid (a reason naming the column)."""
    name, digest, at, acceptance = export.name, export.digest, export.at, export.acceptance
    cells = {key.strip(): (value or "").strip() for key, value in record.items()}
    member_id, balance = cells["member_id"], cells["balance"]
    if not _WHOLE_NUMBER.fullmatch(balance):
        return f"balance: must be a whole number of points, not {balance!r}"
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


def _batches(rows: list[LegacyRow], size: int) -> Iterator[list[LegacyRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def migrate(
    app: LedgerApplication,
    rows: list[LegacyRow],
    name: str,
    result: MigrationResult,
    on_batch: Callable[[int], None] | None = None,
) -> MigrationResult:
    """Apply each row's messages, MIGRATE_BATCH members per transaction; sort the members into migrated,
    skipped (already migrated from this file) and rejected (by the ledger's rules)."""
    for batch in _batches(rows, MIGRATE_BATCH):
        messages: list[tuple[Message, Source]] = [
            (message, {"file": name, "line": row.line}) for row in batch for message in row.messages
        ]
        decisions = iter(app.apply_batch(messages))
        for row in batch:
            decision = [next(decisions) for _ in row.messages][-1]  # the opening balance's
            if decision.outcome is Outcome.RECORDED:
                result.migrated.append(row.member_id)
            elif decision.outcome is Outcome.DUPLICATE:
                result.skipped.append({"member_id": row.member_id, "line": row.line, "reason": "already migrated"})
            else:
                reason = decision.rejection.value if decision.rejection is not None else decision.outcome.value
                result.rejected.append({"member_id": row.member_id, "line": row.line, "reason": reason})
        if on_batch is not None:
            on_batch(len(batch))
    return result
