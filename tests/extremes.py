"""Valid-but-extreme wire messages, as hypothesis strategies: the inputs real systems send on bad days.

Times anywhere a datetime can be (and with ±14:00 offsets), the largest and smallest amounts and point
counts, ids and texts at their longest in any script, business ids reused across kinds, plus programs at
the edges of their own limits. The ledger must apply, reject or dead-letter every one, never raise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from ledger.program import DAYS_MAX, Program, Tier

#: The arrival time the tests judge messages from the future by (fixed, so a replay decides the same).
RECEIVED_AT = datetime(2026, 6, 1, tzinfo=UTC)
MEMBERS = ["A", "B", "é" * 64]
BUSINESS_IDS = ["T1", "T2", "x" * 128]

#: Everything a rule may take to its limit, within the program's own validation.
EXTREME_PROGRAM = Program(
    earn_rate=Decimal("1000"),
    points_validity_days=DAYS_MAX,
    tier_window_days=DAYS_MAX,
    tier_retention_days=DAYS_MAX,
    occurred_at_earliest=datetime(101, 1, 1, tzinfo=UTC),
    occurred_at_latest=datetime(9899, 12, 31, tzinfo=UTC),
    future_tolerance_hours=8_760,
    tiers=(
        Tier(name="member", threshold=0, multiplier=Decimal("1")),
        Tier(name="top", threshold=1, multiplier=Decimal("100")),
    ),
)
PROGRAMS = st.sampled_from([Program(), EXTREME_PROGRAM])

_offsets = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))])
_any_time = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=_offsets)
_edge_times = st.sampled_from([
    datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), datetime(101, 1, 1, tzinfo=UTC),
    datetime(9899, 12, 31, tzinfo=UTC), RECEIVED_AT + timedelta(hours=24), RECEIVED_AT + timedelta(days=365),
    datetime(9999, 12, 30, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC),
])  # fmt: skip
_recent = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 5, 1), timezones=_offsets)
times = st.one_of(_recent, _recent, _edge_times, _any_time).map(lambda t: t.isoformat())
amounts = st.one_of(
    st.sampled_from(["0.01", "999999999999.99", "999999999999", "1.10000", "500000000000.00"]),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999.99"), places=2).map(str),
)
points = st.one_of(st.sampled_from([1, 10**9, 999_999_999]), st.integers(1, 10**9))
texts = st.one_of(st.sampled_from(["x" * 256, "é" * 256, "😀" * 256]), st.text(min_size=1, max_size=256))


@st.composite
def extreme_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["purchase", "purchase", "refund", "redemption", "adjustment", "enrollment"]))
    message: dict[str, object] = {
        "type": kind,
        "event_id": draw(st.one_of(st.sampled_from(["E1", "E2", "e" * 128]), st.text(min_size=1, max_size=128))),
        "member_id": draw(st.sampled_from(MEMBERS)),
        "occurred_at": draw(times),
    }
    business = draw(st.sampled_from(BUSINESS_IDS))
    if kind == "purchase":
        message |= {"transaction_id": business, "amount": draw(amounts), "currency": "USD", "store_id": draw(texts)}
    elif kind == "refund":
        message |= {"refund_id": draw(st.sampled_from(BUSINESS_IDS)), "transaction_id": business,
                    "amount": draw(amounts)}  # fmt: skip
    elif kind == "redemption":
        message |= {"redemption_id": business, "points": draw(points), "reward": draw(texts)}
    elif kind == "adjustment":
        sign = draw(st.sampled_from([1, -1]))
        message |= {"adjustment_id": business, "points": sign * draw(points), "reason": draw(texts),
                    "operator": draw(texts)}  # fmt: skip
    elif draw(st.booleans()):
        message["enrolled_at"] = draw(times)
    return json.dumps(message, ensure_ascii=draw(st.booleans())).encode()


#: A stream: extreme lines, some redelivered, with a CRLF or a blank line here and there.
streams = st.lists(extreme_line(), min_size=1, max_size=30).flatmap(
    lambda lines: st.lists(st.sampled_from(lines), max_size=5).map(lambda again: lines + again)
)
