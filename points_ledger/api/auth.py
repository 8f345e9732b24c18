"""Who is asking: `Authorization: Bearer KEY`, checked against the ledger's keys on every request (a revoked
key fails from the next request on), and what their role may do (ledger.access).

No key, a malformed, unknown or revoked key: 401. A valid key whose role may not do it: 403. The key's id,
name and role are kept on the request for the access log and the metrics; the key itself never is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.access import ApiKey, Permission
from points_ledger.api.problems import status_problem, unauthorized
from points_ledger.api.service import LedgerService

#: How the scheme appears in the OpenAPI document; the check itself is `caller`'s.
bearer = HTTPBearer(auto_error=False, description="An API key: `points-ledger api-key create`.")


def service_of(request: Request) -> LedgerService:
    service: LedgerService = request.app.state.service
    return service


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey:
    """The active key the request carries; 401 without one."""
    if credentials is None:
        raise unauthorized("send an API key: Authorization: Bearer KEY")
    key = service_of(request).keys.authenticate(credentials.credentials)
    if key is None:
        raise unauthorized("the API key is unknown, malformed or revoked")
    request.state.key_name, request.state.role = key.name, key.role.value
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def forbidden(key: ApiKey, what: str) -> Exception:
    return status_problem(403, f"a {key.role.value} key may not {what}")


def requires(permission: Permission, what: str) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency: the caller's key, if its role has `permission`; else 403 saying `what` it may not do."""

    async def allowed(key: Caller) -> ApiKey:  # no I/O: not worth a trip to the thread pool
        if not key.may(permission):
            raise forbidden(key, what)
        return key

    return allowed
