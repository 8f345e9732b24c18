"""Memory does not grow with rows or members: each streaming piece of `migrate`, `reconcile`, `correct` and
`balances` is run on a generated input and on one ten times larger, and the Python heap's peak (tracemalloc,
not a clock) stays under a fixed bound and about the same for both."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import consumers.legacy_csv
from consumers.json_stream import VALUE_MAX_CHARS, JsonStreamError, fields
from consumers.legacy_csv import FileLines, file_digest, migrate, read_balances, read_rows
from consumers.member_table import MemberTable
from devkit.streamgen import DEFAULT_START, legacy_balances, legacy_csv
from ledger.application import LedgerApplication
from ledger.member import member_uuid
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.report_files import ReportWriter
from projections import queries, reconcile
from projections.defaults import REPORT_ITEMS
from projections.runner import Projections

CUT_OVER = DEFAULT_START - timedelta(days=1)
#: The sizes compared: the larger is ten times the smaller.
SMALL, LARGE = 2_000, 20_000


def peak_bytes(work: Callable[[], object]) -> int:
    """The Python heap's peak above where it stood when `work` started."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


#: pydantic-core keeps up to 16,384 strings met in JSON (fixed in size, filled as rows are parsed; tracemalloc
#: counts each replacement as new), about 72 bytes each.
PYDANTIC_STRING_CACHE_BYTES = 16_384 * 80


def bounded(small: int, large: int, bound: int, *, fixed_caches: int = 64 * 1024) -> None:
    """Both peaks under `bound`, and ten times the input costs at most a quarter more (not ten times), plus
    what fixed-size caches take while they fill."""
    assert small < bound and large < bound, (small, large, bound)
    assert large < small * 1.25 + fixed_caches, (small, large)


def export(tmp_path: Path, members: int) -> Path:
    path = tmp_path / f"legacy-{members}.csv"
    path.write_bytes(legacy_csv(legacy_balances(members, seed=3)))
    return path


def checked_rows(path: Path) -> int:
    """Every row of a legacy export read and checked (nothing applied); how many there were."""
    with path.open("rb") as binary:
        digest = file_digest(binary, path.name)
        binary.seek(0)
        return sum(1 for _ in read_rows(FileLines(binary, path.name), CUT_OVER, Program().acceptance(), digest))


def test_a_legacy_export_is_checked_row_by_row(tmp_path: Path) -> None:
    small, large = export(tmp_path, 1_000), export(tmp_path, 10_000)
    small_peak, large_peak = peak_bytes(lambda: checked_rows(small)), peak_bytes(lambda: checked_rows(large))
    bounded(small_peak, large_peak, 2 * 1024**2, fixed_caches=PYDANTIC_STRING_CACHE_BYTES)


def test_a_balance_file_is_merged_with_the_ledgers_side_member_by_member(tmp_path: Path) -> None:
    def compare(path: Path, members: int) -> None:
        ledger = ((f"M{index:06d}", reconcile.Side(index % 7, None)) for index in range(0, members, 2))
        tally = reconcile.Tally()
        with MemberTable() as table, path.open("rb") as binary:
            assert not list(read_balances(FileLines(binary, path.name), table))
            sides = ((member, reconcile.Side(balance, tier)) for member, balance, tier in table.in_order())
            for member_id, ours, theirs in reconcile.merged(ledger, sides):
                tally.add(reconcile.discrepancy(member_id, ours, theirs))
        assert tally.compared == members

    small, large = balance_file(tmp_path, SMALL), balance_file(tmp_path, LARGE)
    bounded(peak_bytes(lambda: compare(small, SMALL)), peak_bytes(lambda: compare(large, LARGE)), 2 * 1024**2)


def balance_file(tmp_path: Path, members: int) -> Path:
    """Another system's balances (`member_id,balance,tier`), in no particular order."""
    path = tmp_path / f"balances-{members}.csv"
    rows = [f"M{index:06d},{index % 11},{'gold' if index % 3 else ''}" for index in range(members)]
    path.write_text("member_id,balance,tier\n" + "\n".join(reversed(rows)) + "\n")
    return path


def report_file(tmp_path: Path, items: int) -> Path:
    path = tmp_path / f"report-{items}.json"
    events = [{"version": 1, "event": "PointsEarned"}] * 5
    item = {"member_id": "", "kind": "balance", "ledger_balance": 5, "other_balance": 3, "difference": 2,
            "ledger_tier": "gold", "other_tier": None, "last_events": events}  # fmt: skip
    with path.open("w", encoding="utf-8") as file:
        writer = ReportWriter(file, {"as_of": None, "ledger": {"id": "ab", "position": 9}}, as_csv=False)
        for index in range(items):
            writer.item({**item, "member_id": f"M{index:06d}"})
        writer.finish({"discrepancies": items})
    assert len(json.loads(path.read_text())[REPORT_ITEMS]) == items  # the report is one JSON document
    return path


def test_a_report_is_read_an_item_at_a_time(tmp_path: Path) -> None:
    def read(path: Path, items: int) -> None:
        seen = 0
        with path.open("rb") as binary:
            for key, value in fields(binary, path.name, REPORT_ITEMS):
                if key == REPORT_ITEMS:
                    seen += sum(1 for _ in value)
        assert seen == items

    small, large = report_file(tmp_path, SMALL), report_file(tmp_path, LARGE)
    bounded(peak_bytes(lambda: read(small, SMALL)), peak_bytes(lambda: read(large, LARGE)), 1024**2)


def test_a_report_with_one_value_too_long_is_refused() -> None:
    text = '{"items": ["' + "x" * (VALUE_MAX_CHARS + 10) + '"]}'
    with pytest.raises(JsonStreamError, match="longer than"):
        list(fields(io.BytesIO(text.encode()), "big.json", REPORT_ITEMS))


def view_members(app: LedgerApplication, members: int) -> None:
    """`members` rows in the members view of an empty ledger, written as the view's own tables hold them (a
    ledger of 20,000 real members takes a minute to build; what is measured here is reading the view)."""
    views = Projections(app)
    with views.db.transaction(commit=True) as sql:
        sql.executemany(
            "INSERT INTO pl_members (member_key, member_id, balance, debt, tier, ledger_time, enrolled_at, version) "
            "VALUES (?, ?, ?, 0, 'member', 0, 0, 1)",
            [(str(member_uuid(f"M{index:06d}")), f"M{index:06d}", index % 900) for index in range(members)],
        )


def balances_read(store: str, members: int) -> int:
    """The Python peak of reading `members` balances from the views."""
    app = LedgerApplication(parse_store_url(store), Program())
    try:
        view_members(app, members)

        def read() -> None:
            with Projections(app).reading() as (sql, _):
                rows = queries.balances(sql, None)
                assert next(rows)["member_id"] == "M000000"
                if sql.dialect == "postgresql":  # the server holds the answer, not this process
                    assert sql.scalar("SELECT count(*) FROM pg_cursors WHERE name LIKE ?", ("pl_stream_%",)) == 1
                assert sum(1 for _ in rows) == members - 1

        return peak_bytes(read)
    finally:
        app.close()


def test_balances_are_streamed_from_the_views(store_url: str, second_store: str) -> None:
    bounded(balances_read(store_url, SMALL), balances_read(second_store, LARGE), 2 * 1024**2)


@pytest.fixture
def second_store(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Another empty store of the same kind as `store_url`."""
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'second.db'}"
    return str(request.getfixturevalue("second_postgres_url"))


def test_migrate_holds_one_batch_of_members_however_many_there_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers.legacy_csv, "MIGRATE_BATCH", 30)  # ten batches and a hundred, quickly
    acceptance = Program().acceptance()
    small, large = export(tmp_path, 300), export(tmp_path, 3_000)

    def apply(path: Path, store: str) -> None:
        app = LedgerApplication(parse_store_url(store), Program())
        try:
            with path.open("rb") as binary:
                digest = file_digest(binary, path.name)
                binary.seek(0)
                rows = read_rows(FileLines(binary, path.name), CUT_OVER, acceptance, digest)
                outcomes = {outcome for _, outcome, _ in migrate(app, rows, path.name)}
            assert outcomes == {"migrated"}
        finally:
            app.close()

    bounded(
        peak_bytes(lambda: apply(small, f"sqlite:///{tmp_path / 'small.db'}")),
        peak_bytes(lambda: apply(large, f"sqlite:///{tmp_path / 'large.db'}")),
        32 * 1024**2,
        fixed_caches=PYDANTIC_STRING_CACHE_BYTES,
    )
