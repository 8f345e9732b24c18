"""Building fresh view tables from the log in bulk: pages read ahead, rows computed in memory, COPY behind.

One loop (`build_fresh`) serves a rebuild in one process and each worker of a parallel rebuild
(projections.partitions): what differs is only which pages of the log it is given.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import Notification

from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.storage.chain import Chain
from projections.db import Rows, ViewDatabase
from projections.views import LogEvent, View

#: Log events per page while rebuilding (and per COPY transaction: fresh tables, nobody else writes them).
REBUILD_BATCH = 2_000
#: Suffix of the tables a rebuild writes before it swaps them in.
REBUILD_SUFFIX = "__new"
#: Pages read ahead of the one being applied.
PREFETCH_PAGES = 2
#: Batches computed ahead of the one being written.
WRITE_AHEAD_BATCHES = 2

#: Told after each batch: (events applied in the batch, position reached).
OnBatch = Callable[[int, int], None]
#: Reads one page of the log: (first position, page size, last position) → (notifications, next first position).
PageReader = Callable[[int, int, int], tuple[Sequence[Notification], int]]


def decode(
    app: LedgerApplication, notifications: Iterable[Notification], keys: dict[UUID | str, str] | None = None
) -> list[LogEvent]:
    """The member events of `notifications`, decoded; anything else in the log is an error. `keys` keeps each
    member's key (the text of its id) from one call to the next: formatting a UUID costs more than a lookup."""
    keys = {} if keys is None else keys
    return [decode_one(app, notification, keys) for notification in notifications]


def decode_one(app: LedgerApplication, notification: Notification, keys: dict[UUID | str, str]) -> LogEvent:
    """One member event of the log, decoded (see `decode`)."""
    event = app.mapper.to_domain_event(notification)
    if not isinstance(event, Member.Event):
        raise TypeError(f"unexpected event {type(event).__name__} at log position {notification.id}")
    originator_id = notification.originator_id
    if (key := keys.get(originator_id)) is None:
        key = keys[originator_id] = str(originator_id)
    return LogEvent(notification.id, event, notification, key)


def build_fresh(
    app: LedgerApplication,
    db: ViewDatabase,
    views: Sequence[View],
    pages: Iterable[Sequence[Notification]],
    on_batch: OnBatch | None,
    *,
    chain: Chain,
) -> None:
    """Append to the views' fresh tables (named with REBUILD_SUFFIX) the rows of the events in `pages`, the
    audit trail hashed with `chain`: every member's state is kept in memory between pages (nothing is read
    back), and each page's rows are appended in one transaction while the next page is computed."""
    builders = [view.builder(REBUILD_SUFFIX, chain) for view in views]
    # The collector is paused while building: the members' states kept in memory would otherwise be walked
    # over and over, and the batch's own objects are freed by reference counting anyway.
    collecting = gc.isenabled()
    gc.disable()
    try:
        keys: dict[UUID | str, str] = {}
        with BatchWriter(db, on_batch) as writer:
            for notifications in pages:
                events = decode(app, notifications, keys)
                rows = [rows for builder in builders for rows in builder.add(events)]
                writer.put(rows, len(events), events[-1].position)
            writer.put([rows for builder in builders for rows in builder.finish()], 0, 0)
    finally:
        if collecting:
            gc.enable()


class BatchWriter:
    """Appends each batch's rows in a transaction of its own, in a thread: while the database stores one batch
    (on the other core), Python computes the next. `on_batch` is told after each commit. An error in the
    thread is raised to the caller at its next `put` or on leaving."""

    def __init__(self, db: ViewDatabase, on_batch: OnBatch | None) -> None:
        self.db = db
        self.on_batch = on_batch
        self.batches: queue.Queue[tuple[list[Rows], int, int] | None] = queue.Queue(maxsize=WRITE_AHEAD_BATCHES)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="view-writer", daemon=True)

    def __enter__(self) -> BatchWriter:
        self.thread.start()
        return self

    def put(self, rows: list[Rows], events: int, position: int) -> None:
        self._raise_error()
        self.batches.put((rows, events, position))

    def __exit__(self, *exc: object) -> None:
        self.batches.put(None)
        self.thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _write(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.error is not None:
                continue  # drain: the caller raises at its next put
            rows, events, position = batch
            try:
                with self.db.transaction(commit=True) as sql:
                    if sql.dialect == "postgresql":  # fresh tables: the swap's own commit makes them durable
                        sql.execute("SET LOCAL synchronous_commit = off")
                    for table_rows in rows:
                        sql.copy(table_rows)
                if self.on_batch is not None and events:
                    self.on_batch(events, position)
            except BaseException as error:  # handed to the caller
                self.error = error


def prefetched_pages(read_page: PageReader, page_size: int, stop: int) -> Iterator[Sequence[Notification]]:
    """The log up to `stop`, page by page, the next pages read by a thread while the caller works on one:
    the database sends rows while Python decodes and applies (the wait is off the critical path)."""
    pages: queue.Queue[Sequence[Notification] | BaseException | None] = queue.Queue(maxsize=PREFETCH_PAGES)
    stopping = threading.Event()

    def read() -> None:
        start = 1
        try:
            while start <= stop and not stopping.is_set():
                page, start = read_page(start, page_size, stop)
                if page:
                    pages.put(page)
            pages.put(None)
        except BaseException as error:  # handed to the caller, who raises it
            pages.put(error)

    reader = threading.Thread(target=read, name="log-prefetch", daemon=True)
    reader.start()
    try:
        while (page := pages.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield page
    finally:
        stopping.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                pages.get_nowait()
            reader.join(timeout=0.05)


def whole_log(app: LedgerApplication) -> PageReader:
    """Pages of the whole log, read with the library's recorder."""

    def read_page(start: int, limit: int, stop: int) -> tuple[Sequence[Notification], int]:
        page = app.recorder.select_notifications(start=start, limit=limit, stop=stop)
        return page, page[-1].id + 1 if page else stop + 1

    return read_page
