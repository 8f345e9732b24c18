"""`migrate FILE.csv`: a legacy export carried over as one opening balance per member, validated as a whole
first, applied once however often it is run."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.legacy_csv import LINE_MAX_BYTES, file_digest
from devkit.streamgen import DEFAULT_START, LEGACY_TIERS, legacy_balances, legacy_csv
from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.errors import CommandError
from points_ledger.migrate_command import _applied
from tests.cli_helpers import cli, one_line_error

CUT_OVER = DEFAULT_START - timedelta(days=1)
AT = CUT_OVER.isoformat().replace("+00:00", "Z")


def migrate(store: str, path: Path, *extra: str) -> tuple[int, dict[str, Any] | None, str]:
    """The exit status, the summary (the last line) with each outcome's rows gathered under `members_<outcome>`
    (the lines before it, one per row), and stderr."""
    result = cli("migrate", str(path), "--at", AT, "--format", "json", *extra, store=store)
    if result.returncode != 0:
        return result.returncode, None, result.stderr
    *rows, summary = [json.loads(line) for line in result.stdout.splitlines()]
    for outcome in ("migrated", "skipped", "rejected"):
        summary[f"members_{outcome}"] = [row for row in rows if row["outcome"] == outcome]
    summary["members_migrated"] = [row["member_id"] for row in summary["members_migrated"]]
    return result.returncode, summary, result.stderr


def test_a_legacy_export_is_carried_over_once_with_balances_tiers_expiries_and_enrollment_dates(
    store_url: str, tmp_path: Path
) -> None:
    rows = legacy_balances(150, seed=4)
    export = tmp_path / "legacy.csv"
    export.write_bytes(legacy_csv(rows))
    status, summary, err = migrate(store_url, export)
    assert status == 0, err
    assert summary is not None
    assert summary["rows"] == summary["migrated"] == 150
    assert summary["members_migrated"] == [row.member_id for row in rows]  # one line per row, in file order
    assert summary["skipped"] == summary["rejected"] == 0

    app = LedgerApplication(parse_store_url(store_url), Program())
    try:
        events = app.recorder.max_notification_id()
        for row in rows:
            member = app.member(row.member_id)
            assert member is not None
            assert member.balance == row.balance
            granted = row.tier if row.tier is not None else "member"
            assert member.tier == max(granted, "member", key=LEGACY_TIERS.index)
            assert member.enrolled_at == (row.enrolled_at or CUT_OVER)
            if row.balance > 0:
                assert [lot.expires_at for lot in member.lots] == [row.expires_at or CUT_OVER + timedelta(days=365)]
            opening = [e for e in app.member_events(row.member_id) if isinstance(e, Member.OpeningBalanceApplied)]
            assert len(opening) == 1 and opening[0].legacy_ref is not None
            assert opening[0].legacy_ref.startswith("legacy.csv:")
    finally:
        app.close()
    assert {row.tier for row in rows} >= {None, *LEGACY_TIERS} and any(row.balance < 0 for row in rows)

    status, again, err = migrate(store_url, export)  # the same file again: nothing changes
    assert status == 0, err
    assert again is not None and again["migrated"] == 0 and again["skipped"] == 150
    app = LedgerApplication(parse_store_url(store_url), Program())
    try:
        assert app.recorder.max_notification_id() == events
    finally:
        app.close()

    corrected = tmp_path / "corrected.csv"  # another file cannot give a member a second opening balance
    corrected.write_bytes(export.read_bytes().replace(b"M000000,", b"M000000,1", 1))
    status, third, err = migrate(store_url, corrected)
    assert status == 0, err
    assert third is not None and third["migrated"] == 0 and third["rejected"] == 150
    rejected = third["members_rejected"]
    assert isinstance(rejected, list) and {entry["reason"] for entry in rejected} == {"duplicate_opening_balance"}


BAD_EXPORT = """member_id,balance,tier,expires_at
A,12.5,,
B,5,diamond,
C,7,gold,2023-01-01T00:00:00Z
D,7,gold,2024-06-01T00:00:00
E,--5,,
F,9,silver,2025-01-01T00:00:00Z
F,3,,
,4,,
G,1
H,1000000000000,,
I,-20,,
"""


def test_invalid_rows_are_listed_with_line_numbers_and_nothing_is_applied_unless_told(
    sqlite_url: str, tmp_path: Path
) -> None:
    export = tmp_path / "bad.csv"
    export.write_text(BAD_EXPORT)
    status, _, err = migrate(sqlite_url, export)
    assert status == 1
    for expected in [
        "line 2 (A): balance: must be a whole number", "line 3 (B): tier: must be one of the program's tiers",
        "line 4 (C): ", "expires_at 2023-01-01T00:00:00Z is not later than the cut-over time", "line 5 (D): ",
        "timezone",
        "line 6 (E): balance", "line 8 (F): member F is also on line 7", "line 9 (no member_id): member_id",
        "line 10 (G): the row does not have one cell per column", "line 11 (H): points",
        "9 of 11 rows are invalid; nothing was applied", "1 of them expire by the cut-over time --at",
        "give an earlier --at",
    ]:  # fmt: skip
        assert expected in err, expected
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # not even a ledger was created

    status, summary, err = migrate(sqlite_url, export, "--skip-invalid")
    assert status == 0, err
    assert summary is not None and summary["members_migrated"] == ["F", "I"] and summary["skipped"] == 9
    skipped = summary["members_skipped"]
    assert isinstance(skipped, list) and [entry["line"] for entry in skipped] == [2, 3, 4, 5, 6, 8, 9, 10, 11]


def test_expiries_before_the_default_cut_over_name_at_and_how_to_set_it(sqlite_url: str, tmp_path: Path) -> None:
    """The README's example as a newcomer runs it: without --at the cut-over is now, and expiries before it
    are refused with what to do, not with the wire contract's occurred_at."""
    export = tmp_path / "legacy.csv"
    export.write_text("member_id,balance,tier,expires_at\nA,100,,2024-06-30T00:00:00Z\nB,50,,\n")
    result = cli("migrate", str(export), store=sqlite_url)
    assert result.returncode == 1
    assert "line 2 (A): expires_at 2024-06-30T00:00:00Z is not later than the cut-over time" in result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("points-ledger: error: 1 of 2 rows are invalid; nothing was applied")
    for fragment in ("the cut-over time, which is --at and defaults to now", "give --at the time the legacy "
                     "balances were taken", "--at 2024-01-01T00:00:00Z"):  # fmt: skip
        assert fragment in error, error
    assert "occurred_at" not in result.stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    done = cli("migrate", str(export), "--at", "2024-01-01T00:00:00Z", store=sqlite_url)
    assert done.returncode == 0, done.stderr


def test_a_file_that_is_not_a_legacy_export_is_refused_as_a_whole(sqlite_url: str, tmp_path: Path) -> None:
    cases = {
        "columns.csv": b"member,points\nA,1\n",
        "extra.csv": b"member_id,balance,colour\nA,1,blue\n",
        "empty.csv": b"",
        "utf16.csv": "member_id,balance\nA,1\n".encode("utf-16"),
    }
    reasons = {
        "columns.csv": "the header must name member_id, balance",
        "extra.csv": "found member_id, balance, colour",
        "empty.csv": "is empty: a header line is required",
        "utf16.csv": "is not UTF-8 text",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        status, _, err = migrate(sqlite_url, path)
        assert status == 1 and reasons[name] in err, (name, err)


def test_a_pipe_or_an_overlong_line_is_refused_before_anything_is_applied(sqlite_url: str, tmp_path: Path) -> None:
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    one_line_error(migrate_raw(sqlite_url, fifo), 1, "is not a regular file", "reads the file twice")
    long_line = tmp_path / "long.csv"
    long_line.write_text("member_id,balance\nA," + "1" * (LINE_MAX_BYTES + 1) + "\n")
    one_line_error(migrate_raw(sqlite_url, long_line), 1, f"a line longer than {LINE_MAX_BYTES} bytes")
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # nothing applied, no ledger created


def migrate_raw(store: str, path: Path) -> subprocess.CompletedProcess[str]:
    return cli("migrate", str(path), "--at", AT, store=store)


def test_a_file_changed_between_its_check_and_its_application_stops_migrate(tmp_path: Path) -> None:
    checked = legacy_csv(legacy_balances(20, seed=5))
    export = tmp_path / "export.csv"
    export.write_bytes(checked)
    with open(export, "rb") as binary:
        digest = file_digest(binary, export.name)
    export.write_bytes(checked.replace(b"M000003,", b"M000003,1", 1))  # written again after it was checked
    app = LedgerApplication(parse_store_url("memory://"), Program())
    try:
        applied = _applied(app, export, CUT_OVER, Program().acceptance(), digest=digest, on_batch=lambda _: None)
        with pytest.raises(CommandError, match="changed while it was migrated"):
            for _ in applied:
                pass
    finally:
        app.close()
