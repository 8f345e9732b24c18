"""`projections follow`: keep every view current until asked to stop.

On PostgreSQL the library's LISTEN/NOTIFY subscription wakes the loop as soon as events are recorded; the
loop still re-polls every `poll_interval_s`, because a NOTIFY can be lost (eventsourcing issue #305) and the
subscription starts pulling before it LISTENs. On SQLite, where the library has no subscription, it polls.
Either way the work is the same batched catch-up (`Projections.catch_up`), so a wake-up that finds nothing
costs one position query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from eventsourcing.persistence import PersistenceError

from projections.building import OnBatch
from projections.defaults import POLL_INTERVAL_S_MAX, POLL_INTERVAL_S_MIN
from projections.runner import Projections


@dataclass(slots=True)
class FollowTally:
    events: int = 0
    batches: int = 0
    position: int = 0
    woken_by_notify: int = 0


@contextmanager
def notifications_wake(projections: Projections, wake: threading.Event) -> Iterator[bool]:
    """Set `wake` whenever the log records something (PostgreSQL); yields whether a subscription runs."""
    try:
        subscription = projections.app.recorder.subscribe(gt=projections.db.head())
    except NotImplementedError:  # SQLite: no live subscription in the library
        yield False
        return

    def drain() -> None:
        try:
            for _ in subscription:
                wake.set()
        except PersistenceError:
            wake.set()  # the loop's own polling carries on; a lost subscription only costs latency

    thread = threading.Thread(target=drain, name="view-notify", daemon=True)
    with subscription:
        thread.start()
        try:
            yield True
        finally:
            subscription.stop()
    thread.join(timeout=10)


def follow(
    projections: Projections,
    stop: threading.Event,
    *,
    poll_interval_s: float,
    until_idle_s: float | None = None,
    on_batch: OnBatch | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FollowTally:
    """Catch every view up, again on each wake-up or poll, until `stop` is set (or idle for `until_idle_s`)."""
    tally = FollowTally()

    def counted(applied: int, position: int) -> None:
        tally.events += applied
        tally.batches += 1
        tally.position = position
        if on_batch is not None:
            on_batch(applied, position)

    def step() -> bool:
        before = tally.events
        tally.position = max(tally.position, projections.catch_up(on_batch=counted))
        return tally.events > before

    tally.woken_by_notify = run_on_wake(
        projections, stop, step, poll_interval_s=poll_interval_s, until_idle_s=until_idle_s, clock=clock
    )
    return tally


def run_on_wake(
    projections: Projections,
    stop: threading.Event,
    step: Callable[[], bool],
    *,
    poll_interval_s: float,
    until_idle_s: float | None,
    clock: Callable[[], float],
) -> int:
    """Run `step` (True when it did something), again on each wake-up by the log or poll, until `stop` is set
    or nothing was done for `until_idle_s`; how many times a notification woke it."""
    if not POLL_INTERVAL_S_MIN <= poll_interval_s <= POLL_INTERVAL_S_MAX:
        raise ValueError(f"poll interval must be {POLL_INTERVAL_S_MIN}..{POLL_INTERVAL_S_MAX} s")
    wake = threading.Event()
    woken = 0
    with notifications_wake(projections, wake):
        idle_since = clock()
        while not stop.is_set():
            if step():
                idle_since = clock()
            elif until_idle_s is not None and clock() - idle_since >= until_idle_s:
                break
            if wait_for_wake(wake, stop, poll_interval_s, clock):
                woken += 1
            wake.clear()
    return woken


#: Longest a stop request waits for the loop to notice it (seconds).
STOP_CHECK_S = 0.2


def wait_for_wake(wake: threading.Event, stop: threading.Event, seconds: float, clock: Callable[[], float]) -> bool:
    """Wait up to `seconds` for a wake-up, noticing a stop request within STOP_CHECK_S; True if woken."""
    deadline = clock() + seconds
    while not stop.is_set():
        left = deadline - clock()
        if left <= 0:
            return False
        if wake.wait(min(left, STOP_CHECK_S)):
            return True
    return False
