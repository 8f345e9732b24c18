"""The console as one piece the API application mounts: its routes, its style sheet, and its errors as pages.

An error on a console page is a page saying what went wrong (with the same status the API would answer),
never a JSON problem: no session sends the browser to sign in; a role that may not see the page, a form
without its CSRF token, an unknown member or a bad time in a form each get a sentence.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from points_ledger.api.problems import Problem
from points_ledger.console import finance, members, operations, program, sign_in
from points_ledger.console.access import CONSOLE_PATH, ConsoleRefusal, SignInNeeded, sign_in_url
from points_ledger.console.templating import SECURITY_HEADERS, render

#: Status lines of the error pages.
_TITLES = {400: "Bad request", 401: "Sign in first", 403: "Not for this key", 404: "Not found",
           405: "Not allowed", 413: "Too large", 422: "Not understood", 503: "The ledger is unavailable"}  # fmt: skip
STYLE_SHEET = files("points_ledger.console").joinpath("static/console.css").read_bytes()


def is_console(request: Request) -> bool:
    return request.url.path == CONSOLE_PATH or request.url.path.startswith(CONSOLE_PATH + "/")


def error_page(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A console page saying what went wrong (without the session's navigation: it may be what failed)."""
    title = _TITLES.get(status, "Something went wrong")
    context: dict[str, object] = {"title": title, "session": None, "nav": [], "status": status, "detail": detail}
    return render("error.html", context, status, headers)


def problem_page(request: Request, problem: Problem) -> Response | None:
    """A problem on a console page as a page (install_problem_handlers); None elsewhere."""
    if not is_console(request):
        return None
    detail = (
        "the ledger's store cannot be reached now: try again in a moment" if problem.status == 503 else problem.detail
    )
    return error_page(problem.status, detail)


async def style_sheet() -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(STYLE_SHEET, media_type="text/css", headers=headers)


def install_console(app: FastAPI) -> None:
    """Add the console's routes and the handlers of its answers to `app`."""
    for module in (sign_in, operations, members, finance, program):
        app.include_router(module.router)
    app.add_api_route(f"{CONSOLE_PATH}/static/console.css", style_sheet, include_in_schema=False)

    async def on_sign_in_needed(request: Request, needed: Exception) -> Response:
        if not isinstance(needed, SignInNeeded):
            raise TypeError(needed)
        return RedirectResponse(sign_in_url(needed.wanted), 303)

    async def on_refusal(request: Request, refusal: Exception) -> Response:
        if not isinstance(refusal, ConsoleRefusal):
            raise TypeError(refusal)
        return error_page(refusal.status, refusal.detail)

    app.add_exception_handler(SignInNeeded, on_sign_in_needed)
    app.add_exception_handler(ConsoleRefusal, on_refusal)
