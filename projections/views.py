"""The read models: each a set of tables owned by one view, kept by applying log events in batches.

- `members`: one row per member (balance, debt, tier, ledger time, version), the open lots (remaining
  points, expiry) and every lot movement (for lots and expiring points as of any time).
- `audit`: one row per recorded change (the audit trail), with the running balance, the tier after,
  provenance, and a hash chain per member over the stored event's bytes (tamper evidence): SHA-256, or
  HMAC-SHA-256 under the chain key when one is configured (ledger.storage.chain); `pl_audit_chain` records which.

A view applies a batch of events to its tables in the caller's transaction. It reads only its own
tables, so views can be caught up and rebuilt apart. Table names take a suffix: a rebuild writes
`<table>__new` and swaps it in at the end (projections.runner).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification

from ledger.events import signed_flow
from ledger.member import Member
from ledger.micros import from_micros, to_micros
from ledger.rules import Lot
from ledger.storage.chain import UNKEYED, Chain, ChainMismatchError, mismatch
from projections.db import Rows, Sql, placeholders
from projections.figures import fold_member
from projections.statements import COMMON_FIELDS

#: The hash a member's chain starts from.
GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A decoded event with its place in the log, the bytes the log stores for it, and its member's key."""

    position: int
    event: Member.Event
    notification: Notification
    member_key: str


def by_member(events: Iterable[LogEvent]) -> dict[str, list[LogEvent]]:
    """A batch's events grouped by member, each member's in log order."""
    grouped: dict[str, list[LogEvent]] = {}
    for log_event in events:
        grouped.setdefault(log_event.member_key, []).append(log_event)
    return grouped


def index(name: str, table: str, columns: str, *, unique: bool = False) -> tuple[str, str]:
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return name, f"CREATE {kind} IF NOT EXISTS {name} ON {table} ({columns})"


class View(ABC):
    """A read model: its tables, its indexes, and how a batch of events changes them."""

    name: str

    @property
    def tracking_name(self) -> str:
        """The name its position is recorded under in the library's tracking table."""
        return f"view:{self.name}"

    #: Each table's columns (SQL) and its primary key's columns, by live name, in creation order.
    schema: dict[str, tuple[str, str]]

    @property
    def tables(self) -> tuple[str, ...]:
        """Its tables' live names, in creation order."""
        return tuple(self.schema)

    def create_statements(self, suffix: str, *, keyed: bool = True) -> list[str]:
        """CREATE TABLE statements for the tables named with `suffix`; with `keyed`, their primary keys too
        (a rebuild adds them after the load: a key built by one sort costs a third of one kept row by row)."""
        return [
            f"CREATE TABLE IF NOT EXISTS {table}{suffix} ({columns}"
            + (f", CONSTRAINT {table}{suffix}_pkey PRIMARY KEY ({key}))" if keyed else ")")
            for table, (columns, key) in self.schema.items()
        ]

    def rows(self, table: str, suffix: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Rows:
        """`rows` to append to `table` (its live name) named with `suffix`, with their columns' types."""
        return Rows(table + suffix, columns, rows, copy_types(self.schema[table][0], columns))

    def key_statements(self, suffix: str) -> list[str]:
        """The statements adding the primary keys to tables created without them."""
        return [
            f"ALTER TABLE {table}{suffix} ADD CONSTRAINT {table}{suffix}_pkey PRIMARY KEY ({key})"
            for table, (_, key) in self.schema.items()
        ]

    @abstractmethod
    def index_statements(self, suffix: str) -> list[tuple[str, str]]:
        """(index name, CREATE INDEX statement) of each secondary index, named after its table."""

    @abstractmethod
    def apply(self, sql: Sql, events: Sequence[LogEvent], suffix: str, chain: Chain) -> None:
        """Apply `events` (in log order, none applied before) to the tables named with `suffix`; `chain` hashes
        the audit trail (the one view that keeps a chain)."""

    @abstractmethod
    def builder(self, suffix: str, chain: Chain) -> ViewBuilder:
        """What builds this view's fresh tables from the start of the log (a rebuild)."""


#: The PostgreSQL type a binary COPY sends for each SQL type the views' columns use.
_COPY_TYPES = {"BIGINT": "int8", "TEXT": "text"}


@cache
def copy_types(columns_sql: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The type of each of `columns`, as declared in a table's column definitions (`name TYPE [NOT NULL]`)."""
    declared = {name: _COPY_TYPES[kind] for name, kind, *_ in (column.split() for column in columns_sql.split(", "))}
    return tuple(declared[column] for column in columns)


class ViewBuilder(ABC):
    """Builds fresh tables from the whole log, keeping every member's state in memory between batches
    (nothing is read back); it only computes rows, and the caller appends them in bulk."""

    @abstractmethod
    def add(self, events: Sequence[LogEvent]) -> list[Rows]:
        """The rows `events` (the next ones in log order) add to the tables."""

    @abstractmethod
    def finish(self) -> list[Rows]:
        """The rows kept in memory until the end (asked once, after the last batch)."""


# ---- members: balances, tiers, ledger time, lots ---------------------------------------------------


LOT_COLUMNS = ("member_key", "lot_id", "points", "remaining", "expires_at")
LOT_CHANGE_COLUMNS = ("position", "member_key", "lot_id", "effective_at", "delta", "points", "expires_at")
MEMBER_COLUMNS = ("member_key", "member_id", "balance", "debt", "tier", "ledger_time", "enrolled_at", "version")


@dataclass(slots=True)
class MemberRow:
    """A member's row of `pl_members` and their open lots, while a batch is applied."""

    member_key: str
    member_id: str
    balance: int
    debt: int
    tier: str
    ledger_time: int
    enrolled_at: int
    version: int
    lots: dict[int, Lot] = field(default_factory=dict)
    changed_lots: set[int] = field(default_factory=set)


class MembersView(View):
    name = "members"
    schema = {  # noqa: RUF012 (read-only)
        "pl_members": (
            "member_key TEXT NOT NULL, member_id TEXT NOT NULL, balance BIGINT NOT NULL, debt BIGINT NOT NULL, "
            "tier TEXT NOT NULL, ledger_time BIGINT NOT NULL, enrolled_at BIGINT NOT NULL, version BIGINT NOT NULL",
            "member_key",
        ),
        "pl_lots": (
            "member_key TEXT NOT NULL, lot_id BIGINT NOT NULL, points BIGINT NOT NULL, remaining BIGINT NOT NULL, "
            "expires_at BIGINT NOT NULL",
            "member_key, lot_id",
        ),
        "pl_lot_changes": (
            "position BIGINT NOT NULL, member_key TEXT NOT NULL, lot_id BIGINT NOT NULL, effective_at BIGINT NOT NULL, "
            "delta BIGINT NOT NULL, points BIGINT NOT NULL, expires_at BIGINT NOT NULL",
            "position, lot_id",
        ),
    }

    def index_statements(self, suffix: str) -> list[tuple[str, str]]:
        members, lots, changes = (table + suffix for table in self.tables)
        return [
            index(f"{members}_by_id", members, "member_id"),
            index(f"{members}_by_tier", members, "tier"),
            index(f"{lots}_by_expiry", lots, "expires_at"),
            index(f"{changes}_by_member", changes, "member_key, effective_at"),
            index(f"{changes}_by_time", changes, "effective_at"),
        ]

    def apply(self, sql: Sql, events: Sequence[LogEvent], suffix: str, chain: Chain) -> None:
        members_table, lots_table = (table + suffix for table in self.tables[:2])
        grouped = by_member(events)
        rows = self._load(sql, members_table, lots_table, [key for key, es in grouped.items() if _needs_load(es)])
        lot_changes: list[tuple[Any, ...]] = []
        for member_events in grouped.values():
            for log_event in member_events:
                lot_changes.extend(fold_member_row(rows, log_event))
        sql.executemany(
            f"INSERT INTO {members_table} (member_key, member_id, balance, debt, tier, ledger_time, enrolled_at, "
            "version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (member_key) DO UPDATE SET "
            "balance = excluded.balance, debt = excluded.debt, tier = excluded.tier, "
            "ledger_time = excluded.ledger_time, version = excluded.version",
            [
                (r.member_key, r.member_id, r.balance, r.debt, r.tier, r.ledger_time, r.enrolled_at, r.version)
                for r in rows.values()
                if r.member_key in grouped
            ],
        )
        changed = [(row, lot_id, row.lots.get(lot_id)) for row in rows.values() for lot_id in sorted(row.changed_lots)]
        sql.executemany(
            f"DELETE FROM {lots_table} WHERE member_key = ? AND lot_id = ?",
            [
                (row.member_key, lot_id)
                for row in rows.values()
                for lot_id in row.changed_lots
                if lot_id not in row.lots
            ],
        )
        sql.executemany(
            f"INSERT INTO {lots_table} (member_key, lot_id, points, remaining, expires_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (member_key, lot_id) DO UPDATE SET remaining = excluded.remaining",
            [
                (row.member_key, lot.lot_id, lot.points, lot.remaining, to_micros(lot.expires_at))
                for row, _, lot in changed
                if lot is not None
            ],
        )
        sql.copy(self.rows("pl_lot_changes", suffix, LOT_CHANGE_COLUMNS, lot_changes))

    def builder(self, suffix: str, chain: Chain) -> ViewBuilder:
        return _MembersBuilder(self, suffix)

    @staticmethod
    def _load(sql: Sql, members_table: str, lots_table: str, keys: list[str]) -> dict[str, MemberRow]:
        if not keys:
            return {}
        marks = placeholders(len(keys))
        rows = {
            r["member_key"]: MemberRow(*(r[column] for column in MEMBER_COLUMNS))
            for r in sql.rows(
                f"SELECT {', '.join(MEMBER_COLUMNS)} FROM {members_table} WHERE member_key IN ({marks})",
                keys,
            )
        }
        for r in sql.rows(
            f"SELECT member_key, lot_id, points, remaining, expires_at FROM {lots_table} WHERE member_key IN ({marks})",
            keys,
        ):
            rows[r["member_key"]].lots[r["lot_id"]] = Lot(
                r["lot_id"], r["points"], r["remaining"], from_micros(r["expires_at"])
            )
        return rows


class _MembersBuilder(ViewBuilder):
    def __init__(self, view: MembersView, suffix: str) -> None:
        self.view = view
        self.suffix = suffix
        self.rows: dict[str, MemberRow] = {}

    def add(self, events: Sequence[LogEvent]) -> list[Rows]:
        changes: list[tuple[Any, ...]] = []
        for log_event in events:
            changes.extend(fold_member_row(self.rows, log_event))
        return [self.view.rows("pl_lot_changes", self.suffix, LOT_CHANGE_COLUMNS, changes)]

    def finish(self) -> list[Rows]:
        members = [tuple(getattr(row, column) for column in MEMBER_COLUMNS) for row in self.rows.values()]
        lots = [
            (row.member_key, lot.lot_id, lot.points, lot.remaining, to_micros(lot.expires_at))
            for row in self.rows.values()
            for lot in row.lots.values()
        ]
        return [
            self.view.rows("pl_members", self.suffix, MEMBER_COLUMNS, members),
            self.view.rows("pl_lots", self.suffix, LOT_COLUMNS, lots),
        ]


def _needs_load(events: Sequence[LogEvent]) -> bool:
    """A member whose first event in the batch is not its enrollment is stored already."""
    return not isinstance(events[0].event, Member.Enrolled)


def fold_member_row(rows: dict[str, MemberRow], log_event: LogEvent) -> list[tuple[Any, ...]]:
    """One event on its member's row (created by the enrollment); the lot movement rows it makes."""
    key, event = log_event.member_key, log_event.event
    if isinstance(event, Member.Enrolled):
        rows[key] = MemberRow(key, event.member_id, 0, 0, event.tier, 0, to_micros(event.enrolled_at), 0)
    row = rows.get(key)
    if row is None:
        raise LookupError(f"view members: event {log_event.position} of an unknown member {key}")
    at = to_micros(event.effective_at)
    moves = event.lot_moves()
    row.debt += moves.debt_delta
    changes: list[tuple[Any, ...]] = []
    for lot, delta in fold_member(row, event, moves):
        row.changed_lots.add(lot.lot_id)
        changes.append(
            (log_event.position, row.member_key, lot.lot_id, at, delta, lot.points, to_micros(lot.expires_at))
        )
    row.ledger_time = at
    row.version = event.originator_version
    return changes


# ---- audit: the audit trail and its hash chains ----------------------------------------------------


#: The audit row's columns in order; `hash` last (it covers all the others and the stored event).
AUDIT_COLUMNS = (
    "member_key", "version", "position", "member_id", "effective_at", "occurred_at", "recorded_at", "kind",
    "flow", "delta", "balance", "tier_before", "tier", "event_id", "source", "operator", "reason", "details", "hash",
)  # fmt: skip


@dataclass(slots=True)
class ChainHead:
    """A member's last audit row: what the next row continues from."""

    member_id: str
    balance: int
    tier: str
    hash: str


def audit_row(log_event: LogEvent, head: ChainHead | None, chain: Chain) -> tuple[Any, ...]:
    """The audit row of one event after `head` (None for an enrollment), hash included."""
    event = log_event.event
    if isinstance(event, Member.Enrolled):
        head = ChainHead(event.member_id, 0, event.tier, GENESIS_HASH)
    if head is None:
        raise LookupError(f"view audit: event {log_event.position} of an unknown member {log_event.member_key}")
    flow = event.flow()
    delta = 0 if flow is None else signed_flow(*flow)
    tier_after = event.to_tier if isinstance(event, Member.TierChanged) else head.tier
    provenance = event.provenance
    occurred_at = provenance.get("occurred_at")
    reason = getattr(event, "reason", None)
    content = (
        log_event.member_key,
        event.originator_version,
        log_event.position,
        head.member_id,
        to_micros(event.effective_at),
        None if occurred_at is None else to_micros(occurred_at),
        to_micros(event.timestamp),
        type(event).__name__,
        None if flow is None else flow[0],
        delta,
        head.balance + delta,
        head.tier,
        tier_after,
        provenance.get("event_id"),
        _compact_json(provenance.get("source") or {}),
        getattr(event, "operator", None),
        reason if isinstance(reason, str) else None,
        _compact_json({key: value for key, value in vars(event).items() if key not in COMMON_FIELDS}),
    )
    # `details` (the last column) presents the stored bytes as the current code reads them; the bytes
    # themselves are hashed, so an upcast that changes the presentation leaves every hash and digest as is
    return (*content, chain_hash(head.hash, content[:-1], log_event.notification, chain))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} in an audit row")


def _compact_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8; datetimes as ISO 8601 (orjson writes them as `isoformat` does)."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_SORT_KEYS).decode()


def chain_hash(previous: str, content: Sequence[Any], notification: Notification, chain: Chain) -> str:
    """The chain's hash (SHA-256, or HMAC-SHA-256 under the key) over the previous row's hash, this row's own
    content (every column but `details`, which the stored bytes already commit to) and the stored event: a
    JSON array of the previous hash, the content, the event's topic and its length in bytes, then the bytes."""
    framed = orjson.dumps([previous, content, notification.topic, len(notification.state)])
    return chain.hash(framed + notification.state)


class AuditView(View):
    name = "audit"
    schema = {  # noqa: RUF012 (read-only)
        "pl_audit": (
            "member_key TEXT NOT NULL, version BIGINT NOT NULL, position BIGINT NOT NULL, member_id TEXT NOT NULL, "
            "effective_at BIGINT NOT NULL, occurred_at BIGINT, recorded_at BIGINT NOT NULL, kind TEXT NOT NULL, "
            "flow TEXT, delta BIGINT NOT NULL, balance BIGINT NOT NULL, tier_before TEXT NOT NULL, "
            "tier TEXT NOT NULL, event_id TEXT, source TEXT NOT NULL, operator TEXT, reason TEXT, "
            "details TEXT NOT NULL, hash TEXT NOT NULL",
            "member_key, version",
        ),
        # one row: the chain's mode (ledger.storage.chain), so that a run with another key (or none) is refused plainly
        "pl_audit_chain": ("chain TEXT NOT NULL", "chain"),
    }

    def index_statements(self, suffix: str) -> list[tuple[str, str]]:
        table = self.tables[0] + suffix
        return [
            index(f"{table}_by_position", table, "position", unique=True),
            index(f"{table}_by_time", table, "effective_at"),
            # covering: the KPIs' counts per kind are read from the index alone (kpis.counts_from_views)
            index(f"{table}_by_kind_time", table, "kind, effective_at, member_key, delta, tier_before, tier, reason"),
            # a member's state at any time, read from the index alone (queries._states_at)
            index(f"{table}_by_member_time", table, "member_key, effective_at, version, balance, tier"),
        ]

    def apply(self, sql: Sql, events: Sequence[LogEvent], suffix: str, chain: Chain) -> None:
        table = self.tables[0] + suffix
        self.continue_chain(sql, suffix, chain)
        grouped = by_member(events)
        heads = self._heads(sql, table, [key for key, es in grouped.items() if _needs_load(es)])
        rows: list[tuple[Any, ...]] = []
        for key, member_events in grouped.items():
            head = heads.get(key)
            for log_event in member_events:
                row = audit_row(log_event, head, chain)
                rows.append(row)
                head = ChainHead(row[3], row[10], row[12], row[-1])
        sql.copy(self.rows("pl_audit", suffix, AUDIT_COLUMNS, rows))

    def builder(self, suffix: str, chain: Chain) -> ViewBuilder:
        return _AuditBuilder(self, suffix, chain)

    @staticmethod
    def chain_mode(sql: Sql, suffix: str = "") -> str | None:
        """The mode the trail named with `suffix` is chained in (ledger.storage.chain); None for an empty trail that
        records none. A trail from before modes were recorded holds SHA-256 chains."""
        recorded = _recorded_chain(sql, suffix)
        if recorded is not None:
            return recorded
        return None if _empty_trail(sql, suffix) else UNKEYED

    @staticmethod
    def continue_chain(sql: Sql, suffix: str, chain: Chain) -> None:
        """Refuse to append to a trail chained in another mode (another key, or none): rows hashed two ways
        would never verify. A trail that records no mode yet is given its own (`chain`'s, if it is empty)."""
        mode = _recorded_chain(sql, suffix)
        if mode is None:
            mode = chain.mode if _empty_trail(sql, suffix) else UNKEYED
            sql.execute(f"INSERT INTO pl_audit_chain{suffix} (chain) VALUES (?)", (mode,))
        problem = mismatch("the audit trail's hash chain", mode, chain)
        if problem is not None:
            raise ChainMismatchError(
                f"{problem}: configure the key it was built with, or rebuild the audit view with this one"
            )

    @staticmethod
    def _heads(sql: Sql, table: str, keys: list[str]) -> dict[str, ChainHead]:
        if not keys:
            return {}
        found = sql.rows(
            f"SELECT a.member_key, a.member_id, a.balance, a.tier, a.hash FROM {table} a "
            f"JOIN (SELECT member_key, MAX(version) AS version FROM {table} "
            f"WHERE member_key IN ({placeholders(len(keys))}) GROUP BY member_key) last "
            "ON a.member_key = last.member_key AND a.version = last.version",
            keys,
        )
        return {r["member_key"]: ChainHead(r["member_id"], r["balance"], r["tier"], r["hash"]) for r in found}


def _recorded_chain(sql: Sql, suffix: str) -> str | None:
    found = sql.scalar(f"SELECT chain FROM pl_audit_chain{suffix}")
    return None if found is None else str(found)


def _empty_trail(sql: Sql, suffix: str) -> bool:
    return sql.row(f"SELECT 1 FROM pl_audit{suffix} LIMIT 1") is None


class _AuditBuilder(ViewBuilder):
    def __init__(self, view: AuditView, suffix: str, chain: Chain) -> None:
        self.view = view
        self.suffix = suffix
        self.chain = chain
        self.heads: dict[str, ChainHead] = {}

    def add(self, events: Sequence[LogEvent]) -> list[Rows]:
        rows = []
        for log_event in events:
            row = audit_row(log_event, self.heads.get(log_event.member_key), self.chain)
            self.heads[log_event.member_key] = ChainHead(row[3], row[10], row[12], row[-1])
            rows.append(row)
        return [self.view.rows("pl_audit", self.suffix, AUDIT_COLUMNS, rows)]

    def finish(self) -> list[Rows]:
        return []  # every row was handed over as it came


#: Every view, by name, in the order they are caught up.
VIEWS: dict[str, View] = {view.name: view for view in (MembersView(), AuditView())}
