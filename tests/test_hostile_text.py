"""Hostile text in member ids: tables show it as text (never rich markup, control characters escaped), stderr
lines too, and CSV written for spreadsheets never starts a formula with it while numbers stay numbers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from points_ledger.cli import main
from points_ledger.output import spreadsheet_cell, terminal_text
from tests.messages import encode, wire

#: Member ids that used to break a table, act on the terminal, or run in a spreadsheet, each with how a table
#: shows it.
HOSTILE = {
    "[/red]": "[/red]",
    "[bold]x": "[bold]x",
    "\x1b[2Jcleared": "\\x1b[2Jcleared",
    "bell\x07": "bell\\x07",
    '=HYPERLINK("http://x")': '=HYPERLINK("http://x")',
    "+1": "+1",
    "-cmd": "-cmd",
    "@SUM(A1)": "@SUM(A1)",
    "\ttab": "\\x09tab",
    "\rreturn": "\\x0dreturn",
    "right\u202etfel": "right\\u202etfel",
}
#: The characters a terminal acts on that the ids above hold.
RAW_CONTROLS = ("\x1b", "\x07", "\t", "\r", "\u202e")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite ledger with one member per hostile id, each with points."""
    directory = tmp_path_factory.mktemp("hostile")
    stream = directory / "hostile.jsonl"
    stream.write_bytes(b"".join(
        encode(wire("adjustment", member, adjustment_id=f"a{n}", points=10 + n, reason="r", operator="o")) + b"\n"
        for n, member in enumerate(HOSTILE)
    ))  # fmt: skip
    store = f"sqlite:///{directory / 'ledger.db'}"
    ingested = run("--store", store, "ingest", str(stream), "--format", "json")
    assert ingested.exit_code == 0, ingested.output
    assert json.loads(ingested.stdout)["recorded"] == len(HOSTILE)
    yield store


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich's width: no cell is cut or wrapped


def assert_shown_as_text(printed: str) -> None:
    for raw in RAW_CONTROLS:
        assert raw not in printed, repr(raw)


def test_balances_show_every_id_as_text(ledger: str) -> None:
    result = run("--store", ledger, "balances")
    assert result.exit_code == 0, result.output
    assert_shown_as_text(result.stdout)
    lines = result.stdout.splitlines()
    for shown in HOSTILE.values():  # each row starts with the id, shown as text, then the balance's column
        assert any(line.startswith(f"{shown}  ") for line in lines), shown


@pytest.mark.parametrize("member", list(HOSTILE))
def test_history_and_balance_show_the_id_as_text(ledger: str, member: str) -> None:
    shown = HOSTILE[member]
    history = run("--store", ledger, "history", "--", member)
    assert history.exit_code == 0, history.output
    assert_shown_as_text(history.stdout)
    assert history.stdout.splitlines()[0].strip() == f"history of {shown}"
    assert "(log position " in history.stdout.splitlines()[-1]
    statement = run("--store", ledger, "balance", "--", member)
    assert statement.exit_code == 0, statement.output
    assert_shown_as_text(statement.stdout)
    assert statement.stdout.startswith(f"member {shown}\n") and f" {shown} " in statement.stdout


def test_json_keeps_the_exact_id(ledger: str) -> None:
    result = run("--store", ledger, "balances", "--format", "json")
    assert {json.loads(line)["member_id"] for line in result.stdout.splitlines()} == set(HOSTILE)


def test_an_error_line_naming_a_hostile_id_stays_one_line_of_text(ledger: str) -> None:
    result = run("--store", ledger, "balance", "nobody\x1b]0;owned\x07\nsecond line")
    assert result.exit_code == 1
    assert_shown_as_text(result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("points-ledger: error: no member")


def test_invalid_lines_reported_on_stderr_cannot_act_on_the_terminal(ledger: str, tmp_path: Path) -> None:
    stream = tmp_path / "bad.jsonl"
    stream.write_bytes(encode(wire("adjustment", "m", points="x", adjustment_id="\x1b[2J", reason="r", operator="o")))
    result = run("--store", ledger, "ingest", str(stream), "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["invalid"] == 1
    assert result.stderr.startswith(f"invalid: {stream}:1: ") and result.stderr.count("\n") == 1
    assert_shown_as_text(result.stderr)


def test_reconcile_csv_neutralises_text_cells_and_keeps_numbers(ledger: str, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text('member_id,balance\n"+1",-5\n"-5",3\n')  # a member the ledger lacks: id -5
    report = tmp_path / "report.csv"
    result = run("--store", ledger, "reconcile", "--against", str(other), "--report", str(report))
    assert result.exit_code == 0, result.output
    rows = {row["member_id"]: row for row in csv.DictReader(io.StringIO(report.read_bytes().decode("utf-8")))}
    for member in HOSTILE:
        neutralised = member.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert (("'" + member) if neutralised else member) in rows, repr(member)
    plus_one = rows["'+1"]
    assert (plus_one["ledger_balance"], plus_one["other_balance"], plus_one["difference"]) == ("15", "-5", "20")
    lines = report.read_text(encoding="utf-8").splitlines()
    assert '"\'+1","balance",15,-5,20,"member","",' in {line[:37] for line in lines}  # numbers bare, text quoted
    assert any(line.startswith('-5,"missing_in_ledger",') for line in lines)  # an id that is a number stays one


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (-5, -5), (Decimal("-12.50"), Decimal("-12.50")), ("-12.50", Decimal("-12.50")), ("-5", Decimal("-5")),
        ("-cmd", "'-cmd"), ("+1", "'+1"), ("=1+1", "'=1+1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
        ("\rx", "'\rx"), ("\x00x", "'\x00x"), ("007", "007"), ("-007", "'-007"), ("gold", "gold"), (None, ""),
        ({"a": "=x"}, '{"a": "=x"}'), (True, "True"),
    ],
)  # fmt: skip
def test_a_spreadsheet_cell_never_starts_a_formula(value: object, cell: object) -> None:
    assert spreadsheet_cell(value) == cell
    assert type(spreadsheet_cell(value)) is type(cell)


def test_terminal_text_escapes_what_a_terminal_would_obey() -> None:
    assert terminal_text("a\x1b[31mb\x07\x9b\x7f\u2066c\u2028") == "a\\x1b[31mb\\x07\\x9b\\x7f\\u2066c\\u2028"
    assert terminal_text("Zoë 東京 [x]") == "Zoë 東京 [x]"
