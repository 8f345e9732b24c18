"""The terminal's tables, for people: numbers right-aligned with separators, money with its currency, rates in
percent, reports as statements (a row per flow or measure, a column per period or tier), history as a line
per change, the position and range in the caption, times to the second; at 80 columns (a pipe) and at 160,
nothing cut off."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_helpers import SAMPLE, cli

RANGE = ("--from", "2024-12-31T23:59:59Z", "--to", "2025-12-31T23:59:59Z")
MONTHS = [f"2025-{month:02d}" for month in range(1, 13)]
WIDTHS = (80, 160)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('tables') / 'ledger.db'}"
    assert cli("ingest", str(SAMPLE), store=url).returncode == 0
    return url


def table(store: str, width: int, *args: str) -> list[str]:
    result = cli(*args, store=store, env={"COLUMNS": str(width)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= width for line in lines), "\n".join(line for line in lines if len(line) > width)
    assert "…" not in result.stdout  # nothing truncated
    return lines


def json_lines(store: str, *args: str) -> list[dict[str, object]]:
    result = cli(*args, "--format", "json", store=store)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def row_of(lines: list[str], name: str) -> list[list[str]]:
    """The figures of every row named `name` (one per block of columns), in order."""
    return [re.findall(r"[\d,.%-]+(?: USD| %)?", line.split(name, 1)[1]) for line in lines
            if re.match(rf"[│ ]\s*{re.escape(name)}\s", line)]  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_the_rollforward_is_a_statement_with_periods_as_columns(store: str, width: int) -> None:
    lines = table(store, width, "report", "rollforward", *RANGE, "--by", "month")
    text = "\n".join(lines)
    for period in [*MONTHS, "total"]:
        assert text.count(period) == 1 + (period == "2025-12"), period  # a heading (2025-12 in the caption too)
    assert "2024-12 " not in text.replace("2024-12-31", "")  # the calendar's periods: no one-second 2024-12
    expected = json_lines(store, "report", "rollforward", *RANGE, "--by", "month")
    for flow in ("opening", "issued", "redeemed", "closing"):
        figures = [figure for block in row_of(lines, flow) for figure in block]
        assert figures == [f"{line[flow]:,}" for line in expected], flow
    assert "log position 3,306" in text and "(2024-12-31 23:59:59 UTC, 2025-12-31 23:59:59 UTC] by month" in text
    assert "position" not in "\n".join(lines[:-1]).replace("log position", "")  # in the caption, not a row
    assert len([line for line in lines if "2025-01" in line and "┃" in line]) == 1  # one heading per period
    blocks = sum(1 for line in lines if line.startswith("┏"))
    assert blocks == (1 if width == 160 else 3)  # 13 columns fit 160 columns; at 80, blocks of six


@pytest.mark.parametrize("width", WIDTHS)
def test_kpis_are_a_statement_with_the_redemption_rate_in_percent(store: str, width: int) -> None:
    lines = table(store, width, "report", "kpis", *RANGE, "--by", "quarter")
    assert row_of(lines, "redemption rate") == [["36.95 %", "48.30 %", "59.16 %", "24.82 %", "42.12 %"]]
    assert row_of(lines, "points issued") == [["145,592", "143,160", "144,274", "149,874", "582,900"]]
    issued = next(line for line in lines if "points issued" in line)
    assert issued.rstrip(" │").endswith("582,900")  # right-aligned to the column's edge


@pytest.mark.parametrize("width", WIDTHS)
def test_the_liability_is_its_measures_by_tier_with_money_in_its_currency(store: str, width: int) -> None:
    lines = table(store, width, "report", "liability", "--as-of", "2025-12-31T00:00:00Z")
    text = "\n".join(lines)
    assert re.search(r"liability\s+│\s+5,112\.24 USD", text)
    assert "0.00 % (configured)" in text
    values = [figure for block in row_of(lines, "liability value") for figure in block]
    assert values == ["0.00 USD", "172.64 USD", "4,939.60 USD", "0.00 USD", "5,112.24 USD"]
    members = [figure for block in row_of(lines, "members") for figure in block]
    assert members[-5:] == ["0", "4", "56", "0", "60"]
    assert "by_tier" not in text and "gold.expiring" not in text  # no flattened record of 60 rows


def test_history_is_a_line_per_change_with_full_details_in_json(store: str) -> None:
    lines = table(store, 160, "history", "M000002")
    changes = [line for line in lines if re.match(r"\s+\d+\s+20\d\d-", line)]
    expected = json_lines(store, "history", "M000002")
    assert len(changes) == len(expected) == 65
    adjusted = next(line for line in changes if "Adjustment: correction" in line)
    assert re.search(r"\+100\s+7,177\s+gold\s+operator bob", adjusted)
    assert "last_qualified_at" not in "\n".join(lines) and "debt_repaid" not in "\n".join(lines)
    assert "65 changes, oldest first (log position 3,306)" in lines[-1]
    narrow = table(store, 80, "history", "M000002")
    assert len([line for line in narrow if re.match(r"\s+\d+\s+20\d\d-\d\d-\d\d\s", line)]) == 65


def test_times_in_tables_have_no_spurious_microseconds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    message = {"event_id": "e1", "type": "purchase", "member_id": "M1", "occurred_at": "2025-03-01T10:00:00.2Z",
               "transaction_id": "t1", "amount": "12.00", "currency": "USD"}  # fmt: skip
    stream = tmp_path / "one.jsonl"
    stream.write_text(json.dumps(message) + "\n")
    assert cli("ingest", str(stream), store=url).returncode == 0
    shown = table(url, 80, "balance", "M1")
    assert any("2026-03-01 10:00:00 UTC" in line for line in shown), "\n".join(shown)
    assert ".200000" not in "\n".join(shown)
    assert json_lines(url, "balance", "M1")[0]["lots"][0]["expires_at"] == "2026-03-01T10:00:00.200000+00:00"  # type: ignore[index]
    assert any(re.search(r"balance\s+│\s+12 │", line) for line in shown)


def test_a_balance_as_of_the_last_day_there_is_counts_every_lot_as_expiring(store: str) -> None:
    [statement] = json_lines(store, "balance", "M000002", "--as-of", "9999-12-31T00:00:00Z")
    assert statement["expiring_30d"] == sum(lot["remaining"] for lot in statement["lots"])  # type: ignore[attr-defined]
