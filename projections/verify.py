"""`verify`: never trust a view over the log. Recompute everything from the log and compare every view with it.

One pass over the log, in pages:
- the members replayed with the domain's own `mutate` (independent of the views' code): their balance,
  debt, tier, ledger time, version and open lots must equal `pl_members` and `pl_lots`, and each audit
  row's running balance and tier must equal the member's state after that event;
- the rows the views would hold (`fold_member_row`, `audit_row` with the chain recomputed from genesis)
  must equal `pl_lot_changes` and `pl_audit` row for row, hashes included: a row edited, dropped or added
  by hand is caught;
- with a saved digest, the digest recomputed from the log at its position must equal it: a stored event
  edited, deleted or inserted since is caught, whatever the views say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.member import Member
from ledger.micros import to_micros
from projections.db import Sql
from projections.digest import Digest, digest_of
from projections.runner import Projections
from projections.views import (
    AUDIT_COLUMNS,
    LOT_CHANGE_COLUMNS,
    MEMBER_COLUMNS,
    ChainHead,
    LogEvent,
    MemberRow,
    audit_row,
    fold_member_row,
)

#: Log events read per page.
VERIFY_PAGE = 2_000
#: Discrepancies kept for printing (all are counted).
DISCREPANCIES_KEPT_MAX = 1_000

OnPage = Callable[[int], None]
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    view: str
    where: str
    detail: str


@dataclass(slots=True)
class Verification:
    position: int = 0
    events: int = 0
    members: int = 0
    found: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    digest: str | None = None  # "matches" | "differs" | None (no digest given)

    def report(self, view: str, where: str, detail: str) -> None:
        self.found += 1
        if len(self.discrepancies) < DISCREPANCIES_KEPT_MAX:
            self.discrepancies.append(Discrepancy(view, where, detail))


def verify(projections: Projections, saved: Digest | None = None, on_page: OnPage | None = None) -> Verification:
    result = Verification()
    try:
        projections.catch_up()
    except Exception as error:  # a view too damaged to catch up is a finding, not a crash
        result.report("views", "catch-up", f"cannot catch up: {type(error).__name__}: {error}")
    head = projections.db.head()
    result.position = head
    for state in projections.status():
        if state.position != head:
            result.report(state.name, "position", f"at {state.position}, the log head is {head}")
    if saved is not None and saved.position > head:
        result.report("log", "digest", f"the digest is at position {saved.position}, the log ends at {head}")
        result.digest = "differs"
    replay = _Replay(result, saved)
    start = 1
    while start <= head:
        events = projections.read_log(start, VERIFY_PAGE, head)
        if not events:
            break
        with projections.db.transaction(commit=False) as sql:
            replay.page(sql, events)
        start = events[-1].position + 1
        if on_page is not None:
            on_page(events[-1].position)
    with projections.db.transaction(commit=False) as sql:
        replay.finish(sql, head)
    result.events, result.members = replay.events, len(replay.members)
    return result


class _Replay:
    def __init__(self, result: Verification, saved: Digest | None) -> None:
        self.result = result
        self.saved = saved
        self.members: dict[str, Member] = {}
        self.rows: dict[str, MemberRow] = {}
        self.chain: dict[str, ChainHead] = {}
        self.versions: dict[str, int] = {}
        self.events = 0
        if saved is not None and saved.position == 0:
            self._check_digest(0)

    def page(self, sql: Sql, events: Sequence[LogEvent]) -> None:
        first, last = events[0].position, events[-1].position
        stored_audit = _rows_by_position(sql, "pl_audit", AUDIT_COLUMNS, first, last)
        stored_changes = _rows_by_position(sql, "pl_lot_changes", LOT_CHANGE_COLUMNS, first, last)
        for log_event in events:
            self._one(log_event, stored_audit.pop(log_event.position, []), stored_changes.pop(log_event.position, []))
        for position, rows in {**stored_audit, **stored_changes}.items():
            for _ in rows:
                self.result.report("views", f"position {position}", "a row for an event the log does not hold")

    def _one(
        self, log_event: LogEvent, stored_audit: list[tuple[Any, ...]], stored_changes: list[tuple[Any, ...]]
    ) -> None:
        key, position = log_event.member_key, log_event.position
        self.events += 1
        try:
            member = log_event.event.mutate(self.members.get(key))
            if not isinstance(member, Member):
                raise TypeError("a member's events must start with Enrolled")
            self.members[key] = member
            expected_changes = fold_member_row(self.rows, log_event)
            expected_audit = audit_row(log_event, self.chain.get(key))
        except Exception as error:  # an event the log cannot replay is itself a finding
            self.result.report("log", f"position {position}", f"cannot replay: {type(error).__name__}: {error}")
            return
        row = expected_audit
        self.chain[key] = ChainHead(row[3], row[10], row[12], row[-1])
        self.versions[key] = log_event.event.originator_version
        where = f"member {row[3]} version {row[1]} (position {position})"
        if (row[10], row[12]) != (member.balance, member.tier):
            self.result.report("audit", where, f"the views' fold gives {row[10]}/{row[12]}, "
                               f"the aggregate {member.balance}/{member.tier}")  # fmt: skip
        if stored_audit != [expected_audit]:
            self.result.report("audit", where, _difference(AUDIT_COLUMNS, expected_audit, stored_audit))
        if sorted(stored_changes) != sorted(expected_changes):
            self.result.report(
                "members", where, f"lot movements {stored_changes} differ from the log's {expected_changes}"
            )
        if self.saved is not None and position == self.saved.position:
            self._check_digest(position)

    def finish(self, sql: Sql, head: int) -> None:
        if self.saved is not None and self.saved.position <= head and self.result.digest is None:
            self._check_digest(self.saved.position)  # a position past the last event read (an empty log)
        for position in _positions_after(sql, head):
            self.result.report("views", f"position {position}", "a row beyond the log's head")
        stored = {r["member_key"]: tuple(r[c] for c in MEMBER_COLUMNS) for r in sql.rows("SELECT * FROM pl_members")}
        stored_lots: dict[str, set[tuple[Any, ...]]] = {}
        for r in sql.rows("SELECT member_key, lot_id, points, remaining, expires_at FROM pl_lots"):
            stored_lots.setdefault(r["member_key"], set()).add(
                (r["lot_id"], r["points"], r["remaining"], r["expires_at"])
            )
        for key, row in self.rows.items():
            member = self.members[key]
            expected = tuple(getattr(row, column) for column in MEMBER_COLUMNS)
            from_aggregate = _aggregate_row(key, member)
            where = f"member {row.member_id}"
            if expected != from_aggregate:
                self.result.report(
                    "members", where, f"the views' fold gives {expected}, the aggregate {from_aggregate}"
                )
            stored_row = stored.pop(key, None)
            if stored_row != expected:
                self.result.report("members", where, _difference(MEMBER_COLUMNS, expected, [stored_row]))
            lots = {(lot.lot_id, lot.points, lot.remaining, to_micros(lot.expires_at)) for lot in member.lots}
            if stored_lots.pop(key, set()) != lots:
                self.result.report("members", where, "open lots differ from the log's")
        for key in [*stored, *stored_lots]:
            self.result.report("members", f"member key {key}", "a row for a member the log does not hold")

    def _check_digest(self, position: int) -> None:
        if self.saved is None:
            return
        heads = ((key, self.versions[key], head.hash) for key, head in self.chain.items())
        recomputed = digest_of(position, heads, self.events)
        if recomputed == self.saved:
            self.result.digest = "matches"
            return
        self.result.digest = "differs"
        self.result.report("log", f"digest at position {position}",
                           f"saved {self.saved.as_dict()}, the log now gives {recomputed.as_dict()}")  # fmt: skip


def _aggregate_row(key: str, member: Member) -> Row:
    """A `pl_members` row as the domain aggregate, replayed from the log, has it."""
    return (
        key, member.member_id, member.balance, member.debt, member.tier, to_micros(member.last_effective_at),
        to_micros(member.enrolled_at), member.version,
    )  # fmt: skip


def _rows_by_position(sql: Sql, table: str, columns: Sequence[str], first: int, last: int) -> dict[int, list[Row]]:
    rows: dict[int, list[Row]] = {}
    for r in sql.rows(f"SELECT {', '.join(columns)} FROM {table} WHERE position BETWEEN ? AND ?", (first, last)):
        rows.setdefault(int(r["position"]), []).append(tuple(r[c] for c in columns))
    return rows


def _positions_after(sql: Sql, head: int) -> Iterator[int]:
    for table in ("pl_audit", "pl_lot_changes"):
        for r in sql.rows(f"SELECT DISTINCT position FROM {table} WHERE position > ? ORDER BY position", (head,)):
            yield int(r["position"])


def _difference(columns: Sequence[str], expected: Row, stored: Sequence[Row | None]) -> str:
    if not stored or stored[0] is None:
        return "row missing"
    if len(stored) > 1:
        return f"{len(stored)} rows where the log has one"
    changed = [f"{c}: {s!r} (log: {e!r})" for c, e, s in zip(columns, expected, stored[0], strict=True) if e != s]
    return "; ".join(changed)
