"""Request size: every body is at most REQUEST_BODY_MAX_BYTES (a message's own limit, schemas.parsing), and
a larger one is refused with 413 before it is read whole (by its Content-Length, or while it streams in)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from points_ledger.api.problems import status_problem
from schemas.parsing import MESSAGE_MAX_BYTES

REQUEST_BODY_MAX_BYTES = MESSAGE_MAX_BYTES


def too_large() -> Exception:
    return status_problem(413, f"a request body is at most {REQUEST_BODY_MAX_BYTES} bytes")


async def read_body(request: Request) -> bytes:
    """The request's body, read up to the limit (413 beyond it)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > REQUEST_BODY_MAX_BYTES:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


class DeclaredSizeLimit:
    """Refuse a request whose Content-Length is over the limit before any route runs (any method, any
    route): nothing of it is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > REQUEST_BODY_MAX_BYTES:
                        problem = too_large() if value.isdigit() else status_problem(400, "a bad Content-Length")
                        response = problem.response()  # type: ignore[attr-defined]
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
