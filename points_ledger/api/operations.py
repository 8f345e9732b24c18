"""For whoever runs the server: /healthz (liveness), /readyz (readiness) and /metrics. None needs a key.

Only /readyz touches the store, on the process's thread pool like every route that does (`on_the_pool`);
the others answer from memory on the event loop."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from points_ledger.api.auth import on_the_pool, service_of
from points_ledger.api.problems import status_problem
from points_ledger.api.rendering import json_response
from points_ledger.api.service import LedgerService

router = APIRouter()
PROMETHEUS_MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: the store answers and the views lag by at most api.ready_lag_max events",
    responses={503: {"description": "The store is unreachable, or the views lag too far behind the log."}},
)
async def readyz(request: Request) -> Response:
    return await on_the_pool(request, lambda: _readiness(service_of(request)))


def _readiness(service: LedgerService) -> Response:
    from ledger.storage.store import UNAVAILABLE_ERRORS
    from projections import answers

    try:
        _probe(service)
        views = answers.projections_status(service.projections)
    except UNAVAILABLE_ERRORS as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return json_response({"status": "unavailable", "detail": f"the store cannot be reached: {reason}"}, 503)
    lag = max((view["lag"] for view in views), default=0)
    head = max((view["head"] for view in views), default=0)
    limit = service.api.ready_lag_max
    if lag > limit:
        return json_response({"status": "lagging", "lag": lag, "lag_max": limit, "head": head}, 503)
    return json_response({"status": "ready", "lag": lag, "lag_max": limit, "head": head})


def _probe(service: LedgerService) -> None:
    """One query outside the eventsourcing library's retries (ten tries per read on PostgreSQL, each waiting
    up to the connect timeout): an unreachable store fails the probe within one connect timeout."""
    with service.projections.db.transaction(commit=False) as sql:
        sql.rows("SELECT 1")


@router.get("/metrics", summary="Prometheus metrics (unless api.metrics is off)")
async def metrics(request: Request) -> Response:
    found = request.app.state.metrics
    if found is None:
        raise status_problem(404, "metrics are turned off (api.metrics)")
    return Response(found.exposition(), media_type=PROMETHEUS_MEDIA_TYPE)
