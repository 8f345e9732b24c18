"""Sweeping only the members with something due gives the same ledger as sweeping everyone."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.jsonlines import ingest_lines
from devkit.streamgen import DEFAULT_START, generate
from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.program import Program
from ledger.storage.ledger_time import LedgerTimeMovedError
from ledger.storage.store import parse_store_url
from projections.sweep import sweep_due
from tests.messages import CollectedLetters, purchase

MESSAGES = 4_000
MEMBERS = 200
DAYS = 900
CHUNKS = 4


def _source() -> dict[str, str | int]:
    return {"file": "test", "line": 1}


def _events_by_member(app: LedgerApplication) -> dict[str, list[tuple[Any, ...]]]:
    """Every member's recorded events, without the times they were written at."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for member_id in app.member_ids():
        found[member_id] = [
            (
                type(event).__name__,
                event.originator_version,
                sorted((k, repr(v)) for k, v in vars(event).items() if k != "timestamp"),
            )
            for event in app.member_events(member_id)
        ]
    return found


def test_sweeping_only_what_is_due_equals_sweeping_everyone(store_url: str, tmp_path: Path) -> None:
    lines = generate(MESSAGES, MEMBERS, DAYS, seed=31)
    due_only = LedgerApplication(parse_store_url(store_url), Program())
    everyone = LedgerApplication(parse_store_url(f"sqlite:///{tmp_path / 'everyone.db'}"), Program())
    size = len(lines) // CHUNKS
    visited: list[tuple[int, int]] = []
    for chunk in range(CHUNKS):
        data = b"\n".join(lines[chunk * size : (chunk + 1) * size]) + b"\n"
        # A sweep at each period end; the stream's late messages then arrive after the period was swept.
        as_of = DEFAULT_START + timedelta(days=(chunk + 1) * DAYS // CHUNKS)
        for app in (due_only, everyone):
            ingest_lines(app, io.BytesIO(data), "stream.jsonl", CollectedLetters(), batch_size=250)
        visited_due, changed_due = sweep_due(due_only, as_of)
        visited_all, changed_all = everyone.sweep(as_of)
        assert changed_due == changed_all > 0
        visited.append((visited_due, visited_all))
    assert all(due < everyone_count for due, everyone_count in visited), visited
    assert _events_by_member(due_only) == _events_by_member(everyone)
    assert any(
        isinstance(event, Member.Swept)
        for member_id in due_only.member_ids()
        for event in due_only.member_events(member_id)
    )


def test_after_a_sweep_nothing_is_effective_before_it_for_any_member(sqlite_url: str) -> None:
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    app.apply(purchase("10.00", member="QUIET", when="2024-01-10"), _source())
    as_of = datetime.fromisoformat("2024-03-31T23:59:59+00:00")
    assert sweep_due(app, as_of) == (0, 0)  # nothing due: QUIET is neither visited nor changed
    assert app.member("QUIET").version == 2  # type: ignore[union-attr]
    # A late message of a member left alone, and the first message of a new member, both count at the sweep.
    app.apply(purchase("10.00", member="QUIET", when="2024-02-01"), _source())
    app.apply(purchase("10.00", member="NEW", when="2024-02-01"), _source())
    for member_id in ("QUIET", "NEW"):
        assert app.member_events(member_id)[-1].effective_at == as_of, member_id
    # Running the sweep again, or at an earlier time, changes nothing.
    assert sweep_due(app, as_of) == (0, 0)
    app.sweep(as_of - timedelta(days=30))
    assert app.ledger_time() == as_of


def test_a_batch_decided_before_a_sweep_moved_the_ledger_time_is_decided_again(store_url: str) -> None:
    consumer = LedgerApplication(parse_store_url(store_url), Program())
    finance = LedgerApplication(parse_store_url(store_url), Program())
    consumer.apply(purchase("10.00", member="M1", when="2024-01-10"), _source())
    assert consumer.ledger_time() is None  # known to the consumer: no sweep yet
    as_of = datetime.fromisoformat("2024-03-31T23:59:59+00:00")
    sweep_due(finance, as_of)  # another process moves the ledger's time meanwhile

    late = purchase("10.00", member="M1", when="2024-02-01")
    with pytest.raises(LedgerTimeMovedError):  # the guard, in the writing transaction
        consumer.write(consumer.decide([(late, _source())]))  # decided at the ledger time it knew
    consumer.apply(late, _source())  # apply_batch decides again with the new time
    assert consumer.member_events("M1")[-1].effective_at == as_of
