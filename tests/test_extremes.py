"""No message stops the ledger: valid-but-extreme input is applied, rejected or dead-lettered, never raised,
and a replay of the same input gives the same ledger."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.member as member_module
from consumers.deadletters import RULE_FAILED
from consumers.jsonlines import ingest_lines
from ledger import rules
from ledger.application import LedgerApplication
from ledger.claims import Kind
from ledger.limits import OutOfRangeError
from ledger.outcomes import Rejection
from ledger.program import Program
from ledger.rules import BALANCE_MAX
from ledger.storage.store import parse_store_url
from projections.log import read_log
from tests.cli_helpers import cli
from tests.extremes import PROGRAMS, RECEIVED_AT, streams
from tests.kafka_helpers import consume_all, consume_args, create_topic, positions, produce_at, read_topic, unique
from tests.messages import CollectedLetters, adjustment, encode, purchase, redemption, wire

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def ledger(program: Program) -> Iterator[LedgerApplication]:
    app = LedgerApplication(parse_store_url("memory://"), program)
    try:
        yield app
    finally:
        app.close()


def ingest(
    app: LedgerApplication, lines: Sequence[bytes], batch_size: int, letters: CollectedLetters
) -> dict[str, int]:
    data = b"".join(line + (b"\r\n" if i % 3 else b"\n\n") for i, line in enumerate(lines))  # CRLF and blanks
    tally = ingest_lines(app, io.BytesIO(data), "x.jsonl", letters, batch_size=batch_size, received_at=RECEIVED_AT)
    return tally.as_dict()


def contents(app: LedgerApplication) -> dict[str, list[tuple[Any, ...]]]:
    """Each member's events as recorded, without the wall-clock recording time."""
    return {member_id: [_event_row(e) for e in app.member_events(member_id)] for member_id in sorted(app.member_ids())}


def _event_row(event: Any) -> tuple[Any, ...]:
    return (type(event).__name__, event.originator_version, event.effective_at, event.balance_delta,
            repr(event.provenance))  # fmt: skip


@SETTINGS
@given(PROGRAMS, streams, st.integers(1, 12), st.integers(1, 12))
def test_extreme_messages_never_stop_the_ledger_and_a_replay_gives_the_same_ledger(
    program: Program, lines: list[bytes], batch: int, other_batch: int
) -> None:
    with ledger(program) as app, ledger(program) as replayed:
        letters = CollectedLetters()
        tally = ingest(app, lines, batch, letters)
        assert tally["processed"] == len(lines)
        assert tally["failed"] == 0  # no valid message makes a rule raise
        assert len(letters.letters) == tally["invalid"]
        assert all(letter.reason and letter.error_class for letter in letters.letters)

        for member_id in app.member_ids():
            member = app.member(member_id)
            assert member is not None
            events = app.member_events(member_id)
            assert member.balance == sum(event.balance_delta for event in events)
            assert -BALANCE_MAX <= member.balance <= BALANCE_MAX
            assert all(program.occurred_at_earliest <= e.effective_at <= program.occurred_at_latest for e in events)

        # A replay of the same input into a new ledger, in other batches, decides everything the same.
        replay_letters = CollectedLetters()
        assert ingest(replayed, lines, other_batch, replay_letters) == tally
        assert contents(replayed) == contents(app)
        assert replay_letters.seen() == letters.seen()

        # Redelivering everything changes nothing; a sweep at the edge of the range computes.
        before = app.recorder.max_notification_id()
        again = ingest(app, lines, batch, CollectedLetters())
        assert again["recorded"] == again["rejected"] == again["failed"] == 0
        assert app.recorder.max_notification_id() == before
        app.sweep(program.occurred_at_latest)
        assert sum(1 for _ in read_log(app)) >= sum(len(events) for events in contents(replayed).values())


def _purchase(member: str, amount: str, event_id: str) -> bytes:
    return encode(wire("purchase", member, "2024-03-01", event_id=event_id, transaction_id=f"t-{event_id}",
                       amount=amount, currency="USD"))  # fmt: skip


FAILING_AMOUNT = Decimal("13.13")


@pytest.fixture
def a_rule_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule raising for one amount: what an arithmetic edge we did not find would do."""
    earned_points = rules.earned_points

    def failing(amount: Decimal, multiplier: Decimal, program: Program) -> tuple[int, int]:
        if amount == FAILING_AMOUNT:
            raise OverflowError("date value out of range")
        return earned_points(amount, multiplier, program)

    monkeypatch.setattr(member_module, "earned_points", failing)


def test_a_message_a_rule_fails_on_is_dead_lettered_and_the_rest_of_its_batch_is_applied(
    a_rule_that_fails: None, tmp_path: Any
) -> None:
    lines = [
        _purchase("A", "10.00", "e1"),
        _purchase("B", "5.00", "e2"),
        _purchase("A", str(FAILING_AMOUNT), "e3"),
        encode(wire("redemption", "A", "2024-03-02", event_id="e4", redemption_id="r1", points=4)),
        _purchase("A", "1.00", "e5"),
    ]
    store = parse_store_url(f"sqlite:///{tmp_path / 'l.db'}")
    app, without = LedgerApplication(store, Program()), LedgerApplication(parse_store_url("memory://"), Program())
    try:
        letters = CollectedLetters()
        tally = ingest_lines(app, io.BytesIO(b"\n".join(lines)), "x.jsonl", letters, batch_size=10)
        assert tally.as_dict() == {"processed": 5, "recorded": 4, "duplicates": 0, "rejected": 0, "invalid": 0,
                                   "failed": 1}  # fmt: skip
        assert letters.seen() == [(3, RULE_FAILED, "OverflowError: date value out of range")]
        assert letters.letters[0].raw == lines[2]

        # The failing member's other messages, before and after it in the batch, count as if it never came.
        ingest_lines(
            without, io.BytesIO(b"\n".join(lines[:2] + lines[3:])), "x.jsonl", CollectedLetters(), batch_size=10
        )
        for member_id in ("A", "B"):
            kept, expected = app.member(member_id), without.member(member_id)
            assert kept is not None and expected is not None
            assert (kept.balance, kept.tier) == (expected.balance, expected.tier)
        applied = {event_id: app.claimed("A", Kind.EVENT, event_id) for event_id in ("e1", "e3", "e4", "e5")}
        assert applied == {"e1": True, "e3": False, "e4": True, "e5": True}
        assert app.member("A").balance == 10 - 4 + 1  # type: ignore[union-attr]
        # Not being recorded, the failed message's event_id is free: a fixed ledger applies its redelivery.
    finally:
        app.close()
        without.close()


def test_without_a_place_for_failures_the_error_is_raised_and_nothing_recorded(a_rule_that_fails: None) -> None:
    with ledger(Program()) as app:
        with pytest.raises(OverflowError):
            app.apply_batch([(purchase("1.00", "A"), {"file": "x", "line": 1}),
                             (purchase(str(FAILING_AMOUNT), "A"), {"file": "x", "line": 2})])  # fmt: skip
        assert app.member("A") is None


def test_a_sweep_outside_the_programs_range_is_refused(tmp_path: Any) -> None:
    with ledger(Program()) as app, pytest.raises(OutOfRangeError):
        app.sweep(Program().occurred_at_latest.replace(year=9999))
    store = f"sqlite:///{tmp_path / 'l.db'}"
    cli("ingest", "-", store=store, stdin=encode(wire("enrollment", "A")) + b"\n")
    result = cli("sweep", "--as-of", "9999-12-31T00:00:00Z", store=store)
    assert result.returncode == 2 and "program's range" in result.stderr and "Traceback" not in result.stderr


# ---- the same through Kafka: consume, and a replay of the topic ---------------------------------------


def without_provenance(contents_: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {member: [event[:4] for event in events] for member, events in contents_.items()}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams)
def test_extreme_messages_through_consume_equal_ingest_and_a_replay_of_the_topic(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]
) -> None:
    topic = unique("extreme")
    create_topic(kafka_bootstrap, topic, 2)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    last = produce_at(kafka_bootstrap, topic, lines, RECEIVED_AT)
    folder = tmp_path_factory.mktemp("extreme")
    consumed, replayed = (LedgerApplication(parse_store_url(f"sqlite:///{folder / name}"), Program())
                          for name in ("consumed.db", "replayed.db"))  # fmt: skip
    try:
        tally = consume_all(consumed, kafka_bootstrap, topic, last)
        with ledger(Program()) as ingested:
            assert ingest(ingested, lines, 500, CollectedLetters()) == tally
            assert without_provenance(contents(consumed)) == without_provenance(contents(ingested))
        assert consume_all(replayed, kafka_bootstrap, topic, last) == tally
        assert contents(replayed) == contents(consumed)
        assert len(read_topic(kafka_bootstrap, f"{topic}.dlq")) == 2 * tally["invalid"]
    finally:
        consumed.close()
        replayed.close()


def test_the_messages_that_stopped_consume_are_dead_lettered_and_the_rest_of_the_batch_applied(
    kafka_bootstrap: str, sqlite_url: str
) -> None:
    topic = unique("edges")
    create_topic(kafka_bootstrap, topic, 1)
    valid = [_purchase("OK1", "10.00", "ok1"), _purchase("OK2", "20.00", "ok2")]
    edges = {
        "OutOfRange": _purchase("FAR", "10.00", "far"),
        "FromTheFuture": _purchase("CLOCK", "10.00", "clock"),
        "ValidationError": _purchase("TINY", "1E-999999999", "tiny"),
        "TooLarge": b'{"type": "purchase", "member_id": "BIG", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}',
    }
    edges["OutOfRange"] = edges["OutOfRange"].replace(b"2024-03-01T00:00:00+00:00", b"9999-12-30T00:00:00Z")
    edges["FromTheFuture"] = edges["FromTheFuture"].replace(b"2024-03-01T00:00:00+00:00", b"2099-01-01T00:00:00Z")
    bom = b"\xef\xbb\xbf" + _purchase("BOM", "5.00", "bom")
    last = produce_at(kafka_bootstrap, topic, [valid[0], *edges.values(), bom, valid[1]], datetime.now(UTC))
    result = cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up"), store=sqlite_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"processed": 7, "recorded": 3, "duplicates": 0, "rejected": 0,
                                         "invalid": 4, "failed": 0}  # fmt: skip
    letters = read_topic(kafka_bootstrap, f"{topic}.dlq")
    classes = {dict(letter.headers)["error_class"].decode() for letter in letters}
    assert classes == set(edges)
    huge = next(letter for letter in letters if dict(letter.headers)["error_class"] == b"TooLarge")
    assert len(huge.value) == 2 * 1024 * 1024 and b"value of 5242" in dict(huge.headers)["truncated"]
    assert positions(sqlite_url, topic, 1) == last
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    try:
        assert {m: app.member(m).balance for m in ("OK1", "OK2", "BOM")} == {"OK1": 10, "OK2": 20, "BOM": 5}  # type: ignore[union-attr]
    finally:
        app.close()


def test_a_balance_stops_at_the_ledgers_limit() -> None:
    """A thousand adjustments of a billion points reach the trillion; the next purchase or adjustment is refused."""
    with ledger(Program()) as app:
        source: dict[str, str | int] = {"file": "x", "line": 1}
        grants = [(adjustment(10**9, "RICH", "2024-01-01", aid=f"a{i}"), source) for i in range(1_000)]
        for start in range(0, len(grants), 500):
            app.apply_batch(grants[start : start + 500])
        member = app.member("RICH")
        assert member is not None and member.balance == BALANCE_MAX
        assert (
            app.apply(adjustment(1, "RICH", "2024-01-02", aid="one-more"), source).rejection is Rejection.LIMIT_EXCEEDED
        )
        assert app.apply(purchase("1.00", "RICH", "2024-01-02"), source).rejection is Rejection.LIMIT_EXCEEDED
        assert app.apply(redemption(5, "RICH", "2024-01-02"), source).rejection is None  # spending is never limited
        assert app.apply(purchase("5.00", "RICH", "2024-01-03"), source).rejection is None  # room again for 5
        assert app.member("RICH").balance == BALANCE_MAX  # type: ignore[union-attr]
