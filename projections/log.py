"""Reading the ledger's event log in its total order, decoded, page by page."""

from __future__ import annotations

from collections.abc import Iterator

from ledger.application import PAGE_SIZE, LedgerApplication
from ledger.member import Member


def read_log(app: LedgerApplication, page_size: int = PAGE_SIZE, stop: int | None = None) -> Iterator[Member.Event]:
    """Every member event in the order it was recorded (the notification log), up to position `stop`."""
    if not 1 <= page_size <= PAGE_SIZE:
        raise ValueError(f"page_size must be 1..{PAGE_SIZE}")
    start = 1
    while True:
        page = app.recorder.select_notifications(start=start, limit=page_size, stop=stop)
        for notification in page:
            event = app.mapper.to_domain_event(notification)
            if not isinstance(event, Member.Event):
                raise TypeError(f"unexpected event {type(event).__name__} in the ledger log")
            yield event
        if len(page) < page_size:
            return
        start = page[-1].id + 1
