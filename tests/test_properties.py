"""Property tests of the ledger invariants over arbitrary message streams.

Where a property is about figures (a member's state, the liability, the roll-forward), the expected figures
come from the independent oracle (tests/oracle.py), not from the ledger's own folds; some streams give one
member more events than a snapshot interval, so that members are also loaded through snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import hypothesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.application import SNAPSHOT_EVENTS_MIN, LedgerApplication
from ledger.member import Member, Source
from ledger.outcomes import Outcome
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections import reports
from projections.log import read_log
from schemas import Message
from tests.messages import adjustment, at, enrollment, opening_balance, purchase, redemption, refund
from tests.oracle import YEAR, Oracle

MEMBERS = ["A", "B", "C"]
#: In a busy stream, member A's share of the messages: enough for more events than a snapshot interval.
BUSY_MEMBERS = ["A", "A", "A", "A", "A", "B", "C"]
#: Messages in a busy stream: with A's share, more than SNAPSHOT_EVENTS_MIN messages (each makes an event) for A.
BUSY_SIZE = (SNAPSHOT_EVENTS_MIN * 3 // 2, SNAPSHOT_EVENTS_MIN * 2)
START = at("2024-01-01")
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


KINDS = st.sampled_from(["purchase", "purchase", "refund", "redemption", "adjustment", "enrollment", "opening"])
PURCHASES = st.sampled_from(["0.50", "9.99", "120.00", "999.99", "4000.00", "16000.00"])
REFUNDS = st.sampled_from(["0.01", "5.00", "60.00", "500.00", "16000.00"])
REDEMPTIONS = st.sampled_from([1, 50, 500, 5000])
ADJUSTMENTS = st.sampled_from([-500, -20, 20, 700])
OPENINGS = st.sampled_from([-300, 0, 40, 2500])
OPENING_TIERS = st.sampled_from([None, "silver", "gold"])
OPENING_EXPIRIES = st.sampled_from([None, 30, 400])
#: Ids reused within a stream (transactions, refunds, ...): a few in a short stream, more in a busy one, which
#: then still records most of its purchases.
FEW_IDS = 6
MORE_IDS = 40


@st.composite
def streams(draw: st.DrawFn, max_size: int = 40, busy: bool = False) -> list[Message]:
    """Messages for a few members over ~3 years, with late times, redeliveries and reused ids; with `busy`, about
    one stream in five is long and mostly one member's, crossing that member's snapshot interval."""
    long = busy and draw(st.integers(0, 4)) == 4
    size = draw(st.integers(*BUSY_SIZE) if long else st.integers(1, max_size))
    if long:
        hypothesis.event("a busy stream")
    members = st.sampled_from(BUSY_MEMBERS if long else MEMBERS)
    distinct = MORE_IDS if long else FEW_IDS
    txns = st.integers(0, distinct - 1).map(lambda i: f"T{i}")
    ids = st.integers(0, distinct - 1).map(lambda i: f"X{i}")
    messages: list[Message] = []
    for _ in range(size):
        if messages and draw(st.integers(0, 9)) == 0:
            messages.append(messages[draw(st.integers(0, len(messages) - 1))])  # redelivery
            continue
        member = draw(members)
        when = (START + timedelta(days=draw(st.integers(0, 1100)))).isoformat()
        kind = draw(KINDS)
        if kind == "purchase":
            messages.append(purchase(draw(PURCHASES), member, when, txn=draw(txns)))
        elif kind == "refund":
            messages.append(refund(draw(txns), draw(REFUNDS), member, when, rid=draw(ids)))
        elif kind == "redemption":
            messages.append(redemption(draw(REDEMPTIONS), member, when, rid=draw(ids)))
        elif kind == "adjustment":
            messages.append(adjustment(draw(ADJUSTMENTS), member, when, aid=draw(ids)))
        elif kind == "opening":  # a legacy balance carried over: a lot, a debt or a tier (once per member)
            points, tier, expires = draw(OPENINGS), draw(OPENING_TIERS), draw(OPENING_EXPIRIES)
            extra = {} if tier is None else {"tier": tier}
            if expires is not None and points > 0:
                extra["expires_at"] = (at(when) + timedelta(days=expires)).isoformat()
            messages.append(opening_balance(points, member, when, oid=draw(ids), **extra))
        else:
            messages.append(enrollment(member, when))
    return messages


def busy_stream() -> list[Message]:
    """Member A's long run of every kind of message over ~3 years (more than twice a snapshot interval of events),
    beside a quieter B: a debt carried over and repaid, tiers rising then falling as purchases shrink, lots
    expiring, refunds, redemptions (some refused), adjustments and redeliveries."""
    messages: list[Message] = [opening_balance(-300, "A", START.isoformat(), oid="open-A", tier="silver")]
    for i in range(2 * SNAPSHOT_EVENTS_MIN + 40):
        when = (START + timedelta(days=4 * i)).isoformat()
        amounts = ["120.00", "999.99", "16000.00", "9.99"] if i < 40 else ["9.99", "120.00"]
        messages.append(purchase(amounts[i % len(amounts)], "A", when, txn=f"P{i}"))
        if i % 3 == 2:
            messages.append(refund(f"P{i - 1}", "500.00", "A", when, rid=f"R{i}"))
        if i % 7 == 6:
            messages.append(redemption(5000 if i % 2 else 500, "A", when, rid=f"D{i}"))
        if i % 11 == 10:
            messages.append(adjustment(-20 if i % 2 else 700, "A", when, aid=f"J{i}"))
        if i % 13 == 0:
            messages.append(purchase("60.00", "B", when, txn=f"B{i}"))
        if i % 17 == 16:
            messages.append(messages[-3])  # a redelivery
    return messages


#: One busy stream, run by every property that holds figures against the oracle, whatever hypothesis draws.
BUSY_STREAM = busy_stream()


def oracle_of(messages: list[Message]) -> Oracle:
    oracle = Oracle()
    for message in messages:
        oracle.process(message)
    return oracle


def rule_state(member: Member) -> dict[str, object]:
    """The ledger member's state in the oracle's terms (`Oracle.state`): lots without their ids, in spending
    order, and the tier credits that count at the member's last time."""
    return {
        "enrolled_at": member.enrolled_at,
        "last_effective_at": member.last_effective_at,
        "tier": member.tier,
        "last_qualified_at": member.last_qualified_at,
        "credits": member.credit_window.since(member.last_effective_at - YEAR),
        "lots": [(lot.points, lot.remaining, lot.expires_at) for lot in member.lots],
        "debt": member.debt,
        "balance": member.balance,
        "opening_balance_id": member.opening_balance_id,
    }


@contextmanager
def ledger() -> Iterator[LedgerApplication]:
    app = LedgerApplication(parse_store_url("memory://"), Program())
    try:
        yield app
    finally:
        app.close()


def apply_all(app: LedgerApplication, messages: list[Message], batch: int = 7) -> list[Outcome]:
    outcomes = []
    for start in range(0, len(messages), batch):
        part = messages[start : start + batch]
        chunk: list[tuple[Message, Source]] = [(m, {"file": "p", "line": start + i}) for i, m in enumerate(part)]
        outcomes += [d.outcome for d in app.apply_batch(chunk)]
    return outcomes


def ledger_state(member: Member | None) -> dict[str, object]:
    """A member's state without the wall-clock recording times (which differ run to run)."""
    assert member is not None
    return {key: value for key, value in vars(member).items() if key not in {"_created_on", "_modified_on"}}


def members_of(app: LedgerApplication) -> list[str]:
    return list(app.member_ids())


@SETTINGS
@given(streams())
def test_balance_is_the_sum_of_its_changes(messages: list[Message]) -> None:
    with ledger() as app:
        apply_all(app, messages)
        for member_id in members_of(app):
            events = app.member_events(member_id)
            member = app.member(member_id)
            assert member is not None
            assert member.balance == sum(event.balance_delta for event in events)
            assert member.balance == sum(lot.remaining for lot in member.lots) - member.debt


@SETTINGS
@given(streams())
def test_only_a_refund_or_a_debt_carried_over_can_make_a_balance_negative(messages: list[Message]) -> None:
    with ledger() as app:
        apply_all(app, messages)
        for member_id in members_of(app):
            balance = 0
            for event in app.member_events(member_id):
                after = balance + event.balance_delta
                if after < 0 and after < balance:
                    assert isinstance(event, Member.RefundApplied | Member.OpeningBalanceApplied), type(event).__name__
                balance = after


@SETTINGS
@given(streams())
def test_applying_a_stream_twice_equals_applying_it_once(messages: list[Message]) -> None:
    with ledger() as app:
        apply_all(app, messages)
        recorded = {m: app.member_events(m) for m in members_of(app)}
        assert set(apply_all(app, messages, batch=3)) == {Outcome.DUPLICATE}
        assert {m: app.member_events(m) for m in members_of(app)} == recorded


@SETTINGS
@given(streams(), st.integers(1, 12))
def test_batching_does_not_change_the_result(messages: list[Message], batch: int) -> None:
    with ledger() as one_by_one, ledger() as batched:
        outcomes = apply_all(one_by_one, messages, batch=1)
        assert apply_all(batched, messages, batch=batch) == outcomes
        for member_id in members_of(one_by_one):
            assert ledger_state(one_by_one.member(member_id)) == ledger_state(batched.member(member_id))


@SETTINGS
@given(streams(busy=True))
@example(BUSY_STREAM)
def test_a_member_loaded_through_its_snapshots_equals_the_one_in_memory_and_the_oracles(
    messages: list[Message],
) -> None:
    """The write side's member in memory (as it decided), the member loaded from the store (its latest snapshot
    and the events after it) and the oracle's reading of the same messages hold the same state."""
    with ledger() as app:
        outcomes = apply_all(app, messages)
        oracle = Oracle()
        assert outcomes == [oracle.process(message) for message in messages]
        assert app.snapshots is not None
        for member_id in members_of(app):
            in_memory = app._members.get(member_id)  # the write side's cache: what the next batch decides on
            loaded = app.member(member_id)  # from the store, through the latest snapshot
            assert in_memory is not None and loaded is not None and loaded is not in_memory
            snapshots = list(app.snapshots.get(loaded.id, desc=True, limit=1))
            if loaded.version >= SNAPSHOT_EVENTS_MIN:
                assert snapshots, f"{member_id} has {loaded.version} events and no snapshot"
                after = snapshots[0].originator_version < loaded.version
                hypothesis.event("loaded through a snapshot" + (" and events after it" if after else ""))
            assert vars(loaded) == vars(in_memory), member_id
            assert rule_state(loaded) == oracle.state(member_id), member_id


@SETTINGS
@given(streams(busy=True), st.integers(0, 1200), st.integers(0, 1200))
@example(BUSY_STREAM, 200, 1000)
def test_rollforward_of_any_period_is_the_oracles(messages: list[Message], a: int, b: int) -> None:
    """Opening and closing (every balance summed at each end) and each flow between them, as the oracle reads the
    stream: the roll-forward identity then holds with the right figures, not only with self-consistent ones."""
    start, end = START + timedelta(days=min(a, b)), START + timedelta(days=max(a, b))
    with ledger() as app:
        apply_all(app, messages)
        oracle = oracle_of(messages)
        result = reports.rollforward(read_log(app), start, end)
        expected = oracle.rollforward(start, end)
        assert {key: result[key] for key in expected} == expected


@SETTINGS
@given(streams(busy=True), st.integers(0, 1200))
@example(BUSY_STREAM, 600)
def test_liability_splits_balances_into_outstanding_and_negative_by_tier(messages: list[Message], day: int) -> None:
    """Members, positive balances and debts at a time, in all and per tier, as the oracle reads the stream."""
    as_of = START + timedelta(days=day)
    with ledger() as app:
        apply_all(app, messages)
        oracle = oracle_of(messages)
        result = reports.liability(read_log(app), as_of, app.program)
        assert {key: result[key] for key in ("members", "outstanding_points", "negative_points")} == oracle.liability(
            as_of
        )
        by_tier = oracle.liability_by_tier(as_of)
        assert {tier: {key: line[key] for key in by_tier[tier]} for tier, line in result["by_tier"].items()} == by_tier
