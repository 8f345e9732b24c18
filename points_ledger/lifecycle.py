"""The process's life cycle, for the commands that run long: a clean stop on a signal, and the tests' crash hooks.

A command that works in batches stops between two of them when asked; the tests kill a command by SIGKILL
at a chosen commit to prove that a crash neither loses nor doubles anything. Both are the same for every
command, so they live here, apart from what the commands do.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

#: Tests only: a command dies by SIGKILL right after its Nth database commit (see `crash_hook`).
CRASH_AFTER_BATCH_ENV = "POINTS_LEDGER_CRASH_AFTER_BATCH"
#: Tests only: `consume` dies by SIGKILL in the Nth batch, its dead letters confirmed, nothing of it recorded.
CRASH_BEFORE_COMMIT_ENV = "POINTS_LEDGER_CRASH_BEFORE_COMMIT"


@contextmanager
def stop_on_signals(doing: str = "stopping after the current batch") -> Iterator[threading.Event]:
    """SIGTERM/SIGINT ask for a clean stop (`doing` says what it waits for); a second one abandons it."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # os.write, not print: the main thread may be inside a write to stderr right now.
        notice = f"points-ledger: {signal.Signals(signum).name}: {doing}\n"
        os.write(sys.stderr.fileno(), notice.encode())

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def crash_batch(variable: str = CRASH_AFTER_BATCH_ENV) -> int | None:
    """The batch number N a crash hook's `variable` names (tests only): with POINTS_LEDGER_CRASH_AFTER_BATCH,
    die by SIGKILL right after the Nth database commit; with POINTS_LEDGER_CRASH_BEFORE_COMMIT, in the Nth
    batch before its commit."""
    value = os.environ.get(variable)
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{variable} must be a positive integer, not {value!r}")
    return int(value)


def crash_hook() -> Callable[[], None]:
    """What a command calls after each database commit: with POINTS_LEDGER_CRASH_AFTER_BATCH=N (tests only)
    the Nth call kills the process by SIGKILL, between two committed batches."""
    crash_after = crash_batch()
    commits = 0

    def committed() -> None:
        nonlocal commits
        commits += 1
        if commits == crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    return committed
