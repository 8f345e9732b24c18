"""Bounded retries with exponential backoff for an unavailable store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ledger.storage.store import UNAVAILABLE_ERRORS

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all, waiting `first_delay_s`, doubling up to `max_delay_s`, between them.

    On PostgreSQL each try already includes the eventsourcing library's own retries (10, 0.2 s apart,
    each waiting up to the connect timeout), so a down server takes ~50 s per try with the defaults.
    """

    attempts: int = 3
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay_s < 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("retry policy needs attempts >= 1 and 0 <= first delay <= max delay")

    def delays(self) -> list[float]:
        return [min(self.first_delay_s * 2**n, self.max_delay_s) for n in range(self.attempts - 1)]


def call_store(
    operation: Callable[[], T],
    policy: RetryPolicy,
    warn: Callable[[str], None],
    interrupt: threading.Event | None = None,
) -> T:
    """Run `operation`; if the store is unavailable, wait and retry, then give up by re-raising."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return operation()
        except UNAVAILABLE_ERRORS as error:
            if attempt == len(delays) or (interrupt is not None and interrupt.is_set()):
                raise
            reason = (str(error).strip() or type(error).__name__).splitlines()[0]
            warn(f"store unavailable ({reason}); retry {attempt + 1}/{len(delays)} in {delays[attempt]:g} s")
            if interrupt is not None:
                interrupt.wait(delays[attempt])
            else:
                threading.Event().wait(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover
