"""Balance events for downstream services: the audit trail, in log order, turned into outbound records.

The publisher follows the log from a position of its own (the library's tracking table, `publish:<topic>`),
reading the audit view (caught up first), whose rows already carry each change's running balance, tier and
provenance. Per page: every record handed to the sink, the sink flushed (the broker acknowledged each one,
acks=all), then the position saved. A crash between the two re-sends the page, never skips it: at least once,
with a stable `ce_id` per ledger change for consumers to de-duplicate, and each member's records in order
(one key, one partition). The sink is any object with `send` and `flush`: Kafka in production (the CLI wires
it), a list in tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ledger.micros import from_micros
from projections.db import Sql
from projections.defaults import DEFAULT_SOURCE
from projections.follow import run_on_wake
from projections.runner import Projections
from projections.views import VIEWS
from schemas.balance_events import (
    BalanceChanged,
    Outbound,
    RedemptionRejected,
    TierChanged,
    event_type,
    schema_file,
)

#: Log positions per page: their records sent, then one flush and one position save.
PUBLISH_PAGE = 2_000
#: A publisher's position is tracked as this and its topic.
PUBLISH_TRACKING_PREFIX = "publish:"
#: The roll-forward flow of a change → the reason a BalanceChanged gives.
REASONS = {
    "issued": "earned",
    "redeemed": "redeemed",
    "expired": "expired",
    "clawed_back": "clawed_back",
    "adjusted_in": "adjusted",
    "adjusted_out": "adjusted",
    "migrated": "migrated",
}


class Sink(Protocol):
    def send(self, record: Outbound) -> None:
        """Hand a record over (it may be sent later)."""

    def flush(self) -> None:
        """Return once every record handed over is acknowledged; raise if any was not."""


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def outbound_of(row: Any, source: str) -> Outbound | None:
    """The record an audit row publishes, if any: a balance change, a tier change, or a refused redemption."""
    model: BalanceChanged | TierChanged | RedemptionRejected
    if row["flow"] is not None and row["delta"] != 0:
        model = BalanceChanged(
            member_id=row["member_id"], balance=row["balance"], delta=row["delta"], reason=REASONS[row["flow"]],
            tier=row["tier"], effective_at=from_micros(row["effective_at"]), occurred_at=_time(row["occurred_at"]),
            source_event_id=row["event_id"], sequence=row["version"],
        )  # fmt: skip
    elif row["kind"] == "TierChanged":
        details = json.loads(row["details"])
        model = TierChanged(
            member_id=row["member_id"], from_tier=row["tier_before"], to=row["tier"],
            effective_at=from_micros(row["effective_at"]), credits=details["credits"],
        )  # fmt: skip
    elif row["kind"] == "MessageRejected":
        details = json.loads(row["details"])
        if details["message_type"] != "redemption":
            return None
        model = RedemptionRejected(
            member_id=row["member_id"], redemption_id=details["business_id"], reason=row["reason"],
            balance=row["balance"],
        )  # fmt: skip
    else:
        return None
    name = type(model).__name__
    recorded_at = from_micros(row["recorded_at"])
    headers = {
        "ce_id": f"{row['member_key']}/{row['version']}",  # one ledger change: the member's event number
        "ce_type": event_type(name),
        "ce_source": source,
        "ce_specversion": "1.0",
        "ce_time": recorded_at.isoformat().replace("+00:00", "Z"),
        "ce_subject": row["member_id"],
        "ce_dataschema": f"points-ledger/{schema_file(name)}",
        "content-type": "application/json",
    }
    return Outbound(
        name,
        row["member_id"].encode(),
        model.model_dump_json(by_alias=True).encode(),
        [(header, value.encode()) for header, value in headers.items()],
    )


_COLUMNS = (
    "member_key, version, position, member_id, effective_at, occurred_at, recorded_at, kind, flow, delta, "
    "balance, tier_before, tier, event_id, reason, details"
)


def _page(sql: Sql, after: int, upto: int) -> list[Any]:
    """The audit rows of log positions (after, upto]: a range bounded on both sides, so that every plan reads
    one page (an open range with a LIMIT can be planned as a scan of everything after `after`)."""
    return sql.rows(
        f"SELECT {_COLUMNS} FROM pl_audit WHERE position > ? AND position <= ? ORDER BY position", (after, upto)
    )


@dataclass(slots=True)
class PublishTally:
    """What a publisher did: records by event name, pages, the position reached, the log head last seen."""

    published: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    position: int = 0
    head: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "published": sum(self.published.values()),
            "by_type": dict(sorted(self.published.items())),
            "pages": self.pages,
            "position": self.position,
            "lag": max(self.head - self.position, 0),
        }


OnPage = Callable[[PublishTally], None]


class Publisher:
    """Publishes the audit trail's changes after its tracked position to a sink, page by page."""

    def __init__(self, projections: Projections, topic: str, sink: Sink, source: str = DEFAULT_SOURCE) -> None:
        self.projections = projections
        self.db = projections.db
        self.sink = sink
        self.source = source
        self.tracking_name = f"{PUBLISH_TRACKING_PREFIX}{topic}"
        self.audit = VIEWS["audit"]

    def position(self) -> int:
        return self.db.position(self.tracking_name)

    def restart_from_beginning(self) -> None:
        """Forget the position: the next run re-publishes the whole history (for a new subscriber)."""
        with self.db.transaction(commit=True) as sql:
            self.db.reset_tracking(sql, self.tracking_name, 0)

    def publish_available(self, tally: PublishTally, on_page: OnPage | None = None) -> None:
        """Publish everything the log holds now (the audit view caught up first), page by page."""
        upto = self.projections.catch_up([self.audit])
        tally.head = self.db.head()
        position = self.position()
        while position < upto:
            reached = min(upto, position + PUBLISH_PAGE)  # a page of log positions (each has one audit row)
            with self.db.transaction(commit=False) as sql:
                rows = _page(sql, position, reached)
            for row in rows:
                record = outbound_of(row, self.source)
                if record is not None:
                    self.sink.send(record)
                    tally.published[record.name] += 1
            self.sink.flush()  # every record acknowledged before the position moves past it
            with self.db.transaction(commit=True) as sql:
                self.db.insert_tracking(sql, self.tracking_name, reached)
            position = tally.position = reached
            tally.pages += 1
            if on_page is not None:
                on_page(tally)
        tally.position = position

    def run(
        self,
        stop: threading.Event,
        *,
        poll_interval_s: float,
        until_idle_s: float | None = None,
        on_page: OnPage | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> PublishTally:
        """Publish, then wait for the log to grow (LISTEN/NOTIFY on PostgreSQL, polling as well), until `stop`
        (or nothing new for `until_idle_s`)."""
        tally = PublishTally()

        def step() -> bool:
            pages = tally.pages
            self.publish_available(tally, on_page)
            return tally.pages > pages

        run_on_wake(
            self.projections, stop, step, poll_interval_s=poll_interval_s, until_idle_s=until_idle_s, clock=clock
        )
        return tally
