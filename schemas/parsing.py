"""Bytes in, a message or an `Invalid` out: the one boundary where bad input stops.

`parse_message` never raises for bad input; the reason it gives is meant for a
person reading a dead letter, so it names the field and what was wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.messages import MESSAGE_MODELS, Enrollment, Message, OpeningBalance

#: Largest message accepted, in bytes; anything bigger is invalid, unread.
MESSAGE_MAX_BYTES = 1_048_576
#: Longest reason we give: reasons quote input (an unknown type), which may be up to a message long.
REASON_MAX_CHARS = 1_000
#: What some Windows tools put before UTF-8 text; JSON (RFC 8259) lets a parser ignore it.
UTF8_BOM = b"\xef\xbb\xbf"

_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that is not a valid message, with a readable reason and an error class."""

    reason: str
    error_class: str = "ValidationError"

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", bounded_reason(self.reason))


def bounded_reason(reason: str) -> str:
    """At most REASON_MAX_CHARS: reasons quote input and go into dead letters' headers."""
    return reason if len(reason) <= REASON_MAX_CHARS else reason[: REASON_MAX_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What the program accepts beyond the wire format: its currency and the times it can compute with.

    A message that claims to have happened more than `future_tolerance` after it was received (see
    `parse_message`) has a sender with a wrong clock.
    """

    currency: str | None = None
    #: The program's tier names (an opening balance may name one).
    tiers: tuple[str, ...] | None = None
    earliest: datetime | None = None
    latest: datetime | None = None
    future_tolerance: timedelta | None = None


def strip_bom(raw: bytes) -> bytes:
    return raw[len(UTF8_BOM) :] if raw.startswith(UTF8_BOM) else raw


def parse_message(
    raw: bytes, acceptance: Acceptance | None = None, *, received_at: datetime | None = None
) -> Message | Invalid:
    """Validate one wire message against the wire format and, if given, what the program accepts.

    `received_at` is when the message reached us (the Kafka record's time, or the start of a file's ingest);
    without it only the fixed range applies."""
    if len(raw) > MESSAGE_MAX_BYTES:
        return Invalid(f"message is {len(raw)} bytes, more than {MESSAGE_MAX_BYTES}", "TooLarge")
    raw = strip_bom(raw)
    if not raw.strip():
        return Invalid("empty message", "Empty")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Invalid(f"not UTF-8 text: {error.reason} at byte {error.start}", "Encoding")
    acceptance = acceptance or Acceptance()
    context = {"currency": acceptance.currency, "tiers": acceptance.tiers}
    try:
        message = _MESSAGE_ADAPTER.validate_json(raw, context=context)
    except ValidationError as error:
        return Invalid(_describe(error), _error_class(error))
    except Exception as error:  # never raise for input: a validator we did not foresee is a dead letter too
        return Invalid(f"cannot be validated: {type(error).__name__}: {error}", "Unvalidated")
    return _with_nul(message, raw) or _out_of_range(message, acceptance, received_at) or message


def _with_nul(message: Message, raw: bytes) -> Invalid | None:
    """No NUL in any text: PostgreSQL cannot store it in a text column, and no sender means it. JSON can only
    carry it escaped (a raw control character is invalid JSON), so the fields are looked at only then."""
    if b"\\u0000" not in raw:
        return None
    for name, value in message:
        if isinstance(value, str) and "\x00" in value:
            return Invalid(f"{name}: must not contain the NUL character", "ValidationError")
    return None


def _out_of_range(message: Message, acceptance: Acceptance, received_at: datetime | None) -> Invalid | None:
    """The message's times inside the range the ledger computes with, and not from a sender's future."""
    invalid = _outside("occurred_at", message.occurred_at, acceptance)
    if invalid is None and isinstance(message, Enrollment) and message.enrolled_at is not None:
        invalid = _outside("enrolled_at", message.enrolled_at, acceptance)
    if invalid is None and isinstance(message, OpeningBalance) and message.expires_at is not None:
        invalid = _outside("expires_at", message.expires_at, acceptance)
    if invalid is not None:
        return invalid
    tolerance = acceptance.future_tolerance
    if received_at is not None and tolerance is not None and message.occurred_at > received_at + tolerance:
        return Invalid(
            f"occurred_at {message.occurred_at.isoformat()} is more than {_hours(tolerance)} after the message "
            f"was received ({received_at.isoformat()}): the sender's clock is probably wrong", "FromTheFuture",
        )  # fmt: skip
    return None


def _outside(name: str, value: datetime, acceptance: Acceptance) -> Invalid | None:
    if acceptance.earliest is not None and value < acceptance.earliest:
        return Invalid(f"{name} {value.isoformat()} is before {acceptance.earliest.isoformat()}, "
                       "the earliest time the program accepts", "OutOfRange")  # fmt: skip
    if acceptance.latest is not None and value > acceptance.latest:
        return Invalid(f"{name} {value.isoformat()} is after {acceptance.latest.isoformat()}, "
                       "the latest time the program accepts", "OutOfRange")  # fmt: skip
    return None


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"


def _error_class(error: ValidationError) -> str:
    kinds = {detail["type"] for detail in error.errors()}
    if kinds & {"json_invalid", "json_type"}:
        return "MalformedJSON"
    if kinds & {"union_tag_invalid", "union_tag_not_found"}:
        return "UnknownType"
    return "ValidationError"


def _describe(error: ValidationError) -> str:
    """One line per problem, joined: `amount: Input should be greater than 0`."""
    problems = [_describe_one(detail) for detail in error.errors(include_url=False)]
    return "; ".join(problems)


def _describe_one(detail: Any) -> str:
    kind = detail["type"]
    if kind == "json_invalid":
        return f"not valid JSON: {detail['ctx'].get('error', detail['msg'])}"
    if kind == "union_tag_not_found":
        return "missing field 'type' (one of: " + ", ".join(MESSAGE_MODELS) + ")"
    if kind == "union_tag_invalid":
        tag = detail["ctx"]["tag"]
        return f"unknown type {tag!r} (one of: " + ", ".join(MESSAGE_MODELS) + ")"
    if kind == "model_attributes_type" or (kind == "dict_type" and not detail["loc"]):
        return "message must be a JSON object"
    # The first location item is the union tag (message type); the rest is the field path.
    path = ".".join(str(part) for part in detail["loc"][1:])
    message = detail["msg"]
    if kind == "missing":
        return f"missing field {path!r}"
    if kind == "extra_forbidden":
        return f"unexpected field {path!r}"
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return f"{path}: {message}" if path else message
