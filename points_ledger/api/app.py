"""The API application of one server process, built from the effective settings.

`create_app` is what uvicorn runs (`points_ledger.api.app:app_from_environment` in each worker process).
The ledger is opened when the process starts serving and closed when it stops; the thread pool that runs the
routes is sized to `api.threads`, the size of the ledger's connection pool (points_ledger.api.service).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from points_ledger.api import operations, reads, writes
from points_ledger.api.auth import SECURITY_SCHEME
from points_ledger.api.cpus import pin_this_process
from points_ledger.api.limits import DeclaredSizeLimit
from points_ledger.api.observe import ApiMetrics, Observed
from points_ledger.api.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX, install_problem_handlers
from points_ledger.console.site import install_console, problem_page

if TYPE_CHECKING:
    from points_ledger.config import LedgerSettings

#: The flags `serve` was given (JSON), for its worker processes to load the same settings.
FLAGS_VARIABLE = "POINTS_LEDGER_SERVE_FLAGS"
TITLE = "points-ledger"
DESCRIPTION = (
    "Balances and history for tills, member apps and the helpdesk; messages decided at the till; reports for "
    "finance. Every route under /v1 needs `Authorization: Bearer KEY` (`points-ledger api-key create`); errors "
    f"are RFC 9457 problem documents (`{PROBLEM_MEDIA_TYPE}`, `type` starting `{TYPE_PREFIX}`). See docs/api.md."
)


def _version() -> str:
    from importlib.metadata import version

    return version("points-ledger")


def create_app(settings: LedgerSettings | None) -> FastAPI:
    """The application; `settings` None builds it without a ledger, only to describe it (`openapi_document`)."""
    metrics = ApiMetrics() if settings is None or settings.api.metrics else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from points_ledger.api.service import ledger_service

        if settings is None:
            raise RuntimeError("an application built without settings cannot serve")
        if settings.api.pin_cpu:
            pin_this_process()
        with ledger_service(settings) as service:
            app.state.service = service
            yield

    app = FastAPI(
        title=TITLE, version=_version(), description=DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # both load scripts from another host
    )  # fmt: skip
    app.state.metrics = metrics
    install_problem_handlers(app, problem_page)
    for router in (reads.router, writes.router, operations.router):
        app.include_router(router)
    install_console(app)
    app.add_middleware(DeclaredSizeLimit)
    app.add_middleware(Observed, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the wire format's schemas (the body of POST /v1/messages) as components."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema = writes.message_schema()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(schema.pop("$defs", {}))
        components["Message"] = schema
        document["components"]["securitySchemes"] = SECURITY_SCHEME
        for path, operations in document["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{name: []} for name in SECURITY_SCHEME]
        app.openapi_schema = document
    return app.openapi_schema


def openapi_document() -> str:
    """The OpenAPI document as `schemas export` writes it."""
    return json.dumps(create_app(None).openapi(), indent=2, sort_keys=True) + "\n"


def app_from_environment() -> FastAPI:
    """What each uvicorn worker runs: the settings `serve` was started with (its flags, passed on in
    FLAGS_VARIABLE; the environment and the config file are the workers' own, the same)."""
    from points_ledger.api.server import configure_logging
    from points_ledger.config import load_settings

    configure_logging()
    flags = json.loads(os.environ.get(FLAGS_VARIABLE, "{}"))
    settings, _ = load_settings(flags)
    return create_app(settings)
