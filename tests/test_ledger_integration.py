"""A large, messy stream on SQLite and on the real PostgreSQL server, checked against the oracle."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from consumers.jsonlines import ingest_lines
from devkit.streamgen import DEFAULT_START, generate, legacy_balances, opening_balance_lines
from ledger.application import LedgerApplication
from ledger.member import Source, member_uuid
from ledger.outcomes import Outcome
from ledger.program import Program
from ledger.storage.originators import stored_histories
from ledger.storage.store import parse_store_url
from projections import kpis, periods, queries, reports
from projections.log import read_log
from projections.runner import Projections
from schemas import Invalid, Message, parse_message
from tests.cli_helpers import ROOT
from tests.messages import CollectedLetters, purchase
from tests.oracle import Oracle

MESSAGES = 20_000
MEMBERS = 300
DAYS = 900
#: When the legacy balances were carried over, before the stream starts.
CUT_OVER = DEFAULT_START - timedelta(days=1)
QUARTER_ENDS = [DEFAULT_START + timedelta(days=days) for days in (90, 181, 365, 546, 730, 1000)]


@pytest.fixture(scope="module")
def stream() -> bytes:
    """A legacy migration (every member's opening balance at the cut-over, one repeated, a few members given a
    second one, which is refused), then the stream of every kind."""
    migration = opening_balance_lines(legacy_balances(MEMBERS, seed=9), CUT_OVER)
    second = [line.replace(b'"legacy-', b'"second-').replace(b'"migration-', b'"again-') for line in migration[:5]]
    lines = [*migration, migration[0], *second, *generate(MESSAGES, MEMBERS, DAYS, seed=2024)]
    return b"\n".join(lines) + b"\n"


@pytest.fixture(scope="module")
def oracle(stream: bytes) -> Oracle:
    oracle = Oracle()
    for line in stream.splitlines():
        parsed = parse_message(line, Program().acceptance())
        if not isinstance(parsed, Invalid):
            oracle.process(parsed)
    oracle.sweep(QUARTER_ENDS[-1])
    return oracle


def test_a_large_messy_stream_follows_the_rules_to_the_point(store_url: str, stream: bytes, oracle: Oracle) -> None:
    app = LedgerApplication(parse_store_url(store_url), Program())
    letters = CollectedLetters()
    tally = ingest_lines(app, io.BytesIO(stream), "stream.jsonl", letters, batch_size=500)

    lines = [line for line in stream.splitlines() if line.strip()]  # blank lines are skipped, not counted
    assert len(lines) < len(stream.splitlines())
    invalid = sum(1 for line in lines if isinstance(parse_message(line, Program().acceptance()), Invalid))
    assert tally.as_dict() == {
        "processed": len(lines),
        "recorded": oracle.counts["recorded"],
        "duplicates": oracle.counts["duplicates"],
        "rejected": oracle.counts["rejected"],
        "invalid": invalid,
        "failed": 0,
    }
    assert len(letters.letters) == invalid > 0
    assert min(oracle.counts.values()) > 100  # every outcome well represented

    app.sweep(QUARTER_ENDS[-1])
    for member_id in oracle.members:
        member = app.member(member_id)
        assert member is not None
        assert (member.balance, member.tier) == oracle.balance_and_tier(member_id), member_id

    tiers = {app.member(m).tier for m in oracle.members}  # type: ignore[union-attr]
    assert len(tiers) >= 3
    assert any(oracle.balance_and_tier(m, QUARTER_ENDS[0])[0] < 0 for m in oracle.members)  # debts at a quarter end

    for as_of in QUARTER_ENDS:
        liability = reports.liability(read_log(app), as_of, app.program)
        expected = oracle.liability(as_of)
        assert {key: liability[key] for key in expected} == expected, as_of
    for start, end in itertools.pairwise([CUT_OVER - timedelta(days=1), *QUARTER_ENDS]):
        result = reports.rollforward(read_log(app), start, end)
        assert {key: result[key] for key in oracle.flows(start, end)} == oracle.flows(start, end)
    migrated = sum(row.balance for row in legacy_balances(MEMBERS, seed=9))
    assert reports.rollforward(read_log(app), CUT_OVER - timedelta(days=1), QUARTER_ENDS[0])["migrated"] == migrated

    # The views serve the same answers, caught up on the whole log at once.
    with Projections(app).reading() as (sql, position):
        assert position == app.recorder.max_notification_id()
        served = {row["member_id"]: (row["balance"], row["tier"]) for row in queries.balances(sql, None)}
        assert served == {member_id: oracle.balance_and_tier(member_id) for member_id in oracle.members}
        for as_of in QUARTER_ENDS:
            liability = queries.liability(sql, as_of, app.program)
            expected = oracle.liability(as_of)
            assert {key: liability[key] for key in expected} == expected, as_of
            sample = sorted(oracle.members)[:: len(oracle.members) // 25]
            for member_id in sample:
                statement = queries.statement(sql, member_id, as_of)
                if statement is not None:
                    assert (statement["balance"], statement["tier"]) == oracle.balance_and_tier(member_id, as_of)
        for start, end in itertools.pairwise([CUT_OVER - timedelta(days=1), *QUARTER_ENDS]):
            result = queries.rollforward(sql, start, end)
            assert {key: result[key] for key in oracle.flows(start, end)} == oracle.flows(start, end)
        months = periods.split(QUARTER_ENDS[0], QUARTER_ENDS[-1], "month")
        monthly = kpis.kpi_rows(months, kpis.counts_from_views(sql, months), app.program)
        for (start, end), figures in zip(months, monthly, strict=True):
            queries.rollforward(sql, start, end)  # refuses a month that does not close
            assert {key: figures[key] for key in oracle.kpis(start, end)} == oracle.kpis(start, end), start

    # A second ingest of the same file changes nothing.
    events_before = app.recorder.max_notification_id()
    again = ingest_lines(app, io.BytesIO(stream), "stream.jsonl", CollectedLetters(), batch_size=1000)
    assert again.as_dict() == {
        "processed": len(lines), "recorded": 0, "duplicates": len(lines) - invalid, "rejected": 0, "invalid": invalid,
        "failed": 0,
    }  # fmt: skip
    assert app.recorder.max_notification_id() == events_before
    app.close()


def test_snapshots_load_the_same_member_as_a_full_replay(store_url: str) -> None:
    """A member with snapshots, loaded both ways a ledger loads one (the repository's, and the write side's two
    queries in `stored_histories`), holds the whole state of the replay of every event from the first, and of
    the member the writer kept in memory."""
    app = LedgerApplication(parse_store_url(store_url), Program())
    lines = [
        f'{{"type":"purchase","event_id":"e{i}","member_id":"LONG","occurred_at":"2024-01-01T00:00:{i % 60:02d}Z",'
        f'"transaction_id":"t{i}","amount":"3.00","currency":"USD"}}'.encode()
        for i in range(350)
    ]
    ingest_lines(app, io.BytesIO(b"\n".join(lines)), "long.jsonl", CollectedLetters(), batch_size=50)
    fresh = LedgerApplication(parse_store_url(store_url), Program())
    assert fresh.snapshots is not None
    replayed = fresh.member_events("LONG")
    snapshots = [snapshot.originator_version for snapshot in fresh.snapshots.get(replayed[0].originator_id)]
    assert snapshots and snapshots[-1] < len(replayed)  # loading takes a snapshot and the events after it
    full_replay: Any = None
    for event in replayed:  # every event from the first, no snapshot
        full_replay = event.mutate(full_replay)
    loaded = fresh.member("LONG")
    loaded_to_write = fresh._members_of(["LONG"])["LONG"]
    in_memory = app._members["LONG"]
    assert loaded is not None and loaded.version == len(replayed)
    assert loaded.balance == sum(event.balance_delta for event in replayed) > 1000
    assert vars(loaded) == vars(full_replay) == vars(loaded_to_write) == vars(in_memory)
    app.close()
    fresh.close()


def test_processes_opening_a_new_postgresql_ledger_at_once_all_succeed(postgres_url: str) -> None:
    """Consumers of one group start together on an empty database: table creation must not collide."""
    code = (
        "from ledger.application import LedgerApplication; from ledger.program import Program; "
        "from ledger.storage.store import parse_store_url; "
        f"LedgerApplication(parse_store_url({postgres_url!r}), Program()).close()"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(6)
    ]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, errors


def test_a_new_writer_finds_stored_members_among_many_unknown_ones(store_url: str) -> None:
    """Two queries per batch read the stored members and tell them from new ones; a stored member is never
    started again."""
    first = LedgerApplication(parse_store_url(store_url), Program())
    stored = [purchase("10.00", member=f"S{i}", when="2024-01-02") for i in range(3)]
    first.apply_batch([(message, {"file": "a", "line": n}) for n, message in enumerate(stored)])
    first.close()

    fresh = LedgerApplication(parse_store_url(store_url), Program())  # nothing cached
    many = [member_uuid(f"N{i}") for i in range(2_500)] + [member_uuid(f"S{i}") for i in range(3)]
    histories = stored_histories(fresh.backend, fresh.recorder, fresh.snapshots.recorder, many)  # type: ignore[union-attr]
    assert histories is not None and set(histories) == {member_uuid(f"S{i}") for i in range(3)}
    assert all(len(history.events) == 2 and history.snapshot is None for history in histories.values())
    assert stored_histories(fresh.backend, fresh.recorder, fresh.snapshots.recorder, []) == {}  # type: ignore[union-attr]

    more = [*stored, purchase("5.00", member="S0")]
    again: list[tuple[Message, Source]] = [(message, {"file": "b", "line": n}) for n, message in enumerate(more)]
    assert [d.outcome for d in fresh.apply_batch(again)] == [Outcome.DUPLICATE] * 3 + [Outcome.RECORDED]
    assert [fresh.member(f"S{i}").balance for i in range(3)] == [15, 10, 10]  # type: ignore[union-attr]
    fresh.close()
