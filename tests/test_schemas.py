"""The wire contract: what is a message, what is invalid and why, and that parsing never raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devkit.streamgen import INVALID_LINES
from schemas import (
    Acceptance,
    Adjustment,
    Enrollment,
    Invalid,
    OpeningBalance,
    Purchase,
    Redemption,
    Refund,
    parse_message,
)

COMMON = {"event_id": "e1", "member_id": "M1", "occurred_at": "2024-03-01T10:00:00+02:00"}


def raw(**fields: object) -> bytes:
    return json.dumps({**COMMON, **fields}).encode()


def test_every_message_type_parses() -> None:
    assert isinstance(parse_message(raw(type="purchase", transaction_id="t", amount="9.99", currency="USD")), Purchase)
    assert isinstance(parse_message(raw(type="refund", refund_id="r", transaction_id="t", amount=5)), Refund)
    assert isinstance(parse_message(raw(type="redemption", redemption_id="d", points=10)), Redemption)
    assert isinstance(
        parse_message(raw(type="adjustment", adjustment_id="a", points=-5, reason="r", operator="o")), Adjustment
    )
    assert isinstance(parse_message(raw(type="enrollment")), Enrollment)
    for points in (-50, 0, 1_000_000_000):  # a debt, a tier alone, the most one message may carry
        opening = parse_message(raw(type="opening_balance", opening_balance_id="o", points=points))
        assert isinstance(opening, OpeningBalance) and opening.points == points
    full = parse_message(
        raw(type="opening_balance", opening_balance_id="o", points=5, tier="gold", legacy_ref="CRM-9",
            expires_at="2025-03-01T09:00:00+01:00"),
        Acceptance(tiers=("member", "gold")),
    )  # fmt: skip
    assert isinstance(full, OpeningBalance) and full.expires_at == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def test_times_are_normalised_to_utc_and_amounts_are_exact_decimals() -> None:
    message = parse_message(raw(type="purchase", transaction_id="t", amount=19.99, currency="USD"))
    assert isinstance(message, Purchase)
    assert message.occurred_at == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert message.occurred_at.utcoffset() is not None and message.occurred_at.tzinfo == UTC
    assert message.amount == Decimal("19.99")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "teleport"}, "unknown type 'teleport'"),
        ({}, "missing field 'type'"),
        ({"type": "purchase", "transaction_id": "t", "amount": "1.001", "currency": "USD"}, "amount:"),
        ({"type": "purchase", "transaction_id": "t", "amount": "0", "currency": "USD"}, "greater than 0"),
        ({"type": "purchase", "transaction_id": "t", "amount": "1", "currency": "EUR"}, "program currency USD"),
        ({"type": "purchase", "transaction_id": "t", "amount": "NaN", "currency": "USD"}, "amount:"),
        ({"type": "purchase", "amount": "1", "currency": "USD"}, "missing field 'transaction_id'"),
        ({"type": "redemption", "redemption_id": "d", "points": "10"}, "points: Input should be a valid integer"),
        ({"type": "redemption", "redemption_id": "d", "points": 1.5}, "points:"),
        ({"type": "redemption", "redemption_id": "d", "points": 0}, "greater than 0"),
        ({"type": "adjustment", "adjustment_id": "a", "points": 0, "reason": "r", "operator": "o"}, "must not be 0"),
        ({"type": "adjustment", "adjustment_id": "a", "points": 5, "reason": "", "operator": "o"}, "reason:"),
        ({"type": "enrollment", "colour": "blue"}, "unexpected field 'colour'"),
        ({"type": "enrollment", "occurred_at": "2024-03-01T10:00:00"}, "timezone"),
        ({"type": "enrollment", "event_id": ""}, "event_id:"),
        ({"type": "enrollment", "member_id": "x" * 65}, "member_id:"),
        ({"type": "enrollment", "member_id": 12}, "member_id:"),
        (
            {"type": "opening_balance", "opening_balance_id": "o", "points": 5, "tier": "diamond"},
            "must be one of the program's tiers (member, gold), not diamond",
        ),
        (
            {"type": "opening_balance", "opening_balance_id": "o", "points": 5, "expires_at": "2024-03-01T08:00:00Z"},
            "expires_at must be later than occurred_at",
        ),
        ({"type": "opening_balance", "opening_balance_id": "o", "points": -1_000_000_001}, "points:"),
        ({"type": "opening_balance", "points": 5}, "missing field 'opening_balance_id'"),
    ],
)
def test_invalid_messages_name_the_problem(fields: dict[str, object], reason: str) -> None:
    result = parse_message(raw(**fields), Acceptance(currency="USD", tiers=("member", "gold")))
    assert isinstance(result, Invalid)
    assert reason in result.reason


@pytest.mark.parametrize("line", INVALID_LINES)
def test_the_generators_invalid_lines_are_all_invalid(line: bytes) -> None:
    assert isinstance(parse_message(line, Acceptance(currency="USD")), Invalid)


def test_oversized_input_is_refused_unread() -> None:
    result = parse_message(b"{" + b" " * 2_000_000 + b"}")
    assert isinstance(result, Invalid) and result.error_class == "TooLarge"


@given(st.binary(max_size=300))
def test_parsing_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    result = parse_message(data, Acceptance(currency="USD"))
    assert isinstance(result, Invalid | Purchase | Refund | Redemption | Adjustment | Enrollment | OpeningBalance)


# ---- valid JSON, extreme values: every one is an Invalid with a reason, none raises -----------------

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PROGRAM_RANGE = Acceptance(
    currency="USD", earliest=datetime(1970, 1, 1, tzinfo=UTC), latest=datetime(2100, 1, 1, tzinfo=UTC),
    future_tolerance=timedelta(hours=24),
)  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "error_class", "reason"),
    [
        ({"type": "enrollment", "occurred_at": "9999-12-30T00:00:00Z"}, "OutOfRange", "after 2100-01-01"),
        ({"type": "enrollment", "occurred_at": "1969-12-31T23:59:59Z"}, "OutOfRange", "before 1970-01-01"),
        # Before the first representable UTC time: converting it raised OverflowError inside pydantic.
        ({"type": "enrollment", "occurred_at": "0001-01-01T00:00:00+14:00"}, "ValidationError", "range"),
        ({"type": "enrollment", "occurred_at": "9999-12-31T23:59:59-14:00"}, "ValidationError", "range"),
        ({"type": "enrollment", "enrolled_at": "0001-01-01T00:00:00Z"}, "OutOfRange", "enrolled_at"),
        ({"type": "enrollment", "occurred_at": "2099-01-01T00:00:00Z"}, "FromTheFuture", "clock"),
        # pydantic 2.13 lets this through its digit checks (our validator refuses it), 2.14 refuses it itself.
        ({"type": "purchase", "transaction_id": "t", "amount": "1E-999999999", "currency": "USD"},
         "ValidationError", "amount: "),
        ({"type": "enrollment", "member_id": "M\u0000"}, "ValidationError", "NUL"),
        ({"type": "x" * 5_000}, "UnknownType", "unknown type"),
    ],
)  # fmt: skip
def test_valid_json_with_values_the_ledger_cannot_take_is_invalid_with_a_reason(
    fields: dict[str, object], error_class: str, reason: str
) -> None:
    result = parse_message(raw(**fields), PROGRAM_RANGE, received_at=NOW)
    assert isinstance(result, Invalid), result
    assert result.error_class == error_class and reason in result.reason
    assert len(result.reason) <= 1_000


def test_times_just_inside_the_range_and_the_tolerance_are_accepted() -> None:
    for when in ["1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z"]:
        assert isinstance(parse_message(raw(type="enrollment", occurred_at=when)), Enrollment)
    assert isinstance(parse_message(raw(type="enrollment", occurred_at="2100-01-01T00:00:00Z"),
                                    Acceptance(latest=datetime(2100, 1, 1, tzinfo=UTC))), Enrollment)  # fmt: skip
    tomorrow = (NOW + timedelta(hours=24)).isoformat()
    assert isinstance(
        parse_message(raw(type="enrollment", occurred_at=tomorrow), PROGRAM_RANGE, received_at=NOW), Enrollment
    )


def test_amounts_are_whole_cents_written_with_two_places() -> None:
    message = parse_message(raw(type="purchase", transaction_id="t", amount="1.10000000000000", currency="USD"))
    assert isinstance(message, Purchase) and str(message.amount) == "1.10"


def test_a_utf8_byte_order_mark_before_a_message_is_ignored() -> None:
    assert isinstance(parse_message(b"\xef\xbb\xbf" + raw(type="enrollment")), Enrollment)


_any_time = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))]),
)  # fmt: skip
_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.decimals(allow_nan=False, allow_infinity=False).map(str), _any_time.map(lambda t: t.isoformat()),
)  # fmt: skip


@given(st.sampled_from(["purchase", "refund", "redemption", "adjustment", "enrollment", "opening_balance"]),
       st.dictionaries(st.sampled_from(["occurred_at", "enrolled_at", "amount", "points", "transaction_id",
                                        "refund_id", "redemption_id", "adjustment_id", "reason", "operator",
                                        "currency", "member_id", "opening_balance_id", "tier", "expires_at",
                                        "legacy_ref"]), _json_scalars, max_size=8))  # fmt: skip
def test_parsing_never_raises_on_well_formed_messages_with_any_values(kind: str, fields: dict[str, object]) -> None:
    result = parse_message(raw(type=kind, **fields), PROGRAM_RANGE, received_at=NOW)
    assert isinstance(result, Invalid | Purchase | Refund | Redemption | Adjustment | Enrollment | OpeningBalance)
    if not isinstance(result, Invalid):
        assert PROGRAM_RANGE.earliest <= result.occurred_at <= PROGRAM_RANGE.latest  # type: ignore[operator]
