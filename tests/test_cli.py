"""The command line as users meet it: real processes, real stores, exit statuses and outputs."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import click
import pytest

from ledger.program import Program
from points_ledger.cli import main
from schemas import Invalid, parse_message
from tests.cli_helpers import SAMPLE, cli, one_line_error
from tests.conftest import POSTGRES_ADMIN_URL
from tests.oracle import Oracle


def ok_json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def summary_rows(stdout: str) -> dict[str, str]:
    """The rows of a one-table summary (a title line, then a key | value table), or an assertion error if
    the output holds anything else."""
    title, *table = stdout.splitlines()
    assert title and not title.startswith(("┌", "│")), stdout
    rows: dict[str, str] = {}
    for line in table:
        if line.startswith(("┌", "├", "└")):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert line.startswith("│") and len(cells) == 2, stdout
        rows[cells[0]] = cells[1]
    return rows


@pytest.fixture(scope="module")
def sample_oracle() -> Oracle:
    """The independent reading of the sample's valid lines (tests/oracle.py), to hold the answers against."""
    oracle, acceptance = Oracle(), Program().acceptance()
    for line in SAMPLE.read_bytes().splitlines():
        parsed = parse_message(line, acceptance)
        if line.strip() and not isinstance(parsed, Invalid):
            oracle.process(parsed)
    return oracle


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


COMMANDS = [
    ["ingest"], ["sweep"], ["balance"], ["balances"], ["history"], ["report"], ["report", "liability"],
    ["report", "rollforward"], ["program"], ["program", "show"], ["schemas"], ["schemas", "export"],
    ["consume"], ["produce"], ["demo"], ["check"], ["config"], ["config", "show"], ["topics"], ["topics", "create"],
    ["dev"], ["dev", "broker"], ["projections"], ["projections", "rebuild"], ["rebuild"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0
    assert "Usage: points-ledger" in result.stdout and len(result.stdout.splitlines()) > 4


def test_ingest_the_sample_twice_then_query_everything(store_url: str, tmp_path: Path, sample_oracle: Oracle) -> None:
    dead = tmp_path / "dead.jsonl"
    first = ok_json(cli("ingest", str(SAMPLE), "--dead-letter", str(dead), "--format", "json", store=store_url))
    assert isinstance(first, dict)
    assert set(first) == {"processed", "recorded", "duplicates", "rejected", "invalid", "failed"}
    assert first["processed"] == sum(1 for line in SAMPLE.read_bytes().splitlines() if line.strip())  # blanks skipped
    assert first["recorded"] > 0 and first["invalid"] > 0
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == first["invalid"]
    assert {"line", "text", "reason"} <= set(letters[0])

    second = ok_json(cli("ingest", str(SAMPLE), "--format", "json", "--dead-letter", str(dead), store=store_url))
    assert second == {**first, "recorded": 0, "rejected": 0, "duplicates": first["processed"] - first["invalid"]}

    rows = [json.loads(line) for line in cli("balances", "--format", "json", store=store_url).stdout.splitlines()]
    assert rows and all(set(row) == {"member_id", "balance", "tier", "position"} for row in rows)
    assert [row["member_id"] for row in rows] == sorted(row["member_id"] for row in rows)
    assert {row["member_id"]: (row["balance"], row["tier"]) for row in rows} == {
        member_id: sample_oracle.balance_and_tier(member_id) for member_id in sample_oracle.members
    }
    member = "M000059"  # the sample's first line, at 2024-01-01T00:00:00Z
    row = next(row for row in rows if row["member_id"] == member)

    statement = ok_json(cli("balance", member, "--format", "json", store=store_url))
    assert isinstance(statement, dict)
    assert set(statement) == {"member_id", "as_of", "balance", "tier", "lots", "expiring_30d", "position"}
    within_30_days = datetime.fromisoformat(statement["as_of"]) + timedelta(days=30)
    assert statement["expiring_30d"] == sum(
        lot["remaining"] for lot in statement["lots"] if datetime.fromisoformat(lot["expires_at"]) <= within_30_days
    )
    assert statement["balance"] == row["balance"]
    assert sum(lot["remaining"] for lot in statement["lots"]) >= statement["balance"]

    early = ok_json(cli("balance", member, "--as-of", "2024-01-01T00:00:00Z", "--format", "json", store=store_url))
    assert isinstance(early, dict) and early["as_of"] == "2024-01-01T00:00:00+00:00"
    # Its first message, a redemption of 1,000 points, enrolled it and was refused: nothing to spend yet.
    assert (early["balance"], early["tier"], early["lots"]) == (0, "member", [])
    then = ok_json(cli("balance", member, "--as-of", "2024-06-30T00:00:00Z", "--format", "json", store=store_url))
    assert isinstance(then, dict) and then["lots"]
    assert (then["balance"], then["tier"]) == sample_oracle.balance_and_tier(member, utc("2024-06-30T00:00:00Z"))
    assert then["balance"] not in {early["balance"], statement["balance"]}  # a time inside its history

    trail = [
        json.loads(line) for line in cli("history", member, "--format", "json", store=store_url).stdout.splitlines()
    ]
    assert trail[0]["event"] == "Enrolled"
    assert trail[-1]["balance"] == statement["balance"] == sum(row["change"] for row in trail)
    assert all(row["provenance"]["source"] for row in trail)

    liability = ok_json(
        cli("report", "liability", "--as-of", "2026-01-01T00:00:00Z", "--format", "json", store=store_url)
    )
    assert isinstance(liability, dict)
    assert set(liability) == {"as_of", "members", "outstanding_points", "negative_points", "point_value",
                              "liability_value", "breakage_rate", "liability_net", "expiring_30d", "expiring_60d",
                              "expiring_90d", "current_points", "non_current_points", "breakage", "by_tier",
                              "position"}  # fmt: skip
    assert liability["liability_value"] == f"{liability['outstanding_points'] / 100:.2f}"
    expected_liability = sample_oracle.liability(utc("2026-01-01T00:00:00Z"))
    assert {key: liability[key] for key in expected_liability} == expected_liability

    rollforward = ok_json(
        cli("report", "rollforward", "--from", "2024-03-31T00:00:00Z", "--to", "2025-03-31T00:00:00Z",
            "--format", "json", store=store_url)
    )  # fmt: skip
    assert isinstance(rollforward, dict)
    assert list(rollforward) == ["from", "to", "opening", "issued", "migrated", "adjusted_in", "adjusted_out",
                                 "redeemed", "expired", "clawed_back", "closing", "position"]  # fmt: skip
    expected = sample_oracle.rollforward(utc("2024-03-31T00:00:00Z"), utc("2025-03-31T00:00:00Z"))
    assert {key: rollforward[key] for key in expected} == expected and expected["issued"] > 0

    swept = ok_json(cli("sweep", "--as-of", "2027-01-01T00:00:00Z", "--format", "json", store=store_url))
    assert isinstance(swept, dict) and swept["members"] == len(rows) and swept["changed"] == len(rows)
    after = ok_json(cli("report", "liability", "--as-of", "2027-01-01T00:00:00Z", "--format", "json", store=store_url))
    assert isinstance(after, dict) and after["outstanding_points"] == 0  # everything has expired by then


def test_piped_ingest_prints_only_the_summary_and_reads_stdin(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'l.db'}"
    line = b'{"type":"enrollment","event_id":"e1","member_id":"M","occurred_at":"2024-01-01T00:00:00Z"}\n'
    result = cli("ingest", "-", store=store, stdin=line)
    assert result.returncode == 0 and result.stderr == ""
    assert summary_rows(result.stdout) == {
        "processed": "1", "recorded": "1", "duplicates": "0", "rejected": "0", "invalid": "0", "failed": "0"
    }  # fmt: skip
    statement = ok_json(cli("balance", "M", "--format", "json", store=store))  # the line read from stdin is recorded
    assert isinstance(statement, dict)
    assert (statement["member_id"], statement["as_of"]) == ("M", "2024-01-01T00:00:00+00:00")


def test_invalid_lines_without_a_dead_letter_file_are_reported_on_stderr(tmp_path: Path) -> None:
    result = cli("ingest", "-", "--format", "json", store=f"sqlite:///{tmp_path / 'l.db'}", stdin=b"{oops\n")
    assert ok_json(result) == {"processed": 1, "recorded": 0, "duplicates": 0, "rejected": 0, "invalid": 1, "failed": 0}
    assert "<stdin>:1: not valid JSON" in result.stderr


def test_an_unreachable_postgres_is_one_line_and_exit_3() -> None:
    one_line_error(cli("balances", store="postgresql://postgres@127.0.0.1:1/ledger"), 3, "Connection refused")


def test_a_missing_postgres_database_is_named() -> None:
    server = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]  # the shared server the tests are given, wherever it runs
    result = cli("balances", store=f"{server}/pl_no_such_database")
    one_line_error(result, 3, 'database "pl_no_such_database" does not exist')


def test_an_unreadable_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    one_line_error(
        cli("ingest", str(tmp_path / "nope.jsonl"), store=f"sqlite:///{tmp_path / 'l.db'}"), 1, "cannot read"
    )


def test_an_ingest_that_fails_before_writing_leaves_no_ledger_file(tmp_path: Path) -> None:
    """A UTF-16 export is refused (with the conversion to run) before any line is applied: the SQLite file
    this run would have created is not left behind empty, and an existing ledger is kept."""
    utf16 = tmp_path / "export.jsonl"
    line = '{"type":"enrollment","event_id":"e1","member_id":"M","occurred_at":"2024-01-01T00:00:00Z"}\n'
    utf16.write_bytes((line * 3).encode("utf-16"))
    ledger = tmp_path / "new.db"
    one_line_error(cli("ingest", str(utf16), store=f"sqlite:///{ledger}"), 1, "UTF-16", "iconv -f UTF-16 -t UTF-8")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export.jsonl"]
    kept = f"sqlite:///{tmp_path / 'kept.db'}"
    assert cli("ingest", "-", store=kept, stdin=b"").returncode == 0  # an empty ledger made on purpose stays
    one_line_error(cli("ingest", str(utf16), store=kept), 1, "UTF-16")
    assert (tmp_path / "kept.db").exists()


def test_projections_rebuild_is_the_top_level_rebuild(tmp_path: Path) -> None:
    assert isinstance(main, click.Group)
    group = main.commands["projections"]
    assert isinstance(group, click.Group) and group.commands["rebuild"] is main.commands["rebuild"]
    store = f"sqlite:///{tmp_path / 'l.db'}"
    assert cli("ingest", str(SAMPLE), "--dead-letter", str(tmp_path / "d.jsonl"), store=store).returncode == 0
    timings = {"seconds", "events_per_s"}
    answers = []
    for command in (["projections", "rebuild"], ["rebuild"]):
        result = ok_json(cli(*command, "--format", "json", store=store))
        assert isinstance(result, dict)
        answers.append({key: value for key, value in result.items() if key not in timings})
    assert answers[0] == answers[1] and answers[0]["views"] == ["members", "audit"] and answers[0]["events"] > 0


def test_reading_a_ledger_that_does_not_exist_does_not_create_one(tmp_path: Path) -> None:
    one_line_error(cli("balances", store=f"sqlite:///{tmp_path / 'none.db'}"), 1, "no ledger at")
    assert not (tmp_path / "none.db").exists()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert cli("balances", store="mysql://x").returncode == 2
    naive = cli("report", "liability", "--as-of", "2024-01-01T00:00:00", store=f"sqlite:///{tmp_path / 'l.db'}")
    assert naive.returncode == 2 and "no UTC offset" in naive.stderr
    assert (
        cli("report", "rollforward", "--from", "2024-02-01T00:00:00Z", "--to", "2024-01-01T00:00:00Z").returncode == 2
    )
    assert cli("no-such-command").returncode == 2


def test_unknown_member_exits_1(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'l.db'}"
    cli("ingest", str(SAMPLE), "--dead-letter", str(tmp_path / "d.jsonl"), store=store)
    one_line_error(cli("balance", "NOBODY", store=store), 1, "no member 'NOBODY'")
    one_line_error(cli("history", "NOBODY", store=store), 1, "no member 'NOBODY'")


def test_program_show_and_a_program_file(tmp_path: Path) -> None:
    default = ok_json(cli("program", "show", "--format", "json"))
    assert isinstance(default, dict) and default["currency"] == "USD" and len(default["tiers"]) == 4
    toml = tmp_path / "program.toml"
    toml.write_text('currency = "EUR"\nearn_rate = "2"\npoint_value = "0.005"\n')
    custom = ok_json(cli("--program", str(toml), "program", "show", "--format", "json"))
    assert isinstance(custom, dict) and (custom["currency"], custom["earn_rate"]) == ("EUR", "2")
    toml.write_text('tiers = [{name = "gold", threshold = 10, multiplier = "1"}]\n')
    one_line_error(cli("--program", str(toml), "program", "show"), 2, "first tier must have threshold 0")


def test_a_program_file_changes_the_rules_applied(tmp_path: Path) -> None:
    toml = tmp_path / "program.toml"
    toml.write_text('currency = "EUR"\nearn_rate = "2"\n')
    store = f"sqlite:///{tmp_path / 'l.db'}"
    eur = (b'{"type":"purchase","event_id":"e1","member_id":"M","occurred_at":"2024-01-01T00:00:00Z",'
           b'"transaction_id":"t","amount":"10.50","currency":"EUR"}\n')  # fmt: skip
    ingested = ok_json(cli("--program", str(toml), "ingest", "-", "--format", "json", store=store, stdin=eur))
    assert isinstance(ingested, dict) and ingested["recorded"] == 1
    statement = ok_json(cli("--program", str(toml), "balance", "M", "--format", "json", store=store))
    assert isinstance(statement, dict) and statement["balance"] == 21
    assert ok_json(cli("ingest", "-", "--format", "json", store=store, stdin=eur.replace(b"e1", b"e2")))["invalid"] == 1  # type: ignore[index]


def test_schemas_export_writes_one_json_schema_per_message_type_and_balance_event(tmp_path: Path) -> None:
    result = cli("schemas", "export", str(tmp_path / "out"))
    assert result.returncode == 0
    files = sorted(path.name for path in (tmp_path / "out").iterdir())
    inbound = ["adjustment", "enrollment", "opening_balance", "purchase", "redemption", "refund"]
    assert files == sorted([
        *(f"{kind}.schema.json" for kind in inbound),
        *(f"{name}.v1.schema.json" for name in ["BalanceChanged", "TierChanged", "RedemptionRejected"]),
        "openapi.json",
    ])  # fmt: skip
    openapi = json.loads((tmp_path / "out" / "openapi.json").read_text())
    assert "/v1/messages" in openapi["paths"] and "Purchase" in openapi["components"]["schemas"]
    changed = json.loads((tmp_path / "out" / "BalanceChanged.v1.schema.json").read_text())
    assert changed["$id"] == "points-ledger/BalanceChanged.v1.schema.json"
    assert set(changed["required"]) == {
        "member_id", "balance", "delta", "reason", "tier", "effective_at", "occurred_at", "source_event_id", "sequence",
    }  # fmt: skip
    tier = json.loads((tmp_path / "out" / "TierChanged.v1.schema.json").read_text())
    assert {"from", "to"} <= set(tier["required"])  # the wire names, not Python's
    purchase = json.loads((tmp_path / "out" / "purchase.schema.json").read_text())
    assert {"event_id", "member_id", "occurred_at", "transaction_id", "amount", "currency"} <= set(purchase["required"])
    assert purchase["additionalProperties"] is False
