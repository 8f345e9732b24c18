"""`verify`: never trust a view over the log. Read the log itself, check it against itself, and compare every
view with it.

- The members, replayed from the log one at a time (projections.member_check): their hash chains (keyed with
  the chain key when one is configured), the ids they claim and the claim index, snapshots and every view
  row. On PostgreSQL worker processes (run as projections.partitions runs a rebuild's) take a range of
  member ids each, holding one member at a time: memory grows with neither the members nor the events.
- Rows the log does not account for: view rows at positions the log does not hold, or of members it never
  enrolled, and snapshots of events it does not hold.
- The upstream positions: each tracking position must be the last one the position log recorded, and that
  log's chain must hold (ledger.storage.position_log).
- With a saved digest, the digest recomputed from the log at its position must equal it: a stored event
  edited, deleted or inserted since is caught, whatever the views say (projections.digest).
A trail or digest chained in another mode than this run's (another key, or none) is one discrepancy saying so,
not one per row.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.storage.chain import mismatch
from ledger.storage.position_log import check_positions
from projections.db import Sql
from projections.digest import Digest, legacy_digest, log_digest
from projections.member_check import DISCREPANCIES_KEPT_MAX, MemberCheckJob
from projections.partitions import Report, WorkerError, run_in_workers
from projections.publish import PUBLISH_TRACKING_PREFIX
from projections.runner import Projections, rebuild_workers
from projections.views import VIEWS, AuditView

#: Told the number of events checked so far.
OnEvents = Callable[[int], None]


class VerifyWorkerError(WorkerError):
    """A verify worker failed or died: verify stops without a verdict."""

    label = "verify"


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
    snapshots: int = 0
    #: The chain's mode this run checks with (ledger.storage.chain).
    chain: str = ""
    found: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    digest: str | None = None  # "matches" | "differs" | "unchecked" | None (no digest given)

    def report(self, view: str, where: str, detail: str) -> None:
        self.found += 1
        if len(self.discrepancies) < DISCREPANCIES_KEPT_MAX:
            self.discrepancies.append(Discrepancy(view, where, detail))

    def summary(self) -> dict[str, Any]:
        """What was checked and the verdict, as `verify` prints it last."""
        return {
            "position": self.position, "events": self.events, "members": self.members, "snapshots": self.snapshots,
            "chain": self.chain, "discrepancies": self.found, "digest": self.digest,
        }  # fmt: skip

    def rows(self) -> list[dict[str, str]]:
        """The discrepancies kept (at most DISCREPANCIES_KEPT_MAX of `found`), a row each."""
        return [{"view": d.view, "where": d.where, "detail": d.detail} for d in self.discrepancies]


def verify(
    projections: Projections, saved: Digest | None = None, on_events: OnEvents | None = None, workers: int | None = None
) -> Verification:
    chain = projections.chain
    result = Verification(chain=chain.mode)
    try:
        projections.catch_up()
    except Exception as error:  # a view too damaged (or chained with another key) to catch up is a finding
        result.report("views", "catch-up", f"cannot catch up: {type(error).__name__}: {error}")
    db = projections.db
    head = db.head()
    result.position = head
    behind = [state for state in projections.status() if state.position != head]
    for state in behind:
        detail = f"at {state.position}, the log head is {head}: no view's rows were compared"
        result.report(state.name, "position", detail)
    with db.transaction(commit=False) as sql:
        mode = AuditView.chain_mode(sql)
    problem = None if mode is None else mismatch("the audit trail's hash chain", mode, chain)
    if problem is not None:
        result.report("audit", "chain", f"{problem}: its hashes were not compared")
    parts = rebuild_workers(db.dialect, head, workers)
    app = projections.app
    jobs = [
        MemberCheckJob(app.store, app.program, head, part, parts, os.getpid(), not behind, problem is None)
        for part in range(parts)
    ]
    _check_members(projections, jobs, result, on_events)
    if not behind:
        with db.transaction(commit=False) as sql:
            _check_unaccounted(projections, sql, head, result)
    for upstream, detail in check_positions(projections.app, chain, _projection_tracking):
        result.report("positions", upstream, detail)
    if saved is not None:
        _check_digest(projections, saved, head, result)
    return result


def _check_members(
    projections: Projections, jobs: Sequence[MemberCheckJob], result: Verification, on_events: OnEvents | None
) -> None:
    """Run the member checks, in workers when there is more than one partition."""

    def on_report(part: int, report: Report | None) -> None:
        if report is None:
            return
        if "events" in report:
            result.events += int(report["events"])
            if on_events is not None:
                on_events(result.events)
        elif "discrepancy" in report:
            result.report(*report["discrepancy"])
        else:
            totals = report["totals"]
            result.members += int(totals["members"])
            result.snapshots += int(totals["snapshots"])
            result.found += int(totals["found"]) - min(int(totals["found"]), DISCREPANCIES_KEPT_MAX)

    if len(jobs) > 1:
        run_in_workers(jobs, on_report, VerifyWorkerError)
    else:
        jobs[0].check(projections.app, lambda report: on_report(0, report))


def _projection_tracking(name: str) -> bool:
    """A tracking row of the views or a publisher (SQLite keeps them in the ledger's tracking table)."""
    return name in {view.tracking_name for view in VIEWS.values()} or name.startswith(PUBLISH_TRACKING_PREFIX)


#: (table, what its rows stand for, the column naming one): view rows keyed by log position.
_BY_POSITION = (("pl_audit", "an audit row"), ("pl_lot_changes", "a lot movement"))
#: View rows keyed by member.
_BY_MEMBER = (("pl_members", "a member row"), ("pl_lots", "an open lot"))


def _check_unaccounted(projections: Projections, sql: Sql, head: int, result: Verification) -> None:
    """Rows the member checks never meet: at positions the log does not hold (or beyond its head), of members
    it never enrolled, and snapshots of events it does not hold."""
    log = _LogTables(projections)
    for table, what in _BY_POSITION:
        for (position,) in _some(sql, f"SELECT DISTINCT position FROM {table} a WHERE position > ? "
                                      "ORDER BY position", (head,)):  # fmt: skip
            result.report("views", f"position {position}", f"{what} beyond the log's head")
        statement = (
            f"SELECT DISTINCT position FROM {table} a WHERE position <= ? AND NOT EXISTS "
            f"(SELECT 1 FROM {log.events} e WHERE e.{log.position} = a.position) ORDER BY position"
        )
        for (position,) in _some(sql, statement, (head,)):
            result.report("views", f"position {position}", f"{what} for an event the log does not hold")
    for table, what in _BY_MEMBER:
        statement = (
            f"SELECT DISTINCT member_key FROM {table} m WHERE NOT EXISTS (SELECT 1 FROM {log.events} e "
            f"WHERE e.originator_id = {log.member_id('m.member_key')} AND e.originator_version = 1 "
            f"AND e.{log.position} <= ?) ORDER BY member_key"
        )
        for (member_key,) in _some(sql, statement, (head,)):
            result.report("members", f"member key {member_key}", f"{what} of a member the log does not hold")
    if log.snapshots is not None:
        statement = (
            f"SELECT originator_id, originator_version FROM {log.snapshots} s WHERE NOT EXISTS (SELECT 1 FROM "
            f"{log.events} e WHERE e.originator_id = s.originator_id AND e.originator_version = s.originator_version) "
            "ORDER BY originator_id, originator_version"
        )
        for member_id, version in _some(sql, statement, ()):
            result.report("snapshots", f"member key {member_id} version {version}",
                          "a snapshot of an event the log does not hold")  # fmt: skip


class _LogTables:
    """The log's tables as a view query names them, in either database."""

    def __init__(self, projections: Projections) -> None:
        app = projections.app
        self.postgresql = projections.db.dialect == "postgresql"
        self.events: str = app.recorder.events_table_name  # type: ignore[attr-defined]
        self.snapshots: str | None = (
            None if app.snapshots is None else app.snapshots.recorder.events_table_name  # type: ignore[attr-defined]
        )
        self.position = "notification_id" if self.postgresql else "rowid"

    def member_id(self, member_key: str) -> str:
        """SQL for the log's id of the member whose key (`str(uuid)`) is `member_key` (NULL if it is none)."""
        if self.postgresql:
            pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
            return f"(CASE WHEN {member_key} ~ '{pattern}' THEN CAST({member_key} AS uuid) END)"
        return f"replace({member_key}, '-', '')"  # SQLite holds a UUID as its hex text


def _some(sql: Sql, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The first rows of a query for discrepancies (at most as many as are printed)."""
    rows = sql.rows(f"{statement} LIMIT {DISCREPANCIES_KEPT_MAX}", params)
    return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in rows]


def _check_digest(projections: Projections, saved: Digest, head: int, result: Verification) -> None:
    """Recompute the saved digest from the log at its position (never from the views)."""
    if saved.position > head:
        result.digest = "differs"
        result.report("log", "digest", f"the digest is at position {saved.position}, the log ends at {head}")
        return
    chain = projections.chain
    if saved.chain is None:
        recomputed = legacy_digest(projections.app, saved.position)
    else:
        problem = mismatch("the saved digest", saved.chain, chain)
        if problem is not None:
            result.digest = "unchecked"
            result.report("log", "digest", f"{problem}: it cannot be recomputed")
            return
        recomputed = log_digest(projections.app, saved.position, chain)
    if recomputed == saved:
        result.digest = "matches"
        return
    result.digest = "differs"
    result.report("log", f"digest at position {saved.position}",
                  f"saved {saved.as_dict()}, the log now gives {recomputed.as_dict()}")  # fmt: skip
