"""The wire contract: what is a message, what is invalid and why, and that parsing never raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from points_ledger.streamgen import INVALID_LINES
from schemas import Adjustment, Enrollment, Invalid, Purchase, Redemption, Refund, parse_message

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
    ],
)
def test_invalid_messages_name_the_problem(fields: dict[str, object], reason: str) -> None:
    result = parse_message(raw(**fields), currency="USD")
    assert isinstance(result, Invalid)
    assert reason in result.reason


@pytest.mark.parametrize("line", INVALID_LINES)
def test_the_generators_invalid_lines_are_all_invalid(line: bytes) -> None:
    assert isinstance(parse_message(line, currency="USD"), Invalid)


def test_oversized_input_is_refused_unread() -> None:
    result = parse_message(b"{" + b" " * 2_000_000 + b"}")
    assert isinstance(result, Invalid) and result.error_class == "TooLarge"


@given(st.binary(max_size=300))
def test_parsing_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    result = parse_message(data, currency="USD")
    assert isinstance(result, Invalid | Purchase | Refund | Redemption | Adjustment | Enrollment)
