"""A rebuild on PostgreSQL split by member over worker processes, each building its members' rows.

Every view row belongs to one member, and a member's rows depend only on that member's events (balances,
lots, audit chains): so each worker reads only its partition of the log (the database filters by a hash of
the member's id), keeps its members' state, and COPYs its rows into the same fresh tables in transactions of
its own. One Python process spends most of a rebuild decoding and computing rows on one core (measured: the
database is idle most of the time); workers put the other cores to work. SQLite takes one writer at a time,
so it rebuilds in one process.

`verify` splits its replay of the log over workers too (projections.verify), by ranges of member ids
(`member_range`): the worker machinery here runs any job that reports lines of JSON.

A worker dies with the process that started it (Linux: the parent-death signal; elsewhere it checks its
parent before each batch): it never writes into the fresh tables of a later rebuild.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.chain import Chain
from ledger.storage.store import Store
from projections.building import REBUILD_BATCH, OnBatch, PageReader, build_fresh, prefetched_pages
from projections.db import ViewDatabase
from projections.views import VIEWS, View

#: The end of a failed worker's error output that the rebuild's error quotes.
WORKER_ERROR_CHARS = 4_000
#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
T = TypeVar("T")


class WorkerError(RuntimeError):
    """A worker failed or died: the work it shared stops."""

    #: What the workers do, as the error names it.
    label = "worker"

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        #: The end of what the worker wrote to stderr (its traceback).
        self.output = output


class RebuildWorkerError(WorkerError):
    """A rebuild worker failed or died: the rebuild stops, and the old views keep serving."""

    label = "rebuild"


#: What a worker reports, one JSON object a line.
Report = dict[str, Any]


class WorkerJob(Protocol):
    """What one worker process does: its partition `part` of `parts` of the members, reporting as it goes.
    `parent` is the process that started it, which it dies with."""

    @property
    def part(self) -> int: ...

    @property
    def parts(self) -> int: ...

    @property
    def parent(self) -> int: ...

    def run(self, report: Callable[[Report], None]) -> None: ...


#: Member ids are UUIDs: 128 bits.
_MEMBER_IDS = 2**128


def member_range(part: int, parts: int) -> tuple[UUID, UUID]:
    """The first and last member id of partition `part` of `parts`: an equal share of the id space. Member ids
    are name-based UUIDs (a SHA-1 of the member's own id), spread evenly over it.

    `verify` reads its partition in member order, where a range of ids is a range of the events table's
    primary key; under the rebuild's hash filter the planner sorted the rest of the partition for every page
    (EXPLAIN). The rebuild reads by log position, where the hash filter costs nothing and a range of ids made
    the planner scan half the key for every page: each keeps its own."""
    return UUID(int=part * _MEMBER_IDS // parts), UUID(int=(part + 1) * _MEMBER_IDS // parts - 1)


def partition_reader(app: LedgerApplication, part: int, parts: int) -> PageReader:
    """Pages of the log holding only the events of members in partition `part` of `parts`: each page the
    partition's events in a window of `parts` times the page size positions (a LIMIT under the filter would make the
    database sort the rest of the log for every page)."""
    datastore = getattr(app.recorder, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        raise TypeError("a partitioned rebuild reads a PostgreSQL log")
    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{table} "
        "WHERE notification_id >= %s AND notification_id <= %s "
        "AND (hashtext(originator_id::text) & 2147483647) %% %s = %s ORDER BY notification_id"
    ).format(schema=Identifier(datastore.schema), table=Identifier(app.recorder.events_table_name))  # type: ignore[attr-defined]

    def read_page(start: int, size: int, stop: int) -> tuple[Sequence[Notification], int]:
        end = min(start + size * parts - 1, stop)
        with datastore.get_connection() as connection, connection.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(statement, (start, end, parts, part), prepare=True)
            page = [
                Notification(
                    id=id, originator_id=originator, originator_version=version, topic=topic, state=bytes(state)
                )
                for id, originator, version, topic, state in cursor.fetchall()
            ]
        return page, end + 1

    return read_page


@dataclass(frozen=True, slots=True)
class PartitionJob:
    """What one rebuild worker builds: partition `part` of `parts` of the log up to `stop`, for `view_names`,
    its audit trail hashed with `chain`."""

    store: Store
    program: Program
    view_names: tuple[str, ...]
    part: int
    parts: int
    stop: int
    parent: int
    chain: Chain

    def run(self, report: Callable[[Report], None]) -> None:
        """Build this partition of the views' fresh tables, reporting each committed batch."""

        def on_batch(events: int, position: int) -> None:
            report({"events": events, "position": position})

        with opened(self.store, self.program) as app:
            pages = prefetched_pages(partition_reader(app, self.part, self.parts), REBUILD_BATCH, self.stop)
            views = [VIEWS[name] for name in self.view_names]
            pages = checking_parent(pages, self.parent)
            build_fresh(app, ViewDatabase(app), views, pages, on_batch, chain=self.chain)


@contextlib.contextmanager
def opened(store: Store, program: Program) -> Iterator[LedgerApplication]:
    """The ledger, opened in a worker for the time of its job."""
    app = LedgerApplication(store, program)
    try:
        yield app
    finally:
        app.close()


def build_in_workers(
    app: LedgerApplication, views: Sequence[View], stop: int, parts: int, on_batch: OnBatch | None, *, chain: Chain
) -> None:
    """Build the views' fresh tables from the log up to `stop` in `parts` worker processes, one partition of
    the members each; `on_batch` is told of every worker's batches (the position: the least any reached).
    Raises RebuildWorkerError when a worker fails, after stopping the others."""
    names = tuple(view.name for view in views)
    jobs = [PartitionJob(app.store, app.program, names, part, parts, stop, os.getpid(), chain) for part in range(parts)]
    positions = [0] * parts

    def on_report(part: int, report: Report | None) -> None:
        if report is None:  # done
            positions[part] = stop
            return
        positions[part] = int(report["position"])
        if on_batch is not None:
            on_batch(int(report["events"]), min(positions))

    run_in_workers(jobs, on_report, RebuildWorkerError)


def run_in_workers(
    jobs: Sequence[WorkerJob], on_report: Callable[[int, Report | None], None], error: type[WorkerError]
) -> None:
    """Run each job in a worker process of its own; `on_report(part, report)` is told each report as it comes,
    and `on_report(part, None)` when that worker has ended well. Raises `error` when a worker fails, after
    stopping the others.

    Workers are fresh interpreters (`python -m projections.partitions`), not multiprocessing's: its spawn
    method runs the caller's main script again in each child, and fork copies a process holding threads
    and open connections."""
    reports: queue.Queue[tuple[int, str]] = queue.Queue()
    workers: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as files:
        errors = [files.enter_context(tempfile.TemporaryFile()) for _ in jobs]
        try:
            for job in jobs:
                worker = subprocess.Popen(
                    [sys.executable, "-m", __name__],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors[job.part], env=_worker_environment(),
                )  # fmt: skip
                workers.append(worker)
                relay = threading.Thread(
                    target=_relay, args=(worker, job, reports), name=f"{error.label}-{job.part}", daemon=True
                )
                relay.start()
            running = len(jobs)
            while running:
                part, line = reports.get()
                if line:
                    on_report(part, json.loads(line))
                    continue
                running -= 1  # the worker's output ended: it exited
                if workers[part].wait() != 0:
                    raise _failure(error, part, len(jobs), workers[part].returncode, errors[part])
                on_report(part, None)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.wait()


def _worker_environment() -> dict[str, str]:
    """The caller's environment, with its module search path: a worker imports what the caller imported."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}


def _relay(worker: subprocess.Popen[bytes], job: WorkerJob, reports: queue.Queue[tuple[int, str]]) -> None:
    """Hand the worker its job, then each line it reports (an empty one when it has exited)."""
    stdin, stdout = worker.stdin, worker.stdout
    if stdin is None or stdout is None:
        raise TypeError("a worker is started with pipes")
    try:
        with stdin:
            stdin.write(pickle.dumps(job))  # the store may hold a password and a key: never on a command line
    except BrokenPipeError:
        pass  # it died before reading; its exit code says so
    for line in stdout:
        reports.put((job.part, line.decode().strip()))
    reports.put((job.part, ""))


def _failure(error: type[WorkerError], part: int, parts: int, returncode: int, error_output: Any) -> WorkerError:
    """The error of a worker that exited with `returncode`: the last line it wrote to stderr (its error), and
    the end of all it wrote (a traceback) kept as `output`."""
    error_output.seek(0)
    said = error_output.read().decode(errors="replace").strip()[-WORKER_ERROR_CHARS:]
    last = said.splitlines()[-1] if said else "it wrote nothing"
    return error(f"{error.label} worker {part + 1} of {parts} exited with code {returncode}: {last}", said)


def checking_parent(items: Iterable[T], parent: int) -> Iterator[T]:
    """The items, stopping the worker as soon as its parent is gone (where no parent-death signal does)."""
    for item in items:
        if os.getppid() != parent:
            raise WorkerError("the process that started this worker is gone")
        yield item


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux); exit at once if it already has."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def _work(job: WorkerJob) -> None:
    """A worker: do the job, each report a line of JSON on stdout."""
    die_with_parent(job.parent)
    job.run(lambda report: print(json.dumps(report), flush=True))


if __name__ == "__main__":
    _work(pickle.loads(sys.stdin.buffer.read()))  # noqa: S301 (from the process that started it)
