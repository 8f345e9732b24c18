"""The helpdesk's pages: find a member, read their balance, lots and history as statement lines, and grant a
goodwill adjustment that is recorded with the key's name as its operator.

A goodwill form carries an adjustment id drawn when the page was drawn: sending the same form twice (a
double click, a reload) records it once, as Kafka's redelivery would (the id is the message's event_id).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ledger.access import Permission, may_post
from ledger.outcomes import Outcome
from ledger.storage.console_sessions import ConsoleSession
from points_ledger.api.service import LedgerService
from points_ledger.api.writes import apply_message
from points_ledger.console.access import (
    CONSOLE_PATH,
    ConsoleRefusal,
    form_fields,
    page,
    page_from_views,
    require_csrf,
)
from points_ledger.console.layout import page_context
from points_ledger.console.templating import render
from projections import answers
from projections.history_lines import statement_line
from projections.sources import ReportSource, view_source
from schemas import Invalid, parse_message
from schemas.messages import MEMBER_ID_MAX_CHARS, POINTS_MAX

router = APIRouter()

#: History lines per page.
HISTORY_LINES_PER_PAGE = 50
READ_MEMBERS = "read members"
GOODWILL = "grant adjustments"
#: What a goodwill form's adjustment id looks like (uuid4 hex, drawn with the page).
_ADJUSTMENT_ID = re.compile(r"[0-9a-f]{32}")


def member_path(member_id: str) -> str:
    return f"{CONSOLE_PATH}/members/{quote(member_id, safe='')}"


@router.get("/console/members", summary="Find a member (the search box)", include_in_schema=False)
async def find_member(request: Request, q: str = "") -> Response:
    wanted = q.strip()[:MEMBER_ID_MAX_CHARS]

    def work(source: ReportSource, session: ConsoleSession) -> Response:
        if wanted and answers.balance(source, wanted) is not None:
            return RedirectResponse(member_path(wanted), 303)
        context = page_context(session, "Members", f"{CONSOLE_PATH}/members", source.program.currency, query=wanted)
        return render("members.html", context, 404 if wanted else 200)

    return await page_from_views(request, Permission.READ_MEMBERS, READ_MEMBERS, work)


def _history(source: ReportSource, member_id: str, before: int | None) -> dict[str, Any]:
    """The page of statement lines up to line `before` (the latest page unless given): lines
    (before - HISTORY_LINES_PER_PAGE, before], and the `before` of the pages around it (None at either end)."""
    length = answers.history_length(source, member_id)
    last = length if before is None else min(max(before, 0), length)
    first = max(last - HISTORY_LINES_PER_PAGE, 0)
    found = answers.history_page(source, member_id, first, last - first) if last > first else None
    lines = [statement_line(row) for row in (found or {"items": []})["items"]]
    return {
        "lines": lines, "first": first + 1 if lines else 0, "last": last,
        "earlier": first if first > 0 else None,
        "later": min(last + HISTORY_LINES_PER_PAGE, length) if last < length else None,
    }  # fmt: skip


def member_context(
    source: ReportSource, session: ConsoleSession, member_id: str, before: int | None, goodwill: dict[str, Any]
) -> dict[str, Any]:
    """The member page's context (ConsoleRefusal 404 for an unknown member)."""
    member = answers.balance(source, member_id)
    if member is None:
        raise ConsoleRefusal(404, f"no member {member_id!r}")
    history = _history(source, member_id, before) if session.key.may(Permission.READ_HISTORY) else None
    form = None
    if may_post(session.key.role, "adjustment"):
        form = {"adjustment_id": uuid.uuid4().hex, "points_max": POINTS_MAX, **goodwill}
    return page_context(
        session, f"Member {member_id}", f"{CONSOLE_PATH}/members", source.program.currency, member=member,
        history=history, goodwill=form,
    )  # fmt: skip


#: What the member page says after a goodwill form, by the `goodwill` the form's answer sent it back with.
GOODWILL_NOTICES = {
    "recorded": "The adjustment is recorded: its line is the last of the history.",
    "again": "This form was sent before and its adjustment is recorded once: nothing more was recorded.",
}


@router.get("/console/members/{member_id:path}", summary="A member's page", include_in_schema=False)
async def member_page(request: Request, member_id: str, before: int | None = None, goodwill: str = "") -> Response:
    notice = {"done": GOODWILL_NOTICES[goodwill]} if goodwill in GOODWILL_NOTICES else {}

    def work(source: ReportSource, session: ConsoleSession) -> Response:
        return render("member.html", member_context(source, session, member_id, before, notice))

    return await page_from_views(request, Permission.READ_MEMBERS, READ_MEMBERS, work)


def _goodwill_message(member_id: str, form: dict[str, str], operator: str, now: datetime) -> bytes:
    """The adjustment message a goodwill form stands for, as it would arrive on Kafka."""
    adjustment_id = form.get("adjustment_id", "")
    if not _ADJUSTMENT_ID.fullmatch(adjustment_id):
        raise ConsoleRefusal(400, "the form lacks the adjustment id its page gave it: open the page again")
    points_text = form.get("points", "").strip()
    message: dict[str, Any] = {
        "type": "adjustment", "event_id": f"console-{adjustment_id}", "adjustment_id": f"console-{adjustment_id}",
        "member_id": member_id, "occurred_at": now.isoformat(), "reason": form.get("reason", "").strip(),
        "operator": operator,
        "points": int(points_text) if re.fullmatch(r"[+-]?\d{1,12}", points_text) else points_text,
    }  # fmt: skip
    return orjson.dumps(message)


@router.post("/console/goodwill", summary="Grant a goodwill adjustment", include_in_schema=False)
async def goodwill(request: Request) -> Response:
    form = await form_fields(request)
    member_id = form.get("member_id", "")

    def work(service: LedgerService, session: ConsoleSession) -> Response:
        require_csrf(session, form)
        with view_source(service.projections) as source:
            if answers.balance(source, member_id) is None:
                raise ConsoleRefusal(404, f"no member {member_id!r}")
        now = datetime.now(UTC)
        raw = _goodwill_message(member_id, form, session.key.name, now)
        parsed = parse_message(raw, service.app.program.acceptance(), received_at=now)
        if isinstance(parsed, Invalid):
            return _refused(service, session, member_id, f"Not recorded: {parsed.reason}", 422)
        applied = apply_message(service, parsed, {"console": session.key.name})
        decision = applied.decision
        if decision.outcome is Outcome.FAILED and applied.failure is not None:
            return _refused(service, session, member_id, f"Not recorded: {applied.failure.reason}", 422)
        if decision.outcome is Outcome.REJECTED and decision.rejection is not None:
            return _refused(service, session, member_id, f"Rejected: {decision.rejection.value}", 409)
        if decision.outcome is Outcome.DUPLICATE:
            return _sent_again(service, session, member_id, parsed.event_id)
        return RedirectResponse(member_path(member_id) + "?goodwill=recorded", 303)

    return await page(request, Permission.POST_ADJUSTMENT, GOODWILL, work)


def _sent_again(service: LedgerService, session: ConsoleSession, member_id: str, event_id: str) -> Response:
    """What became of the first sending of this form: rejected (said again, 409), or recorded (said so)."""
    with view_source(service.projections) as source:
        first = answers.recorded_with(source, member_id, event_id)
    rejections = [line for line in first if line["event"] == "MessageRejected"]
    if rejections:
        reason = rejections[0]["details"].get("reason")
        return _refused(service, session, member_id, f"Rejected when this form was first sent: {reason}", 409)
    return RedirectResponse(member_path(member_id) + "?goodwill=again", 303)


def _refused(service: LedgerService, session: ConsoleSession, member_id: str, error: str, status: int) -> Response:
    with view_source(service.projections) as source:
        context = member_context(source, session, member_id, None, {"error": error})
    return render("member.html", context, status)
