"""Property tests of the ledger invariants over arbitrary message streams."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.member import Member, Source
from ledger.outcomes import Outcome
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections import reports, statements
from projections.figures import figures_as_of
from projections.log import read_log
from schemas import Message
from tests.messages import adjustment, at, enrollment, opening_balance, purchase, redemption, refund

MEMBERS = ["A", "B", "C"]
START = at("2024-01-01")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw: st.DrawFn, max_size: int = 40) -> list[Message]:
    """Messages for a few members over ~3 years, with late times, redeliveries and reused ids."""
    size = draw(st.integers(1, max_size))
    messages: list[Message] = []
    txns = [f"T{i}" for i in range(6)]
    ids = [f"X{i}" for i in range(6)]
    for _ in range(size):
        if messages and draw(st.integers(0, 9)) == 0:
            messages.append(draw(st.sampled_from(messages)))  # redelivery
            continue
        member = draw(st.sampled_from(MEMBERS))
        when = (START + timedelta(days=draw(st.integers(0, 1100)))).isoformat()
        kind = draw(
            st.sampled_from(["purchase", "purchase", "refund", "redemption", "adjustment", "enrollment", "opening"])
        )
        if kind == "purchase":
            amount = draw(st.sampled_from(["0.50", "9.99", "120.00", "999.99", "4000.00", "16000.00"]))
            messages.append(purchase(amount, member, when, txn=draw(st.sampled_from(txns))))
        elif kind == "refund":
            amount = draw(st.sampled_from(["0.01", "5.00", "60.00", "500.00", "16000.00"]))
            messages.append(refund(draw(st.sampled_from(txns)), amount, member, when, rid=draw(st.sampled_from(ids))))
        elif kind == "redemption":
            points = draw(st.sampled_from([1, 50, 500, 5000]))
            messages.append(redemption(points, member, when, rid=draw(st.sampled_from(ids))))
        elif kind == "adjustment":
            points = draw(st.sampled_from([-500, -20, 20, 700]))
            messages.append(adjustment(points, member, when, aid=draw(st.sampled_from(ids))))
        elif kind == "opening":  # a legacy balance carried over: a lot, a debt or a tier (once per member)
            points = draw(st.sampled_from([-300, 0, 40, 2500]))
            tier = draw(st.sampled_from([None, "silver", "gold"]))
            expires = draw(st.sampled_from([None, 30, 400]))
            extra = {} if tier is None else {"tier": tier}
            if expires is not None and points > 0:
                extra["expires_at"] = (at(when) + timedelta(days=expires)).isoformat()
            messages.append(opening_balance(points, member, when, oid=draw(st.sampled_from(ids)), **extra))
        else:
            messages.append(enrollment(member, when))
    return messages


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
@given(streams())
def test_rebuilding_a_member_from_its_events_equals_its_live_state(messages: list[Message]) -> None:
    with ledger() as app:
        apply_all(app, messages)
        for member_id in members_of(app):
            live = app.member(member_id)
            rebuilt = statements.replay(app.member_events(member_id))
            assert rebuilt is not None and live is not None
            assert rebuilt.__dict__ == live.__dict__


@SETTINGS
@given(streams(), st.integers(0, 1200), st.integers(0, 1200))
def test_rollforward_identity_holds_for_any_period(messages: list[Message], a: int, b: int) -> None:
    start, end = START + timedelta(days=min(a, b)), START + timedelta(days=max(a, b))
    with ledger() as app:
        apply_all(app, messages)
        result = reports.rollforward(read_log(app), start, end)

        # Opening and closing from members replayed to each end, independently of the fold.
        def total(as_of: object) -> int:
            replayed = (statements.replay(app.member_events(m), as_of) for m in members_of(app))  # type: ignore[arg-type]
            return sum(member.balance for member in replayed if member is not None)

        assert (result["opening"], result["closing"]) == (total(start), total(end))
        flows = result["issued"] + result["migrated"] + result["adjusted_in"] - result["adjusted_out"]
        flows -= result["redeemed"] + result["expired"] + result["clawed_back"]
        assert result["opening"] + flows == result["closing"]


@SETTINGS
@given(streams(), st.integers(0, 1200))
def test_liability_splits_balances_into_outstanding_and_negative(messages: list[Message], day: int) -> None:
    as_of = START + timedelta(days=day)
    with ledger() as app:
        apply_all(app, messages)
        figures = figures_as_of(read_log(app), as_of)
        result = reports.liability(read_log(app), as_of, app.program)
        balances = [member.balance for member in figures.members.values()]
        assert result["outstanding_points"] - result["negative_points"] == sum(balances)
        assert result["members"] == len(balances)
        assert sum(line["outstanding_points"] for line in result["by_tier"].values()) == result["outstanding_points"]
