"""One partition of `verify`: the log replayed member by member, checked against itself and against the views.

For each member, in one pass over its events (projections.member_log), holding that member alone:
- the domain's own replay (`mutate`, independent of the views' code) must accept every event, and the views'
  fold (`fold_member_row`) must agree with it: balance, debt, tier, ledger time, version and open lots;
- each event's audit row, its hash recomputed from the stored bytes with the ledger's chain (keyed when a
  chain key is configured), must equal `pl_audit`'s row at that log position column for column, and its lot
  movements those of `pl_lot_changes`;
- the member's `pl_members` row and its `pl_lots` must equal the fold;
- every id the member's events claim (ledger.claims: the event id of every message, a purchase's transaction
  id, a refund's, a redemption's and an adjustment's id) must be claimed once: a re-sent message is
  recorded once; and the claim index the writer dedupes with (`ledger_claims`) must hold exactly those
  claims, no more and no fewer (a row deleted from it would let a message in twice);
- every snapshot stored of the member must equal the replay at its version (decoded with the library's
  snapshot mapper, compared field by field: whatever the aggregate's state holds).
A worker (projections.partitions) runs one partition on PostgreSQL; otherwise the caller runs the one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from ledger.application import LedgerApplication
from ledger.claims import Kind
from ledger.member import Member
from ledger.micros import to_micros
from ledger.program import Program
from ledger.storage.chain import Chain
from ledger.storage.store import Store
from projections.building import decode_one
from projections.db import Sql, ViewDatabase
from projections.member_log import MemberLog
from projections.partitions import Report, checking_parent, opened
from projections.views import (
    AUDIT_COLUMNS,
    LOT_CHANGE_COLUMNS,
    LOT_COLUMNS,
    MEMBER_COLUMNS,
    ChainHead,
    MemberRow,
    audit_row,
    fold_member_row,
)

#: Discrepancies a partition reports in full (all are counted).
DISCREPANCIES_KEPT_MAX = 1_000
#: The aggregate's attribute that is no part of its state (events not yet recorded).
_PENDING = "_pending_events"
#: Differences between a member's claims and the claim index reported one by one, per member (the rest counted).
CLAIM_DIFFERENCES_SHOWN = 3
_HASH = AUDIT_COLUMNS.index("hash")
Row = tuple[Any, ...]
#: Told of each discrepancy: (view, where, detail).
Found = Callable[[str, str, str], None]


@dataclass(frozen=True, slots=True)
class MemberCheckJob:
    """Partition `part` of `parts` of the log up to `stop`, checked with the ledger's chain. The views are
    compared only when `compare_views` (not when they could not be caught up to `stop`), their hashes only
    when `compare_hashes` (not when the audit trail is chained in another mode)."""

    store: Store
    program: Program
    stop: int
    part: int
    parts: int
    parent: int
    compare_views: bool
    compare_hashes: bool

    def run(self, report: Callable[[Report], None]) -> None:
        """In a worker: open the ledger and check the partition."""
        with opened(self.store, self.program) as app:
            self.check(app, report, in_worker=True)

    def check(self, app: LedgerApplication, report: Callable[[Report], None], *, in_worker: bool = False) -> None:
        """Check the partition, reporting {"events": n} after each page, {"discrepancy": [view, where, detail]}
        for the first DISCREPANCIES_KEPT_MAX found, and {"totals": {...}} at the end."""
        found = 0

        def discrepancy(view: str, where: str, detail: str) -> None:
            nonlocal found
            found += 1
            if found <= DISCREPANCIES_KEPT_MAX:
                report({"discrepancy": [view, where, detail]})

        log = MemberLog(app, self.stop, self.part, self.parts)
        checker = _Checker(app, log, discrepancy, chain=app.store.chain, compare=self._compared())
        pages = log.pages()
        for page in checking_parent(pages, self.parent) if in_worker else pages:
            checker.page(page)
            report({"events": len(page)})
        checker.finish()
        report({"totals": {"members": checker.members, "snapshots": checker.snapshots, "found": found}})

    def _compared(self) -> Compared:
        if not self.compare_views:
            return Compared.NOTHING
        return Compared.ROWS_AND_HASHES if self.compare_hashes else Compared.ROWS


class Compared(Enum):
    """What of the views a partition compares with the log."""

    NOTHING = "nothing"
    ROWS = "rows"
    ROWS_AND_HASHES = "rows and hashes"


@dataclass(slots=True)
class _MemberState:
    """One member while its events are replayed."""

    id: UUID
    key: str
    snapshots: dict[int, StoredEvent]
    aggregate: Member | None = None
    #: The views' fold, keyed by member key as `fold_member_row` keeps it.
    rows: dict[str, MemberRow] = field(default_factory=dict)
    head: ChainHead | None = None
    #: Each id claimed (kind code, id), with the version that claimed it.
    claims: dict[tuple[str, str], int] = field(default_factory=dict)
    broken: bool = False


class _Checker:
    def __init__(
        self, app: LedgerApplication, log: MemberLog, found: Found, *, chain: Chain, compare: Compared
    ) -> None:
        self.app, self.db, self.log, self.chain = app, ViewDatabase(app), log, chain
        self.compare = compare
        self.found = found
        self.keys: dict[UUID | str, str] = {}
        self.current: _MemberState | None = None
        self.members = self.snapshots = 0

    def page(self, notifications: Sequence[Notification]) -> None:
        current = self.current
        starting = {n.originator_id for n in notifications} - ({current.id} if current is not None else set())
        snapshots = self.log.snapshots_of(starting)  # type: ignore[arg-type]
        stored_audit, stored_changes = self._stored_rows([n.id for n in notifications])
        finished: list[_MemberState] = []
        for notification in notifications:
            member_id: UUID = notification.originator_id  # type: ignore[assignment]
            if current is None or current.id != member_id:
                if current is not None:
                    finished.append(current)
                current = _MemberState(member_id, str(member_id), snapshots.get(member_id, {}))
                self.members += 1
            self._one(current, notification, stored_audit.get(notification.id, []),
                      stored_changes.get(notification.id, []))  # fmt: skip
        self.current = current
        self._compare_claim_index(finished)
        self._compare_stored_members(finished)

    def _stored_rows(self, positions: list[int]) -> tuple[dict[int, list[Row]], dict[int, list[Row]]]:
        """The audit rows and lot movements the views hold at these log positions."""
        if self.compare is Compared.NOTHING:
            return {}, {}
        with self.db.transaction(commit=False) as sql:
            audit = _rows_at(sql, "pl_audit", AUDIT_COLUMNS, positions)
            return audit, _rows_at(sql, "pl_lot_changes", LOT_CHANGE_COLUMNS, positions)

    def finish(self) -> None:
        if self.current is not None:
            self._compare_claim_index([self.current])
            self._compare_stored_members([self.current])
            self.current = None

    def _one(self, member: _MemberState, notification: Notification, audit: list[Row], changes: list[Row]) -> None:
        if member.broken:
            return  # reported once, at the event that broke its replay
        try:
            log_event = decode_one(self.app, notification, self.keys)
            aggregate = log_event.event.mutate(member.aggregate)
            if not isinstance(aggregate, Member):
                raise TypeError("a member's events must start with Enrolled")
            member.aggregate = aggregate
            expected_changes = fold_member_row(member.rows, log_event)
            expected_audit = audit_row(log_event, member.head, self.chain)
        except Exception as error:  # an event the log cannot replay is itself a finding
            member.broken = True
            self.found("log", f"position {notification.id}",
                       f"cannot replay member {member.key}: {type(error).__name__}: {error}")  # fmt: skip
            return
        row = expected_audit
        member.head = ChainHead(row[3], row[10], row[12], row[-1])
        where = f"member {row[3]} version {row[1]} (position {notification.id})"
        if (row[10], row[12]) != (aggregate.balance, aggregate.tier):
            self.found("audit", where, f"the views' fold gives {row[10]}/{row[12]}, "
                       f"the aggregate {aggregate.balance}/{aggregate.tier}")  # fmt: skip
        self._check_claims(member, log_event.event, where)
        self._check_snapshot(member, aggregate, where)
        if self.compare is Compared.NOTHING:
            return
        with_hashes = self.compare is Compared.ROWS_AND_HASHES
        if self._audit_differs(audit, expected_audit, with_hashes):
            self.found("audit", where, _difference(AUDIT_COLUMNS, expected_audit, audit, with_hashes))
        if sorted(changes) != sorted(expected_changes):
            self.found("members", where, f"lot movements {changes} differ from the log's {expected_changes}")

    @staticmethod
    def _audit_differs(stored: list[Row], expected: Row, with_hashes: bool) -> bool:
        if with_hashes:
            return stored != [expected]
        return len(stored) != 1 or _without_hash(stored[0]) != _without_hash(expected)

    def _check_claims(self, member: _MemberState, event: Member.Event, where: str) -> None:
        """Each id is claimed once per member: a message's event id by its outcome (or the enrolment it made),
        a business id by the outcome that used it."""
        for claim in event.claims():
            first = member.claims.setdefault((claim.kind, claim.key), event.originator_version)
            if first != event.originator_version:
                self.found("log", where, f"{_claim_name(claim.kind)} {claim.key!r} is recorded twice: at versions "
                           f"{first} and {event.originator_version}")  # fmt: skip

    def _compare_claim_index(self, members: list[_MemberState]) -> None:
        """The claim index must hold each replayed member's claims, each at the version that made it."""
        replayed = [member for member in members if not member.broken]
        if not replayed:
            return
        indexed = self.app.claims.rows_of([member.id for member in replayed])
        for member in replayed:
            expected = {(kind, key, version) for (kind, key), version in member.claims.items()}
            replayed_to = member.aggregate.version if member.aggregate is not None else 0
            held = {claim for claim in indexed.get(member.id, set()) if claim[2] <= replayed_to}  # not later writes
            differences = [
                *(f"lacks {_claim_name(kind)} {key!r} (claimed at version {version})"
                  for kind, key, version in sorted(expected - held)),
                *(f"holds {_claim_name(kind)} {key!r} at version {version}, which the log does not claim"
                  for kind, key, version in sorted(held - expected)),
            ]  # fmt: skip
            for difference in differences[:CLAIM_DIFFERENCES_SHOWN]:
                self.found("claims", f"member key {member.key}", f"the claim index {difference}")
            if len(differences) > CLAIM_DIFFERENCES_SHOWN:
                more = len(differences) - CLAIM_DIFFERENCES_SHOWN
                self.found("claims", f"member key {member.key}", f"{more} more differences from the claim index")

    def _check_snapshot(self, member: _MemberState, aggregate: Member, where: str) -> None:
        """The snapshot stored at this version, if any, must equal the replay."""
        stored = member.snapshots.pop(aggregate.version, None)
        snapshots = self.app.snapshots
        if stored is None or snapshots is None:
            return
        self.snapshots += 1
        try:
            from_snapshot = snapshots.mapper.to_domain_event(stored).mutate(None)  # type: ignore[attr-defined]
        except Exception as error:  # a snapshot the code cannot read
            self.found("snapshots", where, f"cannot read the snapshot: {type(error).__name__}: {error}")
            return
        differing = _differing_state(from_snapshot, aggregate)
        if differing:
            self.found("snapshots", where, f"the snapshot differs from the log's replay in {', '.join(differing)}")

    def _compare_stored_members(self, members: list[_MemberState]) -> None:
        """The `pl_members` rows and `pl_lots` of members whose events have all been replayed."""
        replayed = [member for member in members if not member.broken and member.aggregate is not None]
        if not replayed or self.compare is Compared.NOTHING:
            return
        with self.db.transaction(commit=False) as sql:
            among, keys = sql.among("member_key", [member.key for member in replayed])
            stored = {
                r["member_key"]: tuple(r[c] for c in MEMBER_COLUMNS)
                for r in sql.rows(f"SELECT * FROM pl_members WHERE {among}", keys)
            }
            stored_lots: dict[str, set[Row]] = {}
            for r in sql.rows(f"SELECT {', '.join(LOT_COLUMNS)} FROM pl_lots WHERE {among}", keys):
                stored_lots.setdefault(r["member_key"], set()).add(tuple(r[c] for c in LOT_COLUMNS[1:]))
        for member in replayed:
            aggregate = member.aggregate
            if aggregate is None:
                continue
            row = member.rows[member.key]
            expected = tuple(getattr(row, column) for column in MEMBER_COLUMNS)
            from_aggregate = _aggregate_row(member.key, aggregate)
            where = f"member {row.member_id}"
            if expected != from_aggregate:
                self.found("members", where, f"the views' fold gives {expected}, the aggregate {from_aggregate}")
            stored_row = stored.get(member.key)
            if stored_row != expected:
                self.found("members", where, _difference(MEMBER_COLUMNS, expected, [stored_row], True))
            lots = {(lot.lot_id, lot.points, lot.remaining, to_micros(lot.expires_at)) for lot in aggregate.lots}
            if stored_lots.get(member.key, set()) != lots:
                self.found("members", where, "open lots differ from the log's")


def _claim_name(kind: str) -> str:
    """How a finding names a kind of claimed id (a code the ledger never writes is shown as it is)."""
    return Kind.NAMES.get(kind, f"id of kind {kind!r}")


def _differing_state(snapshot: Any, replayed: Any) -> list[str]:
    """The state attributes in which two aggregates differ (the events not yet recorded are no part of it)."""
    left, right = vars(snapshot), vars(replayed)
    names = (left.keys() | right.keys()) - {_PENDING}
    return sorted(name for name in names if left.get(name, _PENDING) != right.get(name, _PENDING))


def _aggregate_row(key: str, member: Member) -> Row:
    """A `pl_members` row as the domain aggregate, replayed from the log, has it."""
    return (
        key, member.member_id, member.balance, member.debt, member.tier, to_micros(member.last_effective_at),
        to_micros(member.enrolled_at), member.version,
    )  # fmt: skip


def _rows_at(sql: Sql, table: str, columns: Sequence[str], positions: Sequence[int]) -> dict[int, list[Row]]:
    """`table`'s rows at the log positions given, by position."""
    rows: dict[int, list[Row]] = {}
    among, params = sql.among("position", positions)
    for r in sql.rows(f"SELECT {', '.join(columns)} FROM {table} WHERE {among}", params):
        rows.setdefault(int(r["position"]), []).append(tuple(r[c] for c in columns))
    return rows


def _without_hash(row: Row) -> Row:
    return row[:_HASH] + row[_HASH + 1 :]


def _difference(columns: Sequence[str], expected: Row, stored: Sequence[Row | None], with_hash: bool) -> str:
    if not stored or stored[0] is None:
        return "row missing"
    if len(stored) > 1:
        return f"{len(stored)} rows where the log has one"
    changed = [
        f"{c}: {s!r} (log: {e!r})"
        for c, e, s in zip(columns, expected, stored[0], strict=True)
        if e != s and (with_hash or c != "hash")
    ]
    return "; ".join(changed)
