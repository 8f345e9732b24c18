"""The position log: every upstream position the ledger records (a Kafka partition's, the ledger's time) is also
appended, chained, in the same transaction; `verify` catches a tracking row edited by hand, the write side
refuses to record a position it already passed, and an older ledger adopts the positions it had."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.chain import Chain
from ledger.storage.position_log import POSITION_LOG_TABLE, PositionLogError, PositionRecord
from ledger.storage.positions import Position
from ledger.storage.store import parse_store_url
from tests.cli_helpers import cli
from tests.kafka_helpers import consume_args, create_topic, positions, produce, unique
from tests.messages import purchase
from tests.tampering import database, run, tracking_table, verify_lines

UPSTREAM = "kafka:loyalty.transactions:0"


@pytest.fixture
def app(store_url: str) -> Iterator[LedgerApplication]:
    ledger = LedgerApplication(parse_store_url(store_url), Program())
    yield ledger
    ledger.close()


def batch(*amounts: str) -> list[tuple[Any, dict[str, Any]]]:
    source = {"topic": "loyalty.transactions", "partition": 0}
    return [(purchase(amount, "M1", "2024-03-01"), source) for amount in amounts]


def records(store_url: str) -> list[tuple[Any, ...]]:
    columns = "upstream, position, previous, kind, chain"
    statement = f"SELECT {columns} FROM {POSITION_LOG_TABLE} ORDER BY upstream, position"
    with database(store_url) as connection:
        return [tuple(row) for row in run(connection, store_url, statement)]


def set_tracking(store_url: str, upstream: str, position: int) -> None:
    with database(store_url) as connection:
        run(connection, store_url, f"UPDATE {tracking_table(store_url)} SET notification_id = ? "
            "WHERE application_name = ?", (position, upstream))  # fmt: skip


def recorded_ledger(app: LedgerApplication) -> None:
    """Three Kafka batches (the last of duplicates only: no event, a position all the same) and a sweep's mark."""
    first = batch("10.00", "20.00")
    app.apply_batch(first, Position(UPSTREAM, 4, None))
    app.apply_batch(batch("30.00"), Position(UPSTREAM, 9, 4))
    app.apply_batch(first, Position(UPSTREAM, 12, 9))  # redelivered: duplicates
    app.advance_ledger_time(datetime(2024, 6, 1, tzinfo=UTC))


def test_every_position_is_recorded_and_a_tracking_row_edited_by_hand_is_caught(
    store_url: str, app: LedgerApplication
) -> None:
    recorded_ledger(app)
    at = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)
    assert records(store_url) == [
        (UPSTREAM, 4, None, "batch", "sha256"), (UPSTREAM, 9, 4, "batch", "sha256"),
        (UPSTREAM, 12, 9, "batch", "sha256"), ("ledger-time", at, None, "batch", "sha256"),
    ]  # fmt: skip
    assert verify_lines(store_url)[0] == 0

    set_tracking(store_url, UPSTREAM, 30)  # the consumer would skip offsets 13..30 without a trace
    status, lines = verify_lines(store_url)
    assert status == 1
    assert lines[:-1] == [{"view": "positions", "where": UPSTREAM,
                           "detail": "the tracking table says 30, but the last recorded batch ends at 12"}]  # fmt: skip

    set_tracking(store_url, UPSTREAM, 9)  # back: the consumer would read 10..12 again
    with pytest.raises(PositionLogError, match="position 12 is not past 12"):
        app.apply_batch(batch("40.00"), Position(UPSTREAM, 12, 9))
    assert records(store_url)[-2][1] == 12  # nothing of the batch recorded
    assert verify_lines(store_url)[0] == 1


def test_a_record_forged_to_match_an_edited_tracking_row_is_caught_with_the_key(
    tmp_path: Path, sqlite_url: str
) -> None:
    keyed = Chain(b"k" * 32)
    ledger = LedgerApplication(replace(parse_store_url(sqlite_url), chain=keyed), Program())
    try:
        recorded_ledger(ledger)
    finally:
        ledger.close()
    key = tmp_path / "chain.key"
    key.write_text("k" * 32)
    env = {"LEDGER_CHAIN_KEY_FILE": str(key)}
    assert verify_lines(sqlite_url, env=env)[0] == 0
    with database(sqlite_url) as connection:  # the forger's best: a record linked with SHA-256, marked keyed
        [(last_hash,)] = run(connection, sqlite_url, f"SELECT hash FROM {POSITION_LOG_TABLE} WHERE upstream = ? "
                                                     "AND position = 12", (UPSTREAM,))  # fmt: skip
        forged = PositionRecord(UPSTREAM, 30, 12, 1, "batch", keyed.mode)
        run(connection, sqlite_url, f"INSERT INTO {POSITION_LOG_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
            (UPSTREAM, 30, 12, 1, "batch", keyed.mode, forged.link(last_hash, Chain())))  # fmt: skip
    set_tracking(sqlite_url, UPSTREAM, 30)
    assert verify_lines(sqlite_url)[0] == 1  # unkeyed: told the log is keyed, cannot check it
    status, lines = verify_lines(sqlite_url, env=env)
    assert status == 1
    assert lines[:-1] == [{"view": "positions", "where": UPSTREAM,
                           "detail": "the record at 30 does not hash as it was written"}]  # fmt: skip


def test_an_older_ledger_adopts_the_positions_it_had(store_url: str) -> None:
    ledger = LedgerApplication(parse_store_url(store_url), Program())
    try:
        recorded_ledger(ledger)
    finally:
        ledger.close()
    with database(store_url) as connection:  # as a ledger written before the position log existed
        run(connection, store_url, f"DROP TABLE {POSITION_LOG_TABLE}")
    reopened = LedgerApplication(parse_store_url(store_url), Program())
    try:
        adopted = [(upstream, position, kind) for upstream, position, _, kind, _ in records(store_url)]
        assert (UPSTREAM, 12, "adopted") in adopted and ("ledger-time", adopted[-1][1], "adopted") in adopted
        reopened.apply_batch(batch("50.00"), Position(UPSTREAM, 15, 12))
        assert records(store_url)[1][:4] == (UPSTREAM, 15, 12, "batch")
    finally:
        reopened.close()
    assert verify_lines(store_url)[0] == 0
    set_tracking(store_url, UPSTREAM, 20)
    assert verify_lines(store_url)[0] == 1


def test_consume_records_each_batch_and_verify_holds_it_to_the_tracking_rows(
    postgres_url: str, kafka_bootstrap: str
) -> None:
    topic = unique("positions")
    create_topic(kafka_bootstrap, topic, 2)
    produce(kafka_bootstrap, topic, generate(600, 30, 200, seed=41))
    consumed = cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--batch-size", "50", "--until-caught-up"),
                   store=postgres_url)  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    last = positions(postgres_url, topic, 2)
    logged = [row for row in records(postgres_url) if row[0].startswith(f"kafka:{topic}:")]
    for partition, offset in last.items():
        mine = [row[1] for row in logged if row[0] == f"kafka:{topic}:{partition}"]
        assert len(mine) > 1 and mine[-1] == offset  # batches of at most 50, each recorded, the last at the head
    assert verify_lines(postgres_url)[0] == 0
    set_tracking(postgres_url, f"kafka:{topic}:1", (last[1] or 0) + 100)
    status, lines = verify_lines(postgres_url)
    assert status == 1 and [line["where"] for line in lines[:-1]] == [f"kafka:{topic}:1"]
