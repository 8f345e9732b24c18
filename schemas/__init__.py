"""The wire contract: inbound loyalty messages as strict pydantic models.

This package imports nothing else of ours; every other layer depends on it.
"""

from schemas.messages import (
    MESSAGE_MODELS,
    Adjustment,
    Enrollment,
    Message,
    OpeningBalance,
    Purchase,
    Redemption,
    Refund,
)
from schemas.parsing import Acceptance, Invalid, parse_message

__all__ = [
    "MESSAGE_MODELS",
    "Acceptance",
    "Adjustment",
    "Enrollment",
    "Invalid",
    "Message",
    "OpeningBalance",
    "Purchase",
    "Redemption",
    "Refund",
    "parse_message",
]
