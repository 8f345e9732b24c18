"""Bytes in, a message or an `Invalid` out: the one boundary where bad input stops.

`parse_message` never raises for bad input; the reason it gives is meant for a
person reading a dead letter, so it names the field and what was wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.messages import MESSAGE_MODELS, Message

#: Largest message accepted, in bytes; anything bigger is invalid, unread.
MESSAGE_MAX_BYTES = 1_048_576

_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that is not a valid message, with a readable reason and an error class."""

    reason: str
    error_class: str = "ValidationError"


def parse_message(raw: bytes, *, currency: str | None = None) -> Message | Invalid:
    """Validate one wire message; `currency`, if given, is the program currency."""
    if len(raw) > MESSAGE_MAX_BYTES:
        return Invalid(f"message is {len(raw)} bytes, more than {MESSAGE_MAX_BYTES}", "TooLarge")
    if not raw.strip():
        return Invalid("empty message", "Empty")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Invalid(f"not UTF-8 text: {error.reason} at byte {error.start}", "Encoding")
    context = {"currency": currency} if currency is not None else None
    try:
        return _MESSAGE_ADAPTER.validate_json(raw, context=context)
    except ValidationError as error:
        return Invalid(_describe(error), _error_class(error))


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
