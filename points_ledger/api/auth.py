"""Who is asking: `Authorization: Bearer KEY`, checked against the ledger's keys on every request (a revoked
key fails from the next request on), and what their role may do (ledger.access).

No key, a malformed, unknown or revoked key: 401. A valid key whose role may not do it: 403. The key's id,
name and role are kept on the request for the access log and the metrics; the key itself never is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request

from ledger.access import ApiKey, Permission
from points_ledger.api.problems import status_problem, unauthorized
from points_ledger.api.service import LedgerService
from projections.sources import view_source

if TYPE_CHECKING:
    from projections.db import Sql
    from projections.sources import ReportSource

#: The security scheme every /v1 route declares in the OpenAPI document (points_ledger.api.app).
SECURITY_SCHEME = {"BearerKey": {"type": "http", "scheme": "bearer",
                                 "description": "An API key: `points-ledger api-key create`."}}  # fmt: skip


def service_of(request: Request) -> LedgerService:
    service: LedgerService = request.app.state.service
    return service


T = TypeVar("T")


def bearer_key(request: Request) -> str | None:
    """The key of `Authorization: Bearer KEY` (the scheme's name in any case), else None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def authorized(request: Request, permission: Permission | None, what: str, cursor: Any | None = None) -> ApiKey:
    """The active key the request carries, if its role has `permission` (None: any role); else 401 (no key, a
    malformed, unknown or revoked one) or 403 saying `what` it may not do. Reads the store (in the caller's
    transaction, given its `cursor`): call it on the thread pool (`served`, `served_from_views`)."""
    sent = bearer_key(request)
    if sent is None:
        raise unauthorized("send an API key: Authorization: Bearer KEY")
    keys = service_of(request).keys
    key = keys.authenticate(sent) if cursor is None else keys.authenticate_in(cursor, sent)
    if key is None:
        raise unauthorized("the API key is unknown, malformed or revoked")
    request.state.key_name, request.state.role = key.name, key.role.value
    if permission is not None and not key.may(permission):
        raise forbidden(key, what)
    return key


def forbidden(key: ApiKey, what: str) -> Exception:
    return status_problem(403, f"a {key.role.value} key may not {what}")


async def on_the_pool(request: Request, work: Callable[[], T]) -> T:
    """`work()` on the process's thread pool (`LedgerService.executor`), awaited."""
    return await asyncio.get_running_loop().run_in_executor(service_of(request).executor, work)


async def served(
    request: Request, permission: Permission | None, what: str, work: Callable[[LedgerService, ApiKey], T]
) -> T:
    """`work(service, key)` for an authorized caller, with the key check, on ONE trip to the thread pool: the
    store is synchronous, and each trip costs more than a balance look-up's own queries."""

    def in_thread() -> T:
        key = authorized(request, permission, what)
        return work(service_of(request), key)

    return await on_the_pool(request, in_thread)


async def served_from_views(
    request: Request, permission: Permission, what: str, work: Callable[[ReportSource], T]
) -> T:
    """`work(source)` over the views for an authorized caller, on one trip to the thread pool, the key read in
    the same transaction as the answer, before the views are caught up."""

    def in_thread() -> T:
        def check(sql: Sql) -> None:
            authorized(request, permission, what, sql.cursor)

        with view_source(service_of(request).projections, check) as source:
            return work(source)

    return await on_the_pool(request, in_thread)
