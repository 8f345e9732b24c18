"""Figures written for people, the same way in the terminal's tables and in the console's pages.

Points get thousands separators (12,757), changes a sign (+65, -500), money two decimals and its currency
(5,112.24 USD), rates a percent (27.86 %), and times are UTC to the second (2025-12-01 13:21:36 UTC): the
JSON and CSV formats keep every digit (a lot's expiry's microseconds included) for machines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

#: What a figure that has no value (a rate of a period without issued points) prints as.
NO_VALUE = "-"


def number(value: int | None) -> str:
    return NO_VALUE if value is None else f"{value:,}"


def signed(value: int | None) -> str:
    """A change: +65, -500, or 0."""
    return NO_VALUE if value is None else f"{value:+,}" if value else "0"


def money(value: Decimal | str | None, currency: str) -> str:
    return NO_VALUE if value is None else f"{Decimal(value):,.2f} {currency}"


def percent(rate: Decimal | str | None) -> str:
    """A fraction (0.2786) as a percent (27.86 %)."""
    return NO_VALUE if rate is None else f"{Decimal(rate) * 100:.2f} %"


def when(moment: datetime | None) -> str:
    """A time in UTC, to the second."""
    if moment is None:
        return NO_VALUE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: A statement's measures that are rates (fractions), written as percents; the others are counts of points or
#: members.
RATE_MEASURES = frozenset({"redemption_rate"})


def measure(name: str, value: Any) -> str:
    """A figure of a statement (roll-forward, KPIs: a count, or a rate as a decimal string) as the terminal
    and the console write it."""
    return percent(value) if name in RATE_MEASURES else number(value)
