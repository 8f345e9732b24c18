"""Deciding the next batch while the last one is written (ledger/pipeline.py) gives what batch-after-batch
gives, also when a write fails or a rule fails while a write is in flight."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from consumers.jsonlines import ingest_lines
from devkit.streamgen import generate
from ledger.application import LedgerApplication, PreparedWrite
from ledger.outcomes import Tally
from ledger.program import Program
from ledger.storage.store import parse_store_url
from schemas import Invalid, parse_message
from tests.messages import CollectedLetters
from tests.test_extremes import FAILING_AMOUNT, _purchase, a_rule_that_fails  # noqa: F401 (a fixture)

MESSAGES = 600


def _ledger(path: Path) -> LedgerApplication:
    return LedgerApplication(parse_store_url(f"sqlite:///{path}"), Program())


def _state(app: LedgerApplication) -> dict[str, Any]:
    """Every member's recorded event kinds, balance and tier."""
    state: dict[str, Any] = {}
    for member_id in app.member_ids():
        member = app.member(member_id)
        assert member is not None
        kinds = [type(event).__name__ for event in app.member_events(member_id)]
        state[member_id] = (kinds, member.balance, member.tier)
    return state


def _ingest(app: LedgerApplication, lines: list[bytes], batch_size: int = 25) -> Tally:
    return ingest_lines(app, io.BytesIO(b"\n".join(lines)), "s.jsonl", CollectedLetters(), batch_size=batch_size)


def _one_at_a_time(lines: list[bytes], path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The reference: the same lines, one transaction each."""
    app = _ledger(path)
    tally = _ingest(app, lines, batch_size=1)
    state = _state(app)
    app.close()
    return state, tally.as_dict()


def _lines_of_batches(lines: list[bytes], batches: int, batch_size: int = 25) -> list[bytes]:
    """The lines up to the end of the first `batches` whole batches of `_ingest` (invalid lines join no batch)."""
    acceptance, valid = Program().acceptance(), 0
    for index, line in enumerate(lines):
        valid += not isinstance(parse_message(line, acceptance), Invalid)
        if valid == batches * batch_size:
            return lines[: index + 1]
    raise AssertionError(f"fewer than {batches} batches of {batch_size} valid lines")


def _stream_and_reference(tmp_path: Path, seed: int) -> tuple[list[bytes], dict[str, Any], dict[str, int]]:
    """A generated stream, and what applying it one message per transaction gives (state, tally)."""
    lines = generate(MESSAGES, 20, 200, seed=seed)
    return lines, *_one_at_a_time(lines, tmp_path / "reference.db")


def _failing_writes(
    app: LedgerApplication, monkeypatch: pytest.MonkeyPatch, fail: dict[int, BaseException]
) -> list[int]:
    """Make the writer thread's Nth write (1-based) raise `fail[N]` before writing anything; the calls made."""
    write = app.commit
    calls: list[int] = []

    def flaky(prepared: PreparedWrite) -> None:
        calls.append(len(calls) + 1)
        error = fail.get(len(calls))
        if error is not None:
            raise error
        write(prepared)

    monkeypatch.setattr(app, "commit", flaky)
    return calls


def test_a_failed_write_is_applied_again_and_what_was_decided_on_top_of_it_is_decided_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, expected_state, expected_tally = _stream_and_reference(tmp_path, seed=77)
    app = _ledger(tmp_path / "ledger.db")
    calls = _failing_writes(app, monkeypatch, {3: IntegrityError("another writer changed a member first")})
    tally = _ingest(app, lines)
    assert len(calls) > MESSAGES // 25  # the failed write was made again
    assert tally.as_dict() == expected_tally
    assert _state(app) == expected_state
    app.close()


def test_a_write_that_keeps_failing_stops_the_ingest_and_leaves_whole_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, expected_state, expected_tally = _stream_and_reference(tmp_path, seed=78)
    app = _ledger(tmp_path / "ledger.db")
    failing: dict[int, BaseException] = dict.fromkeys(range(4, 100), OperationalError("the database went away"))
    calls = _failing_writes(app, monkeypatch, failing)
    with pytest.raises(OperationalError):
        _ingest(app, lines)
    written = [call for call in calls if call not in failing]
    assert written == [1, 2, 3] and len(calls) > len(written)  # the fourth write failed, and again when retried
    recorded = app.recorder.max_notification_id() or 0
    assert 0 < recorded < sum(len(kinds) for kinds, _, _ in expected_state.values())
    # What stands is exactly the batches whose writes succeeded, each whole: the state one message per
    # transaction gives for their lines, and nothing of the batches after.
    whole_batches, _ = _one_at_a_time(_lines_of_batches(lines, len(written)), tmp_path / "whole-batches.db")
    assert _state(app) == whole_batches
    app.close()

    again = _ledger(tmp_path / "ledger.db")  # the next run, with the database back, completes the file
    tally = _ingest(again, lines)
    assert tally.duplicates > 0 and tally.duplicates + tally.recorded + tally.rejected < expected_tally["processed"]
    assert _state(again) == expected_state
    again.close()


def test_a_rule_failing_while_a_write_is_in_flight_fails_that_message_alone(
    a_rule_that_fails: None,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    lines = [_purchase(member, "10.00", f"e{n}") for n in range(12) for member in ("A", "B")]
    failing = _purchase("A", str(FAILING_AMOUNT), "bad")
    with_failure = [*lines[:9], failing, *lines[9:]]  # in the fourth batch of three: the third is in flight
    expected_state, _ = _one_at_a_time(lines, tmp_path / "reference.db")
    app = _ledger(tmp_path / "ledger.db")
    letters = CollectedLetters()
    tally = ingest_lines(app, io.BytesIO(b"\n".join(with_failure)), "s.jsonl", letters, batch_size=3)
    assert (tally.failed, tally.recorded) == (1, len(lines))
    assert [line for line, *_ in letters.seen()] == [10]  # dead-lettered once
    assert _state(app) == expected_state
    app.close()
