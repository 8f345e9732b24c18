"""Who is looking at a console page: the signed-in session (its cookie), what its key's role may see, and the
CSRF tokens every form carries.

A page's session is read in the same read transaction as the page's figures (one trip to the store), on the
process's thread pool like the API's routes. No session, or one ended, expired or whose key was revoked:
the browser is sent to sign in (`SignInNeeded`). A role that may not see the page: 403 (`ConsoleRefusal`).
A form is accepted only with its session's CSRF token; the sign-in form, before any session, with the
token it was given in a cookie of its own (double submit). Cookies are HttpOnly, SameSite=Strict, limited to
/console, and Secure when the console is served over HTTPS.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qs, quote

from fastapi import Request
from starlette.responses import Response

from ledger.access import Permission
from ledger.storage.console_sessions import SESSION_HOURS_MAX, ConsoleSession, csrf_matches
from points_ledger.api.auth import on_the_pool, service_of
from points_ledger.api.limits import read_body
from points_ledger.api.service import LedgerService
from projections.db import Sql
from projections.sources import ReportSource, view_source

CONSOLE_PATH = "/console"
SESSION_COOKIE = "pl_console"
#: The sign-in form's own CSRF token (there is no session yet to hold one).
SIGN_IN_COOKIE = "pl_console_sign_in"
CSRF_FIELD = "csrf"
#: Longest form field value read (a reason is at most 256 characters, a key 64).
FIELD_LENGTH_MAX = 1_000

T = TypeVar("T")


class SignInNeeded(Exception):  # noqa: N818 (an answer, not an error)
    """No live session: the browser is sent to the sign-in page, and back to `wanted` after it."""

    def __init__(self, wanted: str) -> None:
        super().__init__(wanted)
        self.wanted = wanted


class ConsoleRefusal(Exception):  # noqa: N818 (an answer, not an error)
    """A page answered with an error status and a sentence saying why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def sign_in_url(wanted: str) -> str:
    return f"{CONSOLE_PATH}/sign-in?next={quote(wanted, safe='')}"


def safe_next(wanted: str | None) -> str:
    """Where to go after signing in: a console page only (never another host: `//host` or a scheme)."""
    if wanted and wanted.startswith(CONSOLE_PATH + "/") and "//" not in wanted and "\\" not in wanted:
        return wanted
    return CONSOLE_PATH + "/"


def _wanted(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "") if request.method == "GET" else CONSOLE_PATH + "/"


def session_in(request: Request, cursor: object) -> ConsoleSession:
    """The request's live session, read in the caller's transaction (`cursor`), else SignInNeeded."""
    found = service_of(request).sessions.find_in(cursor, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise SignInNeeded(_wanted(request))
    request.state.key_name, request.state.role = found.key.name, found.key.role.value
    return found


def require(session: ConsoleSession, permission: Permission | None, what: str) -> None:
    if permission is not None and not session.key.may(permission):
        raise ConsoleRefusal(403, f"a {session.key.role.value} key may not {what}")


def require_csrf(session: ConsoleSession, form: dict[str, str]) -> None:
    if not csrf_matches(session, form.get(CSRF_FIELD)):
        raise ConsoleRefusal(403, "this form was not sent from this console session (its CSRF token is missing or "
                                  "wrong): open the page again and resend it")  # fmt: skip


async def page_from_views(
    request: Request, permission: Permission | None, what: str, work: Callable[[ReportSource, ConsoleSession], T]
) -> T:
    """`work(source, session)` over the views, for a session whose role has `permission`, the session read in
    the same transaction as the page's figures."""

    def in_thread() -> T:
        sessions: list[ConsoleSession] = []

        def check(sql: Sql) -> None:  # called again if the read is retried: the last reading counts
            sessions.append(session_in(request, sql.cursor))
            require(sessions[-1], permission, what)

        with view_source(service_of(request).projections, check) as source:
            return work(source, sessions[-1])

    return await on_the_pool(request, in_thread)


async def page(
    request: Request, permission: Permission | None, what: str, work: Callable[[LedgerService, ConsoleSession], T]
) -> T:
    """`work(service, session)` for a session whose role has `permission` (for what is not read from the
    views: the log's digest, the views' status, a write)."""

    def in_thread() -> T:
        service = service_of(request)
        with service.keys.transaction(commit=False) as cursor:
            session = session_in(request, cursor)
        require(session, permission, what)
        return work(service, session)

    return await on_the_pool(request, in_thread)


async def form_fields(request: Request) -> dict[str, str]:
    """An URL-encoded form's fields (the first value of each), the body read up to the API's limit."""
    body = await read_body(request)
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as error:
        raise ConsoleRefusal(400, f"not a form this console sends: {error}") from None
    return {name: values[0][:FIELD_LENGTH_MAX] for name, values in fields.items()}


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=CONSOLE_PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_HOURS_MAX * 3600)


def forget_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=CONSOLE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")  # fmt: skip
