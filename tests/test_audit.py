"""Tamper evidence: `verify` catches a view row edited by hand; `verify --digest` catches a stored event edited,
deleted or replaced after the digest was taken; a rebuild repairs the views, never the log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ledger.store import parse_store_url
from points_ledger.preflight import connect
from points_ledger.streamgen import generate
from tests.cli_helpers import cli, one_line_error


@contextmanager
def database(store_url: str) -> Iterator[Any]:
    """A direct connection to the ledger's database, as someone editing it by hand would open one."""
    if store_url.startswith("sqlite"):
        connection = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        try:
            yield connection
            connection.commit()
        finally:
            connection.close()
        return
    with connect(parse_store_url(store_url), autocommit=True) as pg:
        yield pg


def events_table(store_url: str) -> tuple[str, str]:
    """(table, position column) of the library's stored events."""
    return ("stored_events", "rowid") if store_url.startswith("sqlite") else ("ledger_events", "notification_id")


def sql(store_url: str, statement: str) -> str:
    return statement if store_url.startswith("sqlite") else statement.replace("?", "%s")


def run(connection: Any, store_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    cursor = connection.execute(sql(store_url, statement), params)
    return list(cursor.fetchall()) if cursor.description else []


def verify_lines(store_url: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = cli("verify", *args, "--format", "json", store=store_url)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> str:
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(generate(1_200, 40, 400, seed=5)) + b"\n")
    assert cli("ingest", str(stream), "--dead-letter", str(tmp_path / "dead.jsonl"), store=store_url).returncode == 0
    return store_url


def test_a_sound_ledger_verifies_and_its_digest_matches(ledger: str, tmp_path: Path) -> None:
    saved = tmp_path / "digest.json"
    result = cli("digest", "--format", "json", store=ledger)
    assert result.returncode == 0, result.stderr
    saved.write_text(result.stdout)
    digest = json.loads(result.stdout)
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 0, lines
    assert lines == [{"position": digest["position"], "events": digest["events"], "members": digest["members"],
                      "discrepancies": 0, "digest": "matches"}]  # fmt: skip
    assert digest["members"] == 40 and digest["events"] == digest["position"] > 1_200
    # More events afterwards change the current digest, not the proof about the saved position.
    more = b'{"type":"purchase","event_id":"late-1","member_id":"M000001","occurred_at":"2025-06-01T00:00:00Z",' \
           b'"transaction_id":"late-t1","amount":"10.00","currency":"USD"}\n'  # fmt: skip
    assert cli("ingest", "-", stdin=more, store=ledger).returncode == 0
    later = json.loads(cli("digest", "--format", "json", store=ledger).stdout)
    assert later["position"] > digest["position"] and later["digest"] != digest["digest"]
    assert verify_lines(ledger, "--digest", str(saved))[0] == 0


@pytest.mark.parametrize(
    ("edit", "view", "fragment"),
    [
        ("UPDATE pl_members SET balance = balance + 1 WHERE member_id = 'M000007'", "members",
         "balance: "),
        ("UPDATE pl_audit SET tier = 'platinum' WHERE member_id = 'M000003' AND version = 4", "audit",
         "tier: 'platinum'"),
        ("UPDATE pl_audit SET hash = '" + "0" * 64 + "' WHERE member_id = 'M000011' AND version = 2", "audit",
         "hash: "),
        ("DELETE FROM pl_lots WHERE member_key IN (SELECT member_key FROM pl_members WHERE member_id = 'M000012')",
         "members", "open lots differ"),
        ("DELETE FROM pl_lot_changes WHERE position = (SELECT MAX(position) FROM pl_lot_changes)", "members",
         "lot movements"),
    ],
)  # fmt: skip
def test_a_view_row_edited_by_hand_is_caught_and_a_rebuild_repairs_it(
    ledger: str, edit: str, view: str, fragment: str
) -> None:
    assert cli("balances", store=ledger).returncode == 0  # the views caught up
    with database(ledger) as connection:
        run(connection, ledger, edit)
    status, lines = verify_lines(ledger)
    assert status == 1
    findings = lines[:-1]
    assert findings and lines[-1]["discrepancies"] == len(findings)
    assert any(line["view"] == view and fragment in line["detail"] for line in findings), findings
    one_line_error(cli("verify", store=ledger), 1, "discrepancies between the views and the log")
    assert cli("rebuild", store=ledger).returncode == 0
    assert verify_lines(ledger)[0] == 0


def test_a_stored_event_changed_after_the_digest_is_caught(ledger: str, tmp_path: Path) -> None:
    saved = tmp_path / "digest.json"
    saved.write_text(cli("digest", "--format", "json", store=ledger).stdout)
    table, position = events_table(ledger)
    with database(ledger) as connection:
        [(state,)] = run(connection, ledger, f"SELECT state FROM {table} WHERE {position} = 120")
        edited = bytes(state).replace(b'"event_id":"', b'"event_id":"forged-', 1)
        assert edited != bytes(state)
        run(connection, ledger, f"UPDATE {table} SET state = ? WHERE {position} = 120", (edited,))
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 1 and lines[-1]["digest"] == "differs"
    assert any(line["view"] == "log" and "digest at position" in line["detail"] + line["where"] for line in lines)
    assert any(line["view"] == "audit" and "position 120" in line["where"] for line in lines)  # the view disagrees


def test_a_stored_event_deleted_or_replaced_after_the_digest_is_caught(ledger: str, tmp_path: Path) -> None:
    saved = tmp_path / "digest.json"
    saved.write_text(cli("digest", "--format", "json", store=ledger).stdout)
    table, position = events_table(ledger)
    columns = f"{position}, originator_id, originator_version, topic, state"
    with database(ledger) as connection:
        [row] = run(connection, ledger, f"SELECT {columns} FROM {table} WHERE {position} = 200")
        run(connection, ledger, f"DELETE FROM {table} WHERE {position} = 200")
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 1 and lines[-1]["digest"] == "differs"
    assert lines[-1]["events"] == json.loads(saved.read_text())["events"] - 1

    forged = bytes(row[4]).replace(b'"event_id":"', b'"event_id":"inserted-', 1)
    with database(ledger) as connection:  # a forged event inserted by hand where the deleted one was
        run(connection, ledger, f"INSERT INTO {table} ({columns}) VALUES (?, ?, ?, ?, ?)", (*row[:4], forged))
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 1 and lines[-1]["digest"] == "differs"
    assert lines[-1]["events"] == json.loads(saved.read_text())["events"]


def test_a_digest_file_that_is_not_one_is_a_usage_error(ledger: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for content in ("not json", '{"position": 1}', '{"position": -1, "digest": "x", "members": 0, "events": 0}'):
        bad.write_text(content)
        result = cli("verify", "--digest", str(bad), store=ledger)
        assert result.returncode == 2 and "is not a saved digest" in result.stderr, result.stderr
    assert cli("verify", "--digest", str(tmp_path / "missing.json"), store=ledger).returncode == 2
