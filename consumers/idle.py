"""When `consume --until-idle` stops: only time the consumer could have received records counts as idle.

A consumer without partitions (joining its group, or in a rebalance that waits
for a killed member's session to expire) receives nothing however much is
waiting. Counting that time as idle made a batch job stop half-way through a
topic. So the idle clock runs only while the consumer holds its partitions and
knows their positions; time without them is bounded separately, by the limit
plus a grace, so a consumer that never gets partitions still stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IdleClock:
    """Decides, from what the consume loop observes, whether it has been idle long enough to stop."""

    limit_s: float
    #: Extra seconds allowed without partitions (a group join can wait for dead members).
    grace_s: float
    started_at: float
    _settled: bool = field(default=False, init=False)
    _changed_at: float = field(init=False)
    _active_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._changed_at = self._active_at = self.started_at

    def observe(self, now: float, *, settled: bool, active: bool) -> None:
        """`settled`: holding partitions whose positions are known; `active`: records arrived, or
        partitions were (re)assigned, since the last observation."""
        if settled != self._settled:
            self._settled, self._changed_at = settled, now
        if active:
            self._active_at = now

    def expired(self, now: float) -> bool:
        if self._settled:
            return now - max(self._active_at, self._changed_at) >= self.limit_s
        return now - self._changed_at >= self.limit_s + self.grace_s
