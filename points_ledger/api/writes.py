"""`POST /v1/messages`: one inbound message, exactly as it would arrive on Kafka (docs/rules.md §1), decided
while the till waits.

- recorded: 201 `{"outcome": "recorded", "member_id", "balance", "tier", "position"}`;
- a rule rejects it: 409, a problem whose `reason` is the rejection (insufficient_points, …), recorded as on
  Kafka (it counts in the KPIs);
- invalid: 422, nothing recorded (a message a rule cannot compute with, which Kafka would dead-letter, too);
- its `event_id` was applied before, by the API or by Kafka: 200 `{"outcome": "duplicate", …}` with the
  member's balance now; nothing changes. If that first message was rejected, the same 409 again (with
  `"duplicate": true`): a till that retries a timed-out redemption learns what really happened to it.

The message's `event_id` is the idempotency key, shared with Kafka; an `Idempotency-Key` header, if sent,
must equal it (400 otherwise). The role's permission comes from ledger.access; an adjustment's `operator` is
the key's name, whatever the body says; provenance records `{"api": key name}`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import TypeAdapter
from starlette.responses import Response

from ledger.access import ApiKey, may_post
from ledger.outcomes import Outcome
from points_ledger.api.auth import forbidden, served
from points_ledger.api.limits import read_body
from points_ledger.api.problems import Problem, invalid, retry_later, status_problem, store_unavailable
from points_ledger.api.rendering import json_response
from projections import answers
from projections.sources import view_source
from schemas import Adjustment, Invalid, Message, parse_message

if TYPE_CHECKING:
    from ledger.application import Applied
    from ledger.member import Source
    from points_ledger.api.service import LedgerService

router = APIRouter()
log = logging.getLogger("points_ledger.api")
MESSAGE_REF = {"$ref": "#/components/schemas/Message"}


def message_schema() -> dict[str, Any]:
    """The request body's JSON Schema: the wire format's own (schemas/), with its $defs as OpenAPI components."""
    return TypeAdapter(Message).json_schema(ref_template="#/components/schemas/{model}")


@router.post(
    "/v1/messages",
    summary="Decide one message now (purchase, refund, redemption, adjustment, …)",
    status_code=201,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": MESSAGE_REF}}}},
    responses={
        200: {"description": "A duplicate: this event_id was applied before; nothing changed."},
        201: {"description": "Recorded."},
        400: {"description": "Idempotency-Key differs from the body's event_id."},
        409: {"description": "A rule rejected it (the problem's `reason`); the rejection is recorded."},
        413: {"description": "Body over 1 MiB."},
        422: {"description": "Not a valid message; nothing recorded."},
        503: {"description": "The store could not take it now; retry with the same event_id."},
    },
)
async def post_message(
    request: Request,
    body: Annotated[bytes, Depends(read_body)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> Response:
    def work(service: LedgerService, key: ApiKey) -> Response:
        parsed = parse_message(body, service.app.program.acceptance(), received_at=datetime.now(UTC))
        if isinstance(parsed, Invalid):
            raise invalid(parsed.reason, "invalid-message", error_class=parsed.error_class)
        if idempotency_key is not None and idempotency_key != parsed.event_id:
            raise status_problem(400, "the Idempotency-Key header must equal the message's event_id")
        if not may_post(key.role, parsed.type):
            raise forbidden(key, f"post {parsed.type} messages")
        message: Message = parsed
        if isinstance(message, Adjustment):  # the operator is who holds the key, never what the body claims
            message = message.model_copy(update={"operator": key.name})
        return _answer(service, message, apply_message(service, message, {"api": key.name}))

    return await served(request, None, "post messages", work)


def apply_message(service: LedgerService, message: Message, source: Source) -> Applied:
    """Decide and record `message` now, under the process's write lock, from `source` (which key of which face
    sent it); 503 problems when the store cannot take it (the API's and the console's writes alike)."""
    from eventsourcing.persistence import IntegrityError

    from ledger.storage.store import UNAVAILABLE_ERRORS

    try:
        with service.write_lock:
            return service.app.apply_one(message, source)
    except UNAVAILABLE_ERRORS as error:
        log.warning("store unavailable for %s: %s", message.event_id, type(error).__name__)
        raise store_unavailable() from None
    except IntegrityError:
        raise retry_later("busy", "Other writers changed this member first") from None


def _answer(service: LedgerService, message: Message, applied: Applied) -> Response:
    decision, member = applied.decision, applied.member
    if decision.outcome is Outcome.FAILED and applied.failure is not None:
        raise invalid(applied.failure.reason, "rule-failed")
    if decision.outcome is Outcome.DUPLICATE:
        return _duplicate(service, message)
    if member is None:  # pragma: no cover (a recorded or rejected message always has its member)
        raise status_problem(500, "the ledger decided on no member")
    figures = {"member_id": member.member_id, "balance": member.balance, "tier": member.tier,
               "position": applied.position}  # fmt: skip
    if decision.outcome is Outcome.REJECTED and decision.rejection is not None:
        raise _rejected(decision.rejection.value, figures)
    return json_response({"outcome": "recorded", **figures}, 201)


def _rejected(reason: str, figures: dict[str, Any], **extra: Any) -> Problem:
    return Problem(409, "rejected", "A rule rejected the message", f"rejected: {reason}", reason=reason,
                   **figures, **extra)  # fmt: skip


def _duplicate(service: LedgerService, message: Message) -> Response:
    """The member as the views have it now, and what became of the first message with this event_id."""
    with view_source(service.projections) as source:
        found = answers.balance(source, message.member_id)
        first = answers.recorded_with(source, message.member_id, message.event_id)
    now = found or {}
    figures = {"member_id": message.member_id, **{name: now.get(name) for name in ("balance", "tier", "position")}}
    rejections = [line for line in first if line["event"] == "MessageRejected"]
    if rejections:
        raise _rejected(str(rejections[0]["details"].get("reason")), figures, duplicate=True)
    return json_response({"outcome": "duplicate", **figures}, 200)
