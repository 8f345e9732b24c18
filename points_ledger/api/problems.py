"""Every error the API answers, as an RFC 9457 problem document (`application/problem+json`): `type`,
`title`, `status`, `detail`, and members of its own where a client needs more (a rule's `reason`).

A `type` is a URN naming the kind of problem (docs/api.md lists them); clients branch on `type` or
`reason`, never on the wording of `detail`. Nothing a client sends is ever answered with a 500: bad input is
refused here, before it reaches the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from points_ledger.api.rendering import json_bytes

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: What every problem's `type` starts with.
TYPE_PREFIX = "urn:points-ledger:problem:"
#: Longest `detail`: it may quote input.
DETAIL_MAX_CHARS = 1_000
#: Seconds a client is asked to wait before it retries what the store could not take.
RETRY_AFTER_S = 1

log = logging.getLogger("points_ledger.api")

#: Titles of the problems answered for a bare HTTP status (an unknown route, a wrong method).
STATUS_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "A valid API key is needed"),
    403: ("forbidden", "This key's role may not do that"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Cannot answer in the media type asked for"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid", "Invalid request"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class Problem(Exception):  # noqa: N818 (RFC 9457's name for it)
    """An answer other than success: raise it anywhere in a request, and it is sent as a problem document."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers or {}
        self.extra = extra

    def document(self) -> dict[str, Any]:
        detail = self.detail if len(self.detail) <= DETAIL_MAX_CHARS else self.detail[: DETAIL_MAX_CHARS - 1] + "…"
        return {"type": TYPE_PREFIX + self.kind, "title": self.title, "status": self.status, "detail": detail,
                **self.extra}  # fmt: skip

    def response(self) -> Response:
        return Response(json_bytes(self.document()), self.status, self.headers, PROBLEM_MEDIA_TYPE)


def status_problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Problem:
    """The problem for a bare HTTP status."""
    kind, title = STATUS_PROBLEMS.get(status, ("http-" + str(status), "HTTP error " + str(status)))
    return Problem(status, kind, title, detail, headers)


def retry_later(kind: str, title: str) -> Problem:
    """503: nothing was done; the same request (a message with the same event_id) may be sent again."""
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    return Problem(503, kind, title, "nothing was recorded; retry with the same event_id", retry)


def store_unavailable() -> Problem:
    return retry_later("store-unavailable", "The ledger's store cannot be reached")


def unauthorized(detail: str) -> Problem:
    return status_problem(401, detail, {"WWW-Authenticate": 'Bearer realm="points-ledger"'})


def invalid(detail: str, kind: str = "invalid", **extra: Any) -> Problem:
    return Problem(422, kind, "Invalid request", detail, **extra)


def _validation_detail(error: RequestValidationError) -> str:
    """Each problem as `where: what`, never the value sent (it may be long, or a secret)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


#: A problem as a page, for a face that answers people (the console), when the request is its.
ProblemPage = Callable[[Request, Problem], Response | None]


def install_problem_handlers(app: FastAPI, as_page: ProblemPage = lambda request, problem: None) -> None:
    """Answer every error, including the framework's own (unknown routes, bad parameters), as a problem, or as
    the page `as_page` makes of it."""
    from ledger.storage.store import UNAVAILABLE_ERRORS

    def answer(request: Request, problem: Problem) -> Response:
        page = as_page(request, problem)
        return problem.response() if page is None else page

    async def on_problem(request: Request, problem: Exception) -> Response:
        if not isinstance(problem, Problem):
            raise TypeError(problem)
        return answer(request, problem)

    async def on_http(request: Request, error: Exception) -> Response:
        if not isinstance(error, StarletteHTTPException):
            raise TypeError(error)
        return answer(request, status_problem(error.status_code, str(error.detail), dict(error.headers or {})))

    async def on_validation(request: Request, error: Exception) -> Response:
        if not isinstance(error, RequestValidationError):
            raise TypeError(error)
        return answer(request, invalid(_validation_detail(error)))

    async def on_unavailable(request: Request, error: Exception) -> Response:
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, type(error).__name__)
        return answer(request, store_unavailable())

    async def on_error(request: Request, error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(request, status_problem(500, "an unexpected error; it is logged on the server"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    for unavailable in UNAVAILABLE_ERRORS:  # wherever the store fails: a key's check, a read, a write
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(Exception, on_error)
