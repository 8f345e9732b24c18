"""A sweep that visits only the members with something due, found in the views."""

from __future__ import annotations

from datetime import datetime

from ledger.application import LedgerApplication
from projections.queries import due_members
from projections.runner import Projections
from projections.views import VIEWS


def sweep_due(app: LedgerApplication, as_of: datetime) -> tuple[int, int]:
    """`app.sweep(as_of)` over the members the views say have something due: (visited, changed).

    The ledger's time moves to `as_of` first; only then are the views caught up and asked, so a change
    recorded meanwhile is either in the views or effective at `as_of` or later (and then nothing about it
    is due at `as_of`)."""
    app.advance_ledger_time(as_of)
    with Projections(app).reading([VIEWS["members"]]) as (sql, _):
        member_ids = due_members(sql, as_of, app.program.base_tier)
    return app.sweep(as_of, member_ids)
