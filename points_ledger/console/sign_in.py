"""Signing in to the console with an API key, and out again.

The sign-in form is protected against login CSRF by a double-submitted token (a cookie and a hidden field
that must match): another site cannot sign a browser in under its own key. A wrong, revoked or malformed
key gets the form again with 401, and no session.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.routing import APIRouter
from starlette.responses import RedirectResponse, Response

from ledger.storage.console_sessions import ConsoleSession
from points_ledger.api.auth import on_the_pool, service_of
from points_ledger.api.service import LedgerService
from points_ledger.console.access import (
    CONSOLE_PATH,
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    ConsoleRefusal,
    forget_cookie,
    form_fields,
    new_sign_in_token,
    page,
    require_csrf,
    safe_next,
    set_cookie,
    set_session_cookie,
)
from points_ledger.console.templating import render

router = APIRouter()
#: How long a sign-in form stays usable.
SIGN_IN_FORM_SECONDS = 3600


def _form(request: Request, wanted: str, error: str | None = None, status: int = 200) -> Response:
    token = new_sign_in_token()
    context: dict[str, object] = {"title": "Sign in", "session": None, "nav": [], "sign_in_token": token,
                                  "next": wanted, "error": error, "signing_in": True}  # fmt: skip
    response = render("sign_in.html", context, status)
    set_cookie(request, response, SIGN_IN_COOKIE, token, SIGN_IN_FORM_SECONDS)
    return response


@router.get("/console/sign-in", summary="The sign-in form", include_in_schema=False)
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    return _form(request, safe_next(next))


@router.get("/console", include_in_schema=False)
async def console_root() -> Response:
    return RedirectResponse(CONSOLE_PATH + "/", 308)


@router.post("/console/sign-in", summary="Sign in with an API key", include_in_schema=False)
async def sign_in(request: Request) -> Response:
    form = await form_fields(request)
    wanted = safe_next(form.get("next"))
    expected, sent = request.cookies.get(SIGN_IN_COOKIE, ""), form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise ConsoleRefusal(403, "this sign-in form was not sent from this console (its CSRF token is missing or "
                                  "wrong): open the sign-in page again")  # fmt: skip

    def open_session() -> tuple[str, ConsoleSession] | None:
        service = service_of(request)
        key = service.keys.authenticate(form.get("key", "").strip())
        if key is None:
            return None
        earlier = request.cookies.get(SESSION_COOKIE)
        if earlier:  # signing in again (a link from outside, SameSite=Strict): the browser's last session ends
            service.sessions.end(earlier)
        return service.sessions.open(key)

    opened = await on_the_pool(request, open_session)
    if opened is None:
        return _form(request, wanted, "That key is unknown, malformed or revoked.", 401)
    token, session = opened
    request.state.key_name, request.state.role = session.key.name, session.key.role.value
    response = RedirectResponse(wanted, 303)
    set_session_cookie(request, response, token)
    forget_cookie(request, response, SIGN_IN_COOKIE)
    return response


@router.post("/console/sign-out", summary="Sign out", include_in_schema=False)
async def sign_out(request: Request) -> Response:
    form = await form_fields(request)

    def end(service: LedgerService, session: ConsoleSession) -> Response:
        require_csrf(session, form)
        service.sessions.end(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse(CONSOLE_PATH + "/sign-in", 303)
        forget_cookie(request, response, SESSION_COOKIE)
        return response

    return await page(request, None, "sign out", end)
