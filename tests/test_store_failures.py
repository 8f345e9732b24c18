"""A store that fails while a batch is applied: the batch is tried again within bounds and never dead-lettered;
a failure that lasts stops the consumer with nothing of the batch recorded; a broken invariant stops the ledger.

The faults are injected at each step of a batch: deciding (reading the members, the ledger's time, the claim
index), writing the events and recording the position. A real server restart is in test_kafka_faults.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import MapperDeserialisationError, OperationalError

import ledger.application as application_module
import ledger.member as member_module
from consumers.deadletters import RULE_FAILED
from consumers.jsonlines import ingest_lines
from consumers.kafka_batch import upstream_name
from consumers.kafka_deadletters import HEADER_ERROR_CLASS, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION
from consumers.retry import RetryPolicy
from devkit.streamgen import generate
from ledger import rules
from ledger.application import LedgerApplication, is_rule_verdict
from ledger.invariants import LedgerInvariantError
from ledger.program import Program
from ledger.storage.ledger_time import LEDGER_TIME
from ledger.storage.store import UNAVAILABLE_ERRORS, parse_store_url
from points_ledger.errors import EXIT_STORE_UNAVAILABLE, _reported
from schemas import Invalid, parse_message
from tests.extremes import RECEIVED_AT
from tests.kafka_helpers import consume_all, create_topic, ledger_contents, produce_at, read_topic, unique
from tests.messages import CollectedLetters, purchase

PARTITIONS = 2
#: A failure that outlasts the library's own retries of an insert (10 tries), so the consumer's retry acts too.
LONGER_THAN_THE_LIBRARYS_RETRIES = 12
QUICK_RETRIES = RetryPolicy(attempts=5, first_delay_s=0.05, max_delay_s=0.2)


class Fault:
    """Raises `error()` the first `times` times it is called after `skip` calls; counts what it raised."""

    def __init__(self, times: int, error: Callable[[], Exception], skip: int = 0) -> None:
        self.times, self.error, self.skip, self.raised = times, error, skip, 0

    def __call__(self) -> None:
        if self.skip > 0:
            self.skip -= 1
        elif self.raised < self.times:
            self.raised += 1
            raise self.error()


def _library_error() -> Exception:
    return OperationalError("connection failed (injected)")


def _before(fault: Fault, method: Callable[..., Any], only: Callable[..., bool] = lambda *_, **__: True) -> Any:
    def faulty(*args: Any, **kwargs: Any) -> Any:
        if only(*args, **kwargs):
            fault()
        return method(*args, **kwargs)

    return faulty


class ConnectionCutError(Exception):
    """Not raised: tells `_cut_before` to cut the writing transaction's connection instead."""


def _cut_before(fault: Fault, method: Callable[..., Any]) -> Any:
    """`method(cursor, ...)` of a write, after the server has ended the transaction's connection, when `fault`
    says so: what a crash or a restart of the server does to a transaction in flight."""

    def cut(cursor: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            fault()
        except ConnectionCutError:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return method(cursor, *args, **kwargs)

    return cut


def inject(app: LedgerApplication, step: str, fault: Fault, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `step` of every batch of `app` go through `fault` first."""
    recorder: Any = app.recorder
    if step == "decide: load members":
        loader = application_module.stored_histories  # type: ignore[attr-defined]
        monkeypatch.setattr(application_module, "stored_histories", _before(fault, loader))
    elif step == "decide: ledger time":  # the review's experiment: it used to dead-letter a valid purchase
        recorder.max_tracking_id = _before(fault, recorder.max_tracking_id, lambda name, *_: name == LEDGER_TIME)
    elif step == "decide: claim index":
        app.claims.find = _before(fault, app.claims.find)  # type: ignore[method-assign]
    elif step == "write: events":  # inside the transaction, before the events' insert
        recorder._insert_stored_events = _cut_before(fault, recorder._insert_stored_events)
    elif step == "write: position":  # inside the transaction, the tracking record
        recorder._insert_tracking = _cut_before(fault, recorder._insert_tracking)
    else:
        raise ValueError(step)


#: Each step with the fault it meets: a read fails a few times (each try of the consumer's reads once); a write
#: fails longer than the library's own retries of an insert, so that the consumer tries the batch again too.
STEPS: dict[str, Callable[[], Fault]] = {
    "decide: load members": lambda: Fault(3, _library_error),  # few batches load: the first ones
    "decide: ledger time": lambda: Fault(3, _library_error),
    "decide: claim index": lambda: Fault(3, _library_error, skip=3),
    "write: events": lambda: Fault(LONGER_THAN_THE_LIBRARYS_RETRIES, ConnectionCutError, skip=3),
    "write: position": lambda: Fault(LONGER_THAN_THE_LIBRARYS_RETRIES, ConnectionCutError, skip=3),
}


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    return generate(400, 30, 120, seed=17)


def _dead_letters(bootstrap: str, topic: str) -> list[tuple[int, int, str]]:
    """(source partition, source offset, error class) of every dead letter of `topic`."""
    letters = []
    for record in read_topic(bootstrap, f"{topic}.dlq"):
        headers = {name: value.decode() for name, value in record.headers}
        letters.append((int(headers[HEADER_SOURCE_PARTITION]), int(headers[HEADER_SOURCE_OFFSET]),
                        headers[HEADER_ERROR_CLASS]))  # fmt: skip
    return letters


def _topic_with(bootstrap: str, lines: list[bytes]) -> tuple[str, dict[int, int]]:
    topic = unique("faults")
    create_topic(bootstrap, topic, PARTITIONS)
    create_topic(bootstrap, f"{topic}.dlq", 1)
    return topic, produce_at(bootstrap, topic, lines, RECEIVED_AT)


def test_a_store_failure_at_any_step_of_a_batch_is_retried_and_dead_letters_nothing_valid(
    kafka_bootstrap: str, stream: list[bytes], monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str,
) -> None:  # fmt: skip
    invalid = sum(isinstance(parse_message(line, Program().acceptance(), received_at=RECEIVED_AT), Invalid)
                  for line in stream)  # fmt: skip
    assert invalid > 0
    reference_url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'ledger.db'}"
    reference_topic, last = _topic_with(kafka_bootstrap, stream)
    reference = LedgerApplication(parse_store_url(reference_url), Program())
    try:
        expected_tally = consume_all(reference, kafka_bootstrap, reference_topic, last, batch_size=50)
    finally:
        reference.close()
    expected = ledger_contents(reference_url)

    for step, make_fault in STEPS.items():
        with monkeypatch.context() as patch:
            app = LedgerApplication(parse_store_url(postgres_url), Program())
            fault = make_fault()
            inject(app, step, fault, patch)
            topic, last = _topic_with(kafka_bootstrap, stream)
            try:
                tally = consume_all(app, kafka_bootstrap, topic, last, batch_size=50, store_retry=QUICK_RETRIES)
            finally:
                app.close()
        assert fault.raised > 0, step
        assert tally == expected_tally, step
        letters = _dead_letters(kafka_bootstrap, topic)
        assert len(letters) == len({letter[:2] for letter in letters}) == invalid, f"{step}: {letters}"
        assert RULE_FAILED not in {letter[2] for letter in letters}, step
        total, events, balances = ledger_contents(postgres_url)
        assert (total, balances) == expected[0::2], step
        assert {m: [e[:3] for e in es] for m, es in events.items()} == {
            m: [e[:3] for e in es] for m, es in expected[1].items()
        }, step
        _empty(postgres_url)


def _empty(store_url: str) -> None:
    """Drop the ledger's tables, for the next step's run on the same database."""
    with psycopg.connect(store_url) as db:
        tables = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        for (table,) in tables:
            db.execute(f'DROP TABLE "{table}" CASCADE')


def test_a_failure_that_lasts_stops_the_consumer_as_unavailable_with_nothing_of_the_batch_recorded(
    kafka_bootstrap: str, stream: list[bytes], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = LedgerApplication(parse_store_url(postgres_url), Program())
    fault = Fault(10**9, ConnectionCutError)
    inject(app, "write: position", fault, monkeypatch)
    topic, last = _topic_with(kafka_bootstrap, stream)
    try:
        with pytest.raises(UNAVAILABLE_ERRORS) as raised:
            consume_all(app, kafka_bootstrap, topic, last, batch_size=50, store_retry=QUICK_RETRIES)
        assert isinstance(raised.value, Exception)
        assert _reported(raised.value, lambda: "the store").exit_code == EXIT_STORE_UNAVAILABLE
        assert all(app.position(upstream_name(topic, p)) is None for p in range(PARTITIONS))
        assert app.recorder.max_notification_id() in (None, 0)
    finally:
        app.close()
    letters = _dead_letters(kafka_bootstrap, topic)
    assert len({letter[:2] for letter in letters}) == len(letters)  # tried 5 times, each dead letter written once


def test_a_store_error_is_never_a_rules_verdict() -> None:
    assert is_rule_verdict(ValueError("amount 1.005 has more than two decimals"))
    assert is_rule_verdict(OverflowError("date value out of range"))
    assert not is_rule_verdict(OperationalError("connection failed"))
    assert not is_rule_verdict(MapperDeserialisationError("cannot read stored event"))
    assert not is_rule_verdict(LedgerInvariantError("lot 3 cannot give 10 points"))
    assert not is_rule_verdict(KeyError("a bug"))


def test_the_ledger_time_failing_to_read_fails_the_batch_instead_of_its_message(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's experiment, without Kafka: the purchase is not reported as failed, nothing is recorded."""
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    try:
        fault = Fault(1, _library_error)
        inject(app, "decide: ledger time", fault, monkeypatch)
        app.forget()  # the ledger's time is read again for the next batch
        failed: list[Any] = []
        with pytest.raises(OperationalError):
            app.apply_batch([(purchase("10.00"), {"file": "x", "line": 1})], on_failures=failed.extend)
        assert failed == [] and app.member("M1") is None
        assert app.apply_batch([(purchase("10.00"), {"file": "x", "line": 1})], on_failures=failed.extend)
        assert failed == [] and app.member("M1") is not None
    finally:
        app.close()


@pytest.fixture
def a_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> Iterator[Decimal]:
    """Purchases of 66.60 break an invariant while they are decided."""
    broken = Decimal("66.60")

    def earned(amount: Decimal, multiplier: Decimal, program: Program) -> tuple[int, int]:
        if amount == broken:
            raise LedgerInvariantError("lot 1 cannot give 10 points (injected)")
        return rules.earned_points(amount, multiplier, program)

    monkeypatch.setattr(member_module, "earned_points", earned)
    yield broken


def test_a_broken_invariant_stops_the_ledger_and_is_no_dead_letter(
    a_broken_invariant: Decimal, sqlite_url: str
) -> None:
    lines = [
        b'{"type":"purchase","event_id":"e1","member_id":"A","occurred_at":"2024-01-01T00:00:00Z",'
        b'"transaction_id":"t1","amount":"10.00","currency":"USD"}',
        b'{"type":"purchase","event_id":"e2","member_id":"B","occurred_at":"2024-01-01T00:00:00Z",'
        b'"transaction_id":"t2","amount":"' + str(a_broken_invariant).encode() + b'","currency":"USD"}',
    ]
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    letters = CollectedLetters()
    try:
        with pytest.raises(LedgerInvariantError):
            ingest_lines(app, io.BytesIO(b"\n".join(lines)), "x.jsonl", letters, batch_size=10)
        assert letters.letters == [] and app.member("A") is None  # nothing of the batch, no dead letter
    finally:
        app.close()
