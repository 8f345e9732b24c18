"""Each report (projections.answers) answered from the views equals the same report folded from the log, on
SQLite and on PostgreSQL, over a realistic stream: legacy balances carried over (debts among them), two years
of every kind of message with late and repeated ones, and a sweep long after (expiries, tier downgrades)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from consumers.jsonlines import ingest_lines
from devkit.streamgen import DEFAULT_START, generate, legacy_balances, opening_balance_lines
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.output import jsonable
from projections import answers
from projections.answers import BreakageMethod
from projections.periods import ReportPeriods
from projections.runner import Projections
from projections.sources import LogSource, ReportSource, ViewSource, report_source
from tests.conftest import throwaway_database
from tests.messages import CollectedLetters

MEMBERS = 120
CUT_OVER = DEFAULT_START - timedelta(days=1)
SWEPT_AT = DEFAULT_START + timedelta(days=900)
#: Before the cut-over, inside the stream, at and after the sweep.
TIMES = [CUT_OVER - timedelta(days=1), CUT_OVER, *(DEFAULT_START + timedelta(days=d) for d in (45, 200, 365, 600, 900))]
RANGE = (CUT_OVER - timedelta(days=10), SWEPT_AT + timedelta(days=5))
#: Breakage methods, and the windows estimated over (days).
BREAKAGES: list[tuple[BreakageMethod, int]] = [("configured", 365), ("estimated", 365), ("estimated", 60)]
#: Members with a carried-over balance, ordinary ones and one never seen.
SAMPLE = ["M000000", "M000003", "M000017", "M000058", "M000119", "NOBODY"]


def stream() -> bytes:
    lines = [
        *opening_balance_lines(legacy_balances(MEMBERS, seed=4), CUT_OVER),
        *generate(4_000, MEMBERS, 730, seed=18),
    ]
    return b"\n".join(lines) + b"\n"


@contextmanager
def store(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sources') / 'ledger.db'}"
        return
    with throwaway_database() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerApplication]:
    """The ledger of the stream, swept; its views caught up only when a report first reads them."""
    with store(request.param, tmp_path_factory) as url:
        app = LedgerApplication(parse_store_url(url), Program())
        try:
            tally = ingest_lines(app, io.BytesIO(stream()), "stream.jsonl", CollectedLetters(), batch_size=500)
            assert tally.failed == 0 and tally.recorded > 3_000
            app.sweep(SWEPT_AT)
            yield app
        finally:
            app.close()


def both(app: LedgerApplication, report: Any) -> tuple[Any, Any]:
    """`report(source)` from the caught-up views and from the log, as JSON values."""
    with Projections(app).reading() as (sql, position):
        from_views = jsonable(report(ViewSource(sql, position, app.program)))
    from_log = jsonable(report(LogSource(app, app.recorder.max_notification_id() or 0)))
    return from_views, from_log


def test_balance_from_the_views_is_the_balance_folded_from_the_log(ledger: LedgerApplication) -> None:
    def balance(source: ReportSource) -> list[Any]:
        return [answers.balance(source, member, at) for member in SAMPLE for at in [*TIMES, None]]

    from_views, from_log = both(ledger, balance)
    assert from_views == from_log
    per_member = len(TIMES) + 1
    assert from_views[-per_member:] == [None] * per_member  # NOBODY
    assert all(from_views[index * per_member] is None for index in range(len(SAMPLE)))  # nobody before the cut-over
    assert any(found["lots"] for found in from_views if found)


def test_balances_from_the_views_are_the_balances_folded_from_the_log(ledger: LedgerApplication) -> None:
    def balances(source: ReportSource) -> list[Any]:
        return [list(answers.balances(source, at)) for at in [*TIMES, None]]

    from_views, from_log = both(ledger, balances)
    assert from_views == from_log
    assert from_views[0] == [] and len(from_views[-1]) == MEMBERS
    assert any(row["balance"] < 0 for rows in from_views for row in rows)  # debts carried over and clawed back


def test_history_from_the_views_is_the_history_replayed_from_the_log(ledger: LedgerApplication) -> None:
    from_views, from_log = both(ledger, lambda source: [answers.history(source, member) for member in SAMPLE])
    assert from_views == from_log
    assert from_views[-1] == [] and all(len(rows) > 5 for rows in from_views[:-1])


def test_liability_from_the_views_is_the_liability_folded_from_the_log(ledger: LedgerApplication) -> None:
    def liability(source: ReportSource) -> list[Any]:
        return [answers.liability(source, at, breakage, days) for at in TIMES for breakage, days in BREAKAGES]

    from_views, from_log = both(ledger, liability)
    assert from_views == from_log
    assert any(report["negative_points"] > 0 and report["expiring_90d"] > 0 for report in from_views)
    estimated = [report["breakage"] for report in from_views if report["breakage"]["method"] == "estimated"]
    assert any(breakage["expired"] > 0 and breakage["redeemed"] > 0 for breakage in estimated)
    rows = answers.liability_csv_rows(from_views[-1])
    assert [row["tier"] for row in rows] == ["member", "silver", "gold", "platinum", "total"]
    assert all(set(row) >= set(answers.LIABILITY_CSV_COLUMNS) for row in rows)


def test_liability_at_month_ends_from_the_views_is_the_one_folded_from_the_log(ledger: LedgerApplication) -> None:
    months = ReportPeriods.of(*RANGE, "quarter")
    from_views, from_log = both(ledger, lambda source: answers.liability_at_period_ends(source, months))
    assert from_views == from_log
    assert len(from_views) == len(months.spans) and from_views[0]["outstanding_points"] > 0


@pytest.mark.parametrize("granularity", [None, "month", "quarter"])
def test_the_rollforward_from_the_views_is_the_rollforward_folded_from_the_log(
    ledger: LedgerApplication, granularity: Any
) -> None:
    periods = ReportPeriods.of(*RANGE, granularity)
    from_views, from_log = both(ledger, lambda source: answers.rollforward(source, periods))
    assert from_views == from_log
    total = from_views[-1]
    assert total["period"] == ("range" if granularity is None else "total")
    assert total["migrated"] != 0 and total["expired"] > 0 and total["clawed_back"] > 0 and total["opening"] == 0


@pytest.mark.parametrize("granularity", [None, "month", "quarter"])
def test_kpis_from_the_views_are_the_kpis_counted_from_the_log(ledger: LedgerApplication, granularity: Any) -> None:
    periods = ReportPeriods.of(*RANGE, granularity)
    from_views, from_log = both(ledger, lambda source: answers.kpis(source, periods))
    assert from_views == from_log
    total = from_views[-1]
    assert total["new_members"] == MEMBERS and total["tier_upgrades"] > 0 and total["tier_downgrades"] > 0
    assert sum(total["rejected"].values()) > 0


def test_verify_finds_the_views_equal_to_the_log_and_the_log_equal_to_its_digest(ledger: LedgerApplication) -> None:
    digest = answers.digest(ledger)
    result = answers.verify(Projections(ledger), digest)
    head = ledger.recorder.max_notification_id()
    assert result.rows() == []
    assert result.summary() == {
        "position": head, "events": head, "members": MEMBERS, "snapshots": result.snapshots,
        "chain": "sha256", "discrepancies": 0, "digest": "matches",
    }  # fmt: skip
    assert (digest.position, digest.events, digest.members) == (head, head, MEMBERS)


def test_the_source_opened_for_a_face_is_the_views_or_the_log_at_the_head(ledger: LedgerApplication) -> None:
    head = ledger.recorder.max_notification_id()
    for from_log, kind in ((False, ViewSource), (True, LogSource)):
        with report_source(ledger, from_log) as source:
            assert isinstance(source, kind) and source.position == head
