"""Deciding the next batch while the last one is written.

A batch's write is mostly waiting for the database (psycopg and sqlite3 release the GIL meanwhile), and
deciding a batch is pure Python: done one after the other, each waits for the other. `apply_pipelined`
decides batch k+1 on the members in memory while batch k's transaction runs on a writer thread, and hands
back each batch's decisions only once its transaction has committed, in order. It uses the application's
write path (`decide`, then `write` in its two halves, `prepare` here and `commit` on the writer thread).

The results are those of `LedgerApplication.apply_batch` called batch after batch:
- the writer thread writes batches one at a time, in order, so positions continue as before;
- `on_failures` of batch k+1 is called only after batch k committed, and before batch k+1 is written;
- if batch k's write fails, batch k+1 (decided on top of it, never written) is forgotten; batch k is
  applied again with `apply_batch` (its retries, or its error), then batch k+1 is decided afresh;
- a rule that fails while batch k is in flight would need the member as stored: batch k is waited for,
  and batch k+1 decided again from the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from eventsourcing.persistence import Tracking

from ledger.application import DecidedBatch, LedgerApplication, OnFailures, ReloadNeededError
from ledger.member import Source
from ledger.outcomes import Decision
from schemas import Message


@dataclass(frozen=True, slots=True)
class Batch:
    """What `apply_batch` takes: messages, the tracking record to write with them, and `on_failures`."""

    messages: Sequence[tuple[Message, Source]]
    tracking: Tracking | None = None
    on_failures: OnFailures | None = None


@dataclass(slots=True)
class _InFlight:
    batch: Batch
    decisions: list[Decision]
    write: Future[Sequence[int]]


def apply_pipelined(app: LedgerApplication, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Decision]]]:
    """Apply `batches` in order, as `app.apply_batch` would, overlapping each write with deciding the next;
    yield each batch with its decisions once it is recorded."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer") as writer:
        in_flight: _InFlight | None = None
        try:
            for batch in batches:
                decided = _decide_beside(app, batch, in_flight)
                if in_flight is not None:
                    settled = _settle(app, in_flight)
                    if settled is not in_flight.decisions:  # written again: `decided` was built on the lost write
                        app.forget()
                        decided = app.decide(batch.messages)
                    yield in_flight.batch, settled
                    in_flight = None
                decided.report_failures(batch.on_failures)
                prepared = app.prepare(decided, batch.tracking)
                in_flight = _InFlight(batch, decided.decisions, writer.submit(app.commit, prepared))
            if in_flight is not None:
                yield in_flight.batch, _settle(app, in_flight)
                in_flight = None
        finally:
            if in_flight is not None:  # the caller stopped early, or deciding failed: let the write end
                in_flight.write.exception()
                app.forget()


def _decide_beside(app: LedgerApplication, batch: Batch, in_flight: _InFlight | None) -> DecidedBatch:
    """Decide `batch` while `in_flight` is written; if a rule fails meanwhile, wait for the write first."""
    if in_flight is None:
        return app.decide(batch.messages)
    try:
        return app.decide(batch.messages, reload_allowed=False)
    except ReloadNeededError:
        in_flight.write.exception()  # wait; a failed write is dealt with by `_settle`
        app.forget()
        return app.decide(batch.messages)


def _settle(app: LedgerApplication, in_flight: _InFlight) -> list[Decision]:
    """The in-flight batch's decisions once recorded; if its write failed, the decisions of applying it again
    with `apply_batch` (which retries a conflict, or raises)."""
    if in_flight.write.exception() is None:
        return in_flight.decisions
    app.forget()
    batch = in_flight.batch
    return app.apply_batch(batch.messages, batch.tracking, on_failures=batch.on_failures)
