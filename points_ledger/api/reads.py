"""The reads: a member's balance and history, finance's reports, the digest and the views' status.

Each answers what the CLI's `--format json` prints, from the same function of the report layer
(projections.answers) over the views, caught up first (no answer is ever stale); reports answer in the CLI's
CSV when asked with `Accept: text/csv`. Multi-line JSON answers (the CLI's JSON lines) are JSON arrays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from ledger.access import ApiKey, Permission
from points_ledger.api.auth import served, served_from_views
from points_ledger.api.problems import invalid, status_problem
from points_ledger.api.rendering import csv_response, json_response, wants_csv
from points_ledger.api.service import LedgerService
from points_ledger.context import parse_utc_time
from projections import answers
from projections.defaults import BREAKAGE_WINDOW_DAYS
from projections.periods import ReportPeriods
from projections.sources import ReportSource

router = APIRouter()

READ_REPORTS = "read reports"
Accept = Annotated[str | None, Header(description="`text/csv` for the CLI's CSV; JSON otherwise.")]
TIME_EXAMPLE = "2026-03-31T23:59:59Z"


def utc_time(text: str | None, name: str) -> datetime | None:
    """A query parameter's time; 422 for a time without an offset or not in ISO 8601."""
    if text is None:
        return None
    try:
        return parse_utc_time(text)
    except ValueError as error:
        raise invalid(f"{name}: {error}") from None


def required_time(text: str, name: str) -> datetime:
    found = utc_time(text, name)
    if found is None:  # pragma: no cover (a required parameter is never None)
        raise invalid(f"{name}: required")
    return found


def periods(start: str, end: str, granularity: str | None) -> ReportPeriods:
    try:
        return ReportPeriods.of(required_time(start, "from"), required_time(end, "to"), granularity)  # type: ignore[arg-type]
    except ValueError as error:
        raise invalid(str(error)) from None


def no_member(member_id: str, as_of: datetime | None = None) -> Exception:
    when = f" as of {as_of.isoformat()}" if as_of else ""
    return status_problem(404, f"no member {member_id!r}{when}")


#: The balance look-up's parameters, as FastAPI would declare them: the route reads them itself (a till asks on
#: every sale, and FastAPI's solving of declared parameters was a tenth of the server's time per look-up).
BALANCE_PARAMETERS = [
    {"name": "member_id", "in": "path", "required": True, "schema": {"type": "string", "title": "Member Id"}},
    {"name": "as_of", "in": "query", "required": False,
     "description": f"Balance as recorded up to this time: {TIME_EXAMPLE}",
     "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "As Of"}},
]  # fmt: skip


@router.get(
    "/v1/members/{member_id}",
    summary="A member's balance, tier and open lots (like `balance`)",
    openapi_extra={"parameters": BALANCE_PARAMETERS},
)
async def member_balance(request: Request) -> Response:
    member_id: str = request.path_params["member_id"]
    as_of = request.query_params.get("as_of")

    def work(source: ReportSource) -> Response:
        when = utc_time(as_of, "as_of")
        found = answers.balance(source, member_id, when)
        if found is None:
            raise no_member(member_id, when)
        return json_response(found)

    return await served_from_views(request, Permission.READ_MEMBERS, "read members", work)


@router.get(
    "/v1/members/{member_id}/history",
    summary="A member's history, a page at a time: {items, next} (like `history`)",
)
async def member_history(
    request: Request,
    member_id: str,
    limit: Annotated[int, Query(ge=1, le=answers.HISTORY_PAGE_MAX, description="Lines per page.")] = 100,
    after: Annotated[
        str | None, Query(max_length=20, description="The `next` of the page before (omit for the first page).")
    ] = None,
) -> Response:
    def work(source: ReportSource) -> Response:
        if after is not None and not after.isdigit():
            raise invalid("after: not a cursor this API gave (pass the `next` of the page before)")
        page = answers.history_page(source, member_id, int(after or 0), limit)
        if page is None:
            raise no_member(member_id)
        return json_response(page)

    return await served_from_views(request, Permission.READ_HISTORY, "read a member's history", work)


@router.get("/v1/reports/liability", summary="Points liability at a time (like `report liability`)")
async def liability(
    request: Request,
    as_of: Annotated[str, Query(description=f"e.g. {TIME_EXAMPLE}")],
    accept: Accept = None,
    breakage: Literal["configured", "estimated"] = "configured",
    breakage_window_days: Annotated[int, Query(ge=1, le=3660)] = BREAKAGE_WINDOW_DAYS,
) -> Response:
    def work(source: ReportSource) -> Response:
        when = required_time(as_of, "as_of")
        report = answers.liability(source, when, breakage, breakage_window_days)
        if wants_csv(accept):
            return csv_response(answers.LIABILITY_CSV_COLUMNS, answers.liability_csv_rows(report))
        return json_response(report)

    return await served_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


Granularity = Annotated[Literal["month", "quarter"] | None, Query(description="A line per month or quarter.")]
RangeStart = Annotated[str, Query(alias="from", description="Range start (exclusive).")]
RangeEnd = Annotated[str, Query(alias="to", description="Range end (inclusive).")]


@router.get("/v1/reports/rollforward", summary="Opening, flows and closing points (like `report rollforward`)")
async def rollforward(
    request: Request, start: RangeStart, end: RangeEnd, by: Granularity = None,
    accept: Accept = None,
) -> Response:  # fmt: skip
    def work(source: ReportSource) -> Response:
        chosen = periods(start, end, by)
        rows = answers.rollforward(source, chosen)
        if wants_csv(accept):
            return csv_response(answers.ROLLFORWARD_COLUMNS, rows)
        if by is None:  # one line: the CLI prints it as one object, without a period to name
            return json_response({name: value for name, value in rows[0].items() if name != "period"})
        return json_response(rows)

    return await served_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


@router.get("/v1/reports/kpis", summary="Program KPIs per period (like `report kpis`)")
async def kpis(
    request: Request, start: RangeStart, end: RangeEnd, by: Granularity = None,
    accept: Accept = None,
) -> Response:  # fmt: skip
    def work(source: ReportSource) -> Response:
        chosen = periods(start, end, by)
        rows = answers.kpis(source, chosen)
        if wants_csv(accept):
            return csv_response(answers.KPI_CSV_COLUMNS, [answers.kpi_csv_row(row) for row in rows])
        return json_response(rows)

    return await served_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


@router.get("/v1/digest", summary="One hash committing to the log up to its head (like `digest`)")
async def digest(request: Request) -> Response:
    def work(service: LedgerService, key: ApiKey) -> Response:
        found: Any = answers.digest(service.app).as_dict()
        return json_response(found)

    return await served(request, Permission.READ_DIGEST, "read the digest", work)


@router.get("/v1/projections/status", summary="Each view's position and lag (like `projections status`)")
async def projections_status(request: Request) -> Response:
    def work(service: LedgerService, key: ApiKey) -> Response:
        return json_response(answers.projections_status(service.projections))

    return await served(request, Permission.READ_PROJECTIONS_STATUS, "read the views' status", work)
