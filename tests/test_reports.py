"""Finance and program reports: periods, the roll-forward by month, expiring points, breakage, KPIs, CSV, chart."""

from __future__ import annotations

import csv
import io
import itertools
import json
import struct
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from devkit.streamgen import DEFAULT_START, generate
from ledger.program import Program
from points_ledger.chart import CHART_SIZE_PX
from projections import periods, reports
from projections.kpis import KPI_COLUMNS, redemption_rate
from schemas import Invalid, parse_message
from tests.cli_helpers import cli
from tests.oracle import Oracle

FLOWS_SIGNED = {
    "issued": 1, "migrated": 1, "adjusted_in": 1, "adjusted_out": -1, "redeemed": -1, "expired": -1, "clawed_back": -1,
}  # fmt: skip


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_periods_tile_the_range_at_month_and_quarter_starts() -> None:
    start, end = utc("2024-01-15T12:00:00"), utc("2024-07-01T00:00:00")
    months = periods.split(start, end, "month")
    assert months[0] == (start, utc("2024-02-01T00:00:00"))
    assert months[-1] == (utc("2024-06-01T00:00:00"), end)
    assert len(months) == 6 and all(a[1] == b[0] for a, b in itertools.pairwise(months))
    assert [periods.label(a, b, "month") for a, b in months] == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05",
                                                              "2024-06"]  # fmt: skip
    quarters = periods.split(start, end, "quarter")
    assert quarters == [(start, utc("2024-04-01T00:00:00")), (utc("2024-04-01T00:00:00"), end)]
    assert [periods.label(a, b, "quarter") for a, b in quarters] == ["2024-Q1", "2024-Q2"]
    assert periods.split(start, start, "month") == [(start, start)]
    assert periods.add_months(utc("2024-01-31T00:00:00"), 1) == utc("2024-02-29T00:00:00")
    assert periods.add_months(utc("2024-02-29T00:00:00"), 12) == utc("2025-02-28T00:00:00")
    with pytest.raises(ValueError, match="more than"):
        periods.split(utc("1900-01-01T00:00:00"), utc("2100-01-01T00:00:00"), "month")
    with pytest.raises(ValueError, match="must not end before"):
        periods.split(end, start, None)


@pytest.mark.parametrize("start", ["2024-12-31T23:59:59", "2024-12-31T23:59:59.999999", "2025-01-01T00:00:00"])
def test_periods_follow_the_calendar_from_a_range_starting_on_the_last_second_of_a_year(start: str) -> None:
    """`--from 2024-12-31T23:59:59Z --by month` starts with 2025-01 (covering that last second), not with a
    one-second 2024-12 period; the range's total is untouched."""
    chosen = periods.ReportPeriods.of(utc(start), utc("2025-03-31T23:59:59"), "month")
    assert chosen.labels() == ["2025-01", "2025-02", "2025-03", "total"]
    assert chosen.spans[0] == (utc(start), utc("2025-02-01T00:00:00"))
    assert chosen.spans[-1] == (utc("2025-03-01T00:00:00"), utc("2025-03-31T23:59:59"))
    two_seconds = periods.ReportPeriods.of(utc("2024-12-31T23:59:58"), utc("2025-02-01T00:00:00"), "month")
    assert two_seconds.labels() == ["2024-12", "2025-01", "total"]  # longer than a second: a period of its own
    quarters = periods.ReportPeriods.of(utc(start), utc("2025-12-31T23:59:59"), "quarter")
    assert quarters.labels() == ["2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "total"]


def test_the_redemption_rate_has_four_places_rounded_half_up() -> None:
    assert redemption_rate(1, 8) == "0.1250"
    assert redemption_rate(2, 3) == "0.6667"
    assert redemption_rate(1, 20_000) == "0.0001"  # 0.00005 rounds up
    assert redemption_rate(1, 20_001) == "0.0000"
    assert redemption_rate(5, 0) is None


def test_estimated_breakage_is_expired_over_expired_and_redeemed() -> None:
    window = (utc("2024-01-01T00:00:00"), utc("2025-01-01T00:00:00"))
    breakage = reports.estimated_breakage({"expired": 1, "redeemed": 2}, window)
    assert breakage.rate == Decimal("0.3333")
    assert breakage.describe() == {"method": "estimated", "rate": "0.3333", "from": window[0], "to": window[1],
                                   "expired": 1, "redeemed": 2}  # fmt: skip
    assert reports.estimated_breakage({}, window).rate == 0


#: Two years of a generated stream, swept long after it: expiries, downgrades.
STREAM = generate(8_000, 200, 730, seed=31)
SWEEP_AT = DEFAULT_START + timedelta(days=1200)


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stream, swept, on SQLite (read only by the tests below)."""
    directory = tmp_path_factory.mktemp("reports")
    stream = directory / "stream.jsonl"
    stream.write_bytes(b"\n".join(STREAM) + b"\n")
    url = f"sqlite:///{directory / 'ledger.db'}"
    assert cli("ingest", str(stream), "--dead-letter", str(directory / "dead.jsonl"), store=url).returncode == 0
    assert cli("sweep", "--as-of", SWEEP_AT.isoformat(), store=url).returncode == 0
    return url


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    """The same stream read by the independent oracle: the figures the reports are held to."""
    oracle = Oracle()
    for line in STREAM:
        parsed = parse_message(line, Program().acceptance())
        if not isinstance(parsed, Invalid):
            oracle.process(parsed)
    oracle.sweep(SWEEP_AT)
    return oracle


def cents(points: int) -> Decimal:
    """Points valued at the default program's point value, 0.01: exact in cents."""
    return Decimal(points).scaleb(-2)


def four_places(numerator: int, denominator: int) -> str:
    """A ratio as finance states it: four places, half up."""
    return str((Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def ok_lines(*args: str, store: str) -> list[dict[str, Any]]:
    result = cli(*args, store=store)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


#: From before the stream's earliest (late) message times to after the final sweep.
RANGE_START, RANGE_END = DEFAULT_START - timedelta(days=90), DEFAULT_START + timedelta(days=1210)
RANGE = ("--from", RANGE_START.isoformat(), "--to", RANGE_END.isoformat())
MONTHS = len(periods.split(RANGE_START, RANGE_END, "month"))


def test_the_rollforward_by_month_closes_every_month_and_adds_up_to_the_range(ledger_url: str, oracle: Oracle) -> None:
    rows = ok_lines("report", "rollforward", *RANGE, "--by", "month", "--format", "json", store=ledger_url)
    months, total = rows[:-1], rows[-1]
    assert len(months) == MONTHS and total["period"] == "total"
    assert {flow: total[flow] for flow in FLOWS_SIGNED} == oracle.flows(RANGE_START, RANGE_END)
    assert total["closing"] == sum(oracle.balance_and_tier(member)[0] for member in oracle.members)
    for row in rows:
        moved = sum(sign * int(row[flow]) for flow, sign in FLOWS_SIGNED.items())
        assert row["opening"] + moved == row["closing"], row
    for before, after in itertools.pairwise(months):
        assert before["closing"] == after["opening"] and before["to"] == after["from"]
    for flow in FLOWS_SIGNED:
        assert sum(int(row[flow]) for row in months) == total[flow]
    assert months[0]["opening"] == total["opening"] and months[-1]["closing"] == total["closing"]
    assert sum(int(row["expired"]) for row in months) > 0
    from_log = ok_lines("report", "rollforward", *RANGE, "--by", "month", "--format", "json", "--from-log",
                        store=ledger_url)  # fmt: skip
    assert from_log == rows


def test_csv_is_the_same_report_for_spreadsheets(ledger_url: str) -> None:
    as_json = ok_lines("report", "rollforward", *RANGE, "--by", "quarter", "--format", "json", store=ledger_url)
    result = cli("report", "rollforward", *RANGE, "--by", "quarter", "--format", "csv", store=ledger_url)
    as_csv = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["period"] for row in as_csv] == [row["period"] for row in as_json]
    assert [int(row["closing"]) for row in as_csv] == [row["closing"] for row in as_json]

    as_of = (DEFAULT_START + timedelta(days=400)).isoformat()
    liability = ok_lines("report", "liability", "--as-of", as_of, "--format", "json", store=ledger_url)[0]
    result = cli("report", "liability", "--as-of", as_of, "--format", "csv", store=ledger_url)
    lines = {row["tier"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert list(lines) == ["member", "silver", "gold", "platinum", "total"]
    assert int(lines["total"]["outstanding_points"]) == liability["outstanding_points"]
    assert lines["gold"]["liability_value"] == liability["by_tier"]["gold"]["liability_value"]


def test_liability_splits_outstanding_points_by_expiry_and_nets_breakage(ledger_url: str, oracle: Oracle) -> None:
    as_of = (DEFAULT_START + timedelta(days=500)).isoformat()
    for breakage in ("configured", "estimated"):
        query = ("report", "liability", "--as-of", as_of, "--breakage", breakage, "--format", "json")
        result = ok_lines(*query, store=ledger_url)[0]
        assert ok_lines(*query, "--from-log", store=ledger_url)[0] == result
        for line in [result, *result["by_tier"].values()]:
            assert line["current_points"] + line["non_current_points"] == line["outstanding_points"]
            assert line["expiring_30d"] <= line["expiring_60d"] <= line["expiring_90d"] <= line["current_points"]
        assert result["expiring_90d"] > 0
    estimated = ok_lines("report", "liability", "--as-of", as_of, "--breakage", "estimated",
                         "--breakage-window-days", "200", "--format", "json", store=ledger_url)[0]  # fmt: skip
    breakage = estimated["breakage"]
    assert isinstance(breakage, dict) and breakage["method"] == "estimated"
    assert breakage["to"] == datetime.fromisoformat(as_of).isoformat()
    assert datetime.fromisoformat(breakage["to"]) - datetime.fromisoformat(breakage["from"]) == timedelta(days=200)
    # held to the oracle: the points expired and redeemed in the window, and the points outstanding at AS-OF
    window = oracle.flows(datetime.fromisoformat(as_of) - timedelta(days=200), datetime.fromisoformat(as_of))
    assert (breakage["expired"], breakage["redeemed"]) == (window["expired"], window["redeemed"])
    rate = four_places(window["expired"], window["expired"] + window["redeemed"])
    assert estimated["breakage_rate"] == rate and 0 < Decimal(rate) < 1
    outstanding = oracle.liability(datetime.fromisoformat(as_of))["outstanding_points"]
    value = cents(outstanding)
    assert (estimated["outstanding_points"], estimated["liability_value"]) == (outstanding, str(value))
    net = (value * (1 - Decimal(rate))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert estimated["liability_net"] == str(net)


def test_kpis_per_month_then_the_whole_range_from_views_and_from_the_log(ledger_url: str, oracle: Oracle) -> None:
    query = ("report", "kpis", *RANGE, "--by", "month", "--format", "json")
    rows = ok_lines(*query, store=ledger_url)
    assert ok_lines(*query, "--from-log", store=ledger_url) == rows
    months, total = rows[:-1], rows[-1]
    assert total["period"] == "total" and set(KPI_COLUMNS) <= set(total)
    for key in ("new_members", "points_issued", "points_redeemed", "points_expired", "tier_upgrades"):
        assert sum(int(row[key]) for row in months) == total[key], key
    assert total["new_members"] == len(ok_lines("balances", "--format", "json", store=ledger_url)) == 200
    assert max(int(row["active_members"]) for row in months) <= total["active_members"] <= 200
    expected = oracle.kpis(RANGE_START, RANGE_END)
    assert {key: total[key] for key in expected} == expected
    assert total["redemption_rate"] == four_places(expected["points_redeemed"], expected["points_issued"])
    assert total["tier_upgrades"] > 0 and total["tier_downgrades"] > 0
    rejected = total["rejected"]
    assert isinstance(rejected, dict) and sum(rejected.values()) > 0
    as_csv = list(
        csv.DictReader(io.StringIO(cli("report", "kpis", *RANGE, "--format", "csv", store=ledger_url).stdout))
    )
    assert len(as_csv) == 1 and int(as_csv[0]["rejected_insufficient_points"]) == rejected.get("insufficient_points", 0)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_liability_chart_is_a_png_of_the_month_ends(ledger_url: str, oracle: Oracle, tmp_path: Path) -> None:
    chart = tmp_path / "liability.png"
    rows = ok_lines("report", "liability", "--chart", str(chart), *RANGE, "--format", "json", store=ledger_url)
    assert png_size(chart) == CHART_SIZE_PX
    assert len(rows) == MONTHS and rows[0]["as_of"] == "2023-11-01T00:00:00+00:00"
    as_of = str(rows[10]["as_of"])
    liability = ok_lines("report", "liability", "--as-of", as_of, "--format", "json", store=ledger_url)[0]
    assert rows[10]["outstanding_points"] == liability["outstanding_points"]
    assert rows[10]["liability_value"] == liability["liability_value"]
    for row in rows[::5]:
        outstanding = oracle.liability(datetime.fromisoformat(str(row["as_of"])))["outstanding_points"]
        assert (row["outstanding_points"], row["liability_value"]) == (outstanding, str(cents(outstanding)))
    missing = cli("report", "liability", "--chart", str(chart), store=ledger_url)
    assert missing.returncode == 2 and "--chart needs --from and --to" in missing.stderr
    assert cli("report", "liability", store=ledger_url).returncode == 2
    unwritable = cli("report", "liability", "--chart", str(tmp_path / "no" / "such" / "dir.png"), *RANGE,
                     store=ledger_url)  # fmt: skip
    assert unwritable.returncode in {1, 2} and "Traceback" not in unwritable.stderr
