"""A rebuild never launders a changed log: before its fresh audit trail replaces the old one, every hash the old
trail holds (up to the position it reflected) must come out the same from the log as it is now.

A stored event edited, deleted or inserted since the old trail was written changes that member's chain from
there on, so the rebuild refuses at the first such row, naming it, and nothing is swapped in. The rebuild
cannot tell an edited log from an edited trail (a hash changed in `pl_audit` by hand also differs): `verify`,
and a digest kept outside the database, say which. `--accept-log-changes --reason TEXT` rebuilds from the log
as it is; who accepted, why, when and what differed stay in ACCEPTANCES_TABLE, which no rebuild replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.micros import to_micros
from ledger.storage.chain import describe
from projections.db import Sql
from projections.defaults import ACCEPTANCE_TEXT_CHARS_MAX, ACCEPTANCES_TABLE


class LogChangedError(RuntimeError):
    """The log no longer gives the audit trail a rebuild would replace; nothing was swapped in."""


@dataclass(frozen=True, slots=True)
class TrailCheck:
    """What a rebuild checks the log against: the old audit trail up to `position`, chained in `mode`."""

    position: int
    mode: str


@dataclass(frozen=True, slots=True)
class LogChange:
    """The first audit row the log no longer gives as the old trail held it, and how many rows differ."""

    member_id: str
    version: int
    position: int
    kind: str
    what: str
    differences: int

    def describe(self) -> str:
        more = f" (and {self.differences - 1} more rows differ)" if self.differences > 1 else ""
        where = f"member {self.member_id} version {self.version} (position {self.position}, {self.kind})"
        return f"{where} {self.what}{more}"


@dataclass(frozen=True, slots=True)
class Acceptance:
    """An operator's decision to rebuild from the log as it is, whatever differs: who and why."""

    reason: str
    accepted_by: str

    def __post_init__(self) -> None:
        for name, text in (("reason", self.reason), ("accepted_by", self.accepted_by)):
            if not 1 <= len(text.strip()) <= ACCEPTANCE_TEXT_CHARS_MAX:
                raise ValueError(f"an acceptance's {name} has 1-{ACCEPTANCE_TEXT_CHARS_MAX} characters")


def first_change(sql: Sql, check: TrailCheck, fresh_table: str) -> LogChange | None:
    """The first difference between the old trail (`pl_audit`, rows up to `check.position`) and the hashes
    `fresh_table` holds, computed from the log now in the same mode; None when every hash matches. One join
    of the two tables on their keys (measured: a hash join, about twice as fast as two lookups per row)."""
    found = sql.row(
        "SELECT COALESCE(o.member_id, n.member_id) AS member_id, COALESCE(o.version, n.version) AS version, "
        "COALESCE(o.position, n.position) AS position, COALESCE(o.kind, n.kind) AS kind, o.hash AS old, "
        f"n.hash AS fresh, COUNT(*) OVER () AS differences FROM pl_audit o FULL OUTER JOIN {fresh_table} n "
        "ON n.member_key = o.member_key AND n.version = o.version WHERE COALESCE(o.position, n.position) <= ? "
        "AND (o.hash IS NULL OR n.hash IS NULL OR o.hash <> n.hash) ORDER BY 3 LIMIT 1",
        (check.position,),
    )
    if found is None:
        return None
    if found["old"] is None:
        what = "is in the log but was not in the trail"
    else:
        what = "is gone from the log" if found["fresh"] is None else "hashes differently"
    return LogChange(
        found["member_id"], int(found["version"]), int(found["position"]), found["kind"], what,
        int(found["differences"]),
    )  # fmt: skip


def refusal(change: LogChange) -> LogChangedError:
    return LogChangedError(
        f"the log no longer gives the audit trail this rebuild would replace: {change.describe()}; nothing was "
        "swapped in. Run `verify` (with a kept digest: `verify --digest FILE`) to see what changed; to rebuild "
        "from the log as it is, give --accept-log-changes --reason TEXT (recorded)"
    )


def unchecked(check: TrailCheck, mode: str) -> LogChangedError:
    """The old trail is keyed with a key this run does not have: the log cannot be checked against it."""
    return LogChangedError(
        f"the audit trail this rebuild would replace is {describe(check.mode)}, and this rebuild runs "
        f"{describe(mode)}: it cannot check the log against that trail. Configure its key, or give "
        "--accept-log-changes --reason TEXT (recorded) to start the trail anew from the log as it is"
    )


def record_acceptance(
    sql: Sql, acceptance: Acceptance, check: TrailCheck, change: LogChange | None, *, checked: bool, mode: str
) -> None:
    """Record, in the caller's transaction (the rebuild's swap), that `acceptance` let the rebuild proceed."""
    sql.execute(
        f"CREATE TABLE IF NOT EXISTS {ACCEPTANCES_TABLE} (accepted_at BIGINT NOT NULL, accepted_by TEXT NOT NULL, "
        "reason TEXT NOT NULL, trail_position BIGINT NOT NULL, trail_chain TEXT NOT NULL, new_chain TEXT NOT NULL, "
        "checked BIGINT NOT NULL, differences BIGINT NOT NULL, first_member_id TEXT, first_version BIGINT, "
        "first_position BIGINT, first_kind TEXT, first_what TEXT)"
    )
    first: tuple[Any, ...] = (None,) * 5 if change is None else (
        change.member_id, change.version, change.position, change.kind, change.what,
    )  # fmt: skip
    sql.execute(
        f"INSERT INTO {ACCEPTANCES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            to_micros(datetime.now(UTC)), acceptance.accepted_by, acceptance.reason, check.position, check.mode,
            mode, int(checked), 0 if change is None else change.differences, *first,
        ),
    )  # fmt: skip
