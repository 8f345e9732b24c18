"""What every console page shows around its own content: the pages the session's role may open, the member
search box and the sign-out button (its CSRF token), and the program's currency for money figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.access import Permission
from ledger.storage.console_sessions import ConsoleSession
from points_ledger.console.access import CONSOLE_PATH


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    path: str
    permission: Permission
    audience: str


#: The console's pages, each open to the roles with its permission (ledger.access.PERMISSIONS).
PAGES = (
    NavItem("Members", f"{CONSOLE_PATH}/members", Permission.READ_MEMBERS, "the helpdesk: a member's balance, lots "
            "and history, and goodwill"),
    NavItem("Finance", f"{CONSOLE_PATH}/finance", Permission.READ_REPORTS, "finance: liability, roll-forward, "
            "month-end liability and the digest"),
    NavItem("Program KPIs", f"{CONSOLE_PATH}/kpis", Permission.READ_REPORTS, "the program team: members, points "
            "and redemption rate by period"),
    NavItem("Operations", f"{CONSOLE_PATH}/status", Permission.READ_PROJECTIONS_STATUS, "operators: the views' "
            "lag, the log head and the ledger's time"),
)  # fmt: skip


def page_context(session: ConsoleSession, title: str, current: str, currency: str, **extra: Any) -> dict[str, Any]:
    """A page's template context: its own figures (`extra`) and what the layout shows."""
    nav = [
        {"label": item.label, "path": item.path, "current": item.path == current, "audience": item.audience}
        for item in PAGES if session.key.may(item.permission)
    ]  # fmt: skip
    return {"title": title, "session": session, "nav": nav, "currency": currency, **extra}
