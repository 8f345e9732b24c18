"""A rebuild on PostgreSQL split by member over worker processes, each building its members' rows.

Every view row belongs to one member, and a member's rows depend only on that member's events (balances,
lots, audit chains): so each worker reads only its partition of the log (the database filters by a hash of
the member's id), keeps its members' state, and COPYs its rows into the same fresh tables in transactions of
its own. One Python process spends most of a rebuild decoding and computing rows on one core (measured: the
database is idle most of the time); workers put the other cores to work. SQLite takes one writer at a time,
so it rebuilds in one process.

A worker dies with the process that started it (Linux: the parent-death signal; elsewhere it checks its
parent before each batch): it never writes into the fresh tables of a later rebuild.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.store import Store
from projections.building import REBUILD_BATCH, OnBatch, PageReader, build_fresh, prefetched_pages
from projections.db import ViewDatabase
from projections.views import VIEWS, View

#: The end of a failed worker's error output that the rebuild's error quotes.
WORKER_ERROR_CHARS = 4_000
#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


class RebuildWorkerError(RuntimeError):
    """A rebuild worker failed or died: the rebuild stops, and the old views keep serving."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        #: The end of what the worker wrote to stderr (its traceback).
        self.output = output


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
    """What one worker builds: partition `part` of `parts` of the log up to `stop`, for `view_names`."""

    store: Store
    program: Program
    view_names: tuple[str, ...]
    part: int
    parts: int
    stop: int
    #: The process that started the worker, which it dies with.
    parent: int


def build_in_workers(
    app: LedgerApplication, views: Sequence[View], stop: int, parts: int, on_batch: OnBatch | None
) -> None:
    """Build the views' fresh tables from the log up to `stop` in `parts` worker processes, one partition of
    the members each; `on_batch` is told of every worker's batches (the position: the least any reached).
    Raises RebuildWorkerError when a worker fails, after stopping the others.

    Workers are fresh interpreters (`python -m projections.partitions`), not multiprocessing's: its spawn
    method runs the caller's main script again in each child, and fork copies a process holding threads
    and open connections."""
    names = tuple(view.name for view in views)
    reports: queue.Queue[tuple[int, str]] = queue.Queue()
    workers: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as files:
        errors = [files.enter_context(tempfile.TemporaryFile()) for _ in range(parts)]
        try:
            for part in range(parts):
                worker = subprocess.Popen(
                    [sys.executable, "-m", __name__],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors[part], env=_worker_environment(),
                )  # fmt: skip
                workers.append(worker)
                job = PartitionJob(app.store, app.program, names, part, parts, stop, os.getpid())
                relay = threading.Thread(
                    target=_relay, args=(worker, job, reports), name=f"rebuild-{part}", daemon=True
                )
                relay.start()
            positions = [0] * parts
            running = parts
            while running:
                part, line = reports.get()
                if not line:  # the worker's output ended: it exited
                    running -= 1
                    if workers[part].wait() != 0:
                        raise _failure(part, parts, workers[part].returncode, errors[part])
                    positions[part] = stop
                    continue
                events, positions[part] = (int(word) for word in line.split())
                if on_batch is not None:
                    on_batch(events, min(positions))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.wait()


def _worker_environment() -> dict[str, str]:
    """The caller's environment, with its module search path: a worker imports what the caller imported."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}


def _relay(worker: subprocess.Popen[bytes], job: PartitionJob, reports: queue.Queue[tuple[int, str]]) -> None:
    """Hand the worker its job, then each line it reports (an empty one when it has exited)."""
    stdin, stdout = worker.stdin, worker.stdout
    if stdin is None or stdout is None:
        raise TypeError("a worker is started with pipes")
    try:
        with stdin:
            stdin.write(pickle.dumps(job))  # the store may hold a password: never on a command line
    except BrokenPipeError:
        pass  # it died before reading; its exit code says so
    for line in stdout:
        reports.put((job.part, line.decode().strip()))
    reports.put((job.part, ""))


def _failure(part: int, parts: int, returncode: int, error_output: Any) -> RebuildWorkerError:
    """The error of a worker that exited with `returncode`: the last line it wrote to stderr (its error), and
    the end of all it wrote (a traceback) kept as `output`."""
    error_output.seek(0)
    said = error_output.read().decode(errors="replace").strip()[-WORKER_ERROR_CHARS:]
    last = said.splitlines()[-1] if said else "it wrote nothing"
    return RebuildWorkerError(f"rebuild worker {part + 1} of {parts} exited with code {returncode}: {last}", said)


def _build_partition(job: PartitionJob) -> None:
    """A worker: build its partition of the views' fresh tables, reporting each committed batch on stdout."""
    die_with_parent(job.parent)
    app = LedgerApplication(job.store, job.program)
    try:

        def on_batch(events: int, position: int) -> None:
            print(events, position, flush=True)

        pages = prefetched_pages(partition_reader(app, job.part, job.parts), REBUILD_BATCH, job.stop)
        views = [VIEWS[name] for name in job.view_names]
        build_fresh(app, ViewDatabase(app), views, _checking_parent(pages, job.parent), on_batch)
    finally:
        app.close()


def _checking_parent(pages: Iterable[Sequence[Notification]], parent: int) -> Iterator[Sequence[Notification]]:
    """The pages, stopping the worker as soon as its parent is gone (where no parent-death signal does)."""
    for page in pages:
        if os.getppid() != parent:
            raise RebuildWorkerError("the rebuild that started this worker is gone")
        yield page


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux); exit at once if it already has."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


if __name__ == "__main__":
    _build_partition(pickle.loads(sys.stdin.buffer.read()))  # noqa: S301 (from the process that started it)
