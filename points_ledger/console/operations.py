"""The console's home (the pages the role may open) and the operators' page: each view's position and lag,
the log's head, when each view last advanced, and the ledger's time."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ledger.access import Permission
from ledger.storage.console_sessions import ConsoleSession
from points_ledger.api.service import LedgerService
from points_ledger.console.access import CONSOLE_PATH, page
from points_ledger.console.layout import page_context
from points_ledger.console.templating import render
from projections import answers

router = APIRouter()


@router.get("/console/", summary="The console's home", include_in_schema=False)
async def home(request: Request) -> Response:
    def work(service: LedgerService, session: ConsoleSession) -> Response:
        return render("home.html", page_context(session, "Console", f"{CONSOLE_PATH}/", service.app.program.currency))

    return await page(request, None, "open the console", work)


@router.get("/console/status", summary="The views' status", include_in_schema=False)
async def status(request: Request) -> Response:
    def work(service: LedgerService, session: ConsoleSession) -> Response:
        views = answers.projections_status(service.projections)
        context = page_context(
            session, "Operations", f"{CONSOLE_PATH}/status", service.app.program.currency, views=views,
            head=max((view["head"] for view in views), default=0), ledger_time=answers.ledger_time(service.app),
        )  # fmt: skip
        return render("status.html", context)

    return await page(request, Permission.READ_PROJECTIONS_STATUS, "read the views' status", work)
