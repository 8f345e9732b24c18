"""`consume --until-idle`: time without partitions (a join, a rebalance) is not idle time."""

from __future__ import annotations

from consumers.idle import IdleClock

LIMIT, GRACE = 4.0, 60.0


def clock() -> IdleClock:
    return IdleClock(LIMIT, GRACE, started_at=100.0)


def test_stops_after_the_limit_without_records_while_holding_partitions() -> None:
    idle = clock()
    idle.observe(101.0, settled=True, active=True)
    idle.observe(104.9, settled=True, active=False)
    assert not idle.expired(104.9)
    idle.observe(105.0, settled=True, active=False)
    assert idle.expired(105.0)


def test_records_keep_it_going() -> None:
    idle = clock()
    for second in range(101, 200):
        idle.observe(float(second), settled=True, active=True)
        assert not idle.expired(float(second))


def test_a_rebalance_longer_than_the_limit_does_not_stop_it_and_the_clock_restarts_after() -> None:
    """The kill -9 test's final run stopped half-way: a dead member's session expiring mid-stream."""
    idle = clock()
    idle.observe(101.0, settled=True, active=True)
    idle.observe(102.0, settled=False, active=False)  # partitions revoked: the group rebalances
    idle.observe(102.0 + LIMIT + GRACE - 1, settled=False, active=False)
    assert not idle.expired(102.0 + LIMIT + GRACE - 1)
    back = 102.0 + LIMIT + GRACE - 0.5
    idle.observe(back, settled=True, active=False)  # positions read, partitions resumed
    assert not idle.expired(back + LIMIT - 0.1)
    assert idle.expired(back + LIMIT)


def test_a_consumer_that_never_gets_partitions_stops_after_the_limit_and_the_grace() -> None:
    idle = clock()
    idle.observe(100.0 + LIMIT + GRACE - 0.1, settled=False, active=False)
    assert not idle.expired(100.0 + LIMIT + GRACE - 0.1)
    assert idle.expired(100.0 + LIMIT + GRACE)


def test_a_reassignment_counts_as_activity() -> None:
    idle = clock()
    idle.observe(101.0, settled=True, active=True)
    idle.observe(104.0, settled=True, active=True)  # revoked and given back within one poll
    assert not idle.expired(107.9)
    assert idle.expired(108.0)
