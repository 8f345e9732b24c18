"""`correct` trusts nothing it can check: a report names its ledger and log position, and every item is recomputed
from the ledger as of that position before anything is recorded. What it cannot check is the other system's
own number."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.identity import ledger_id
from ledger.storage.store import parse_store_url
from tests.cli_helpers import SAMPLE, cli, one_line_error
from tests.test_repair import balances, ledger_with_stream, legacy_file, ok, outcomes


def log_head(store: str) -> int:
    app = LedgerApplication(parse_store_url(store), Program())
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def reconciled(store: str, export: Path, report: Path, *extra: str) -> dict[str, Any]:
    ok("reconcile", "--against", str(export), "--report", str(report), *extra, store=store)
    found: dict[str, Any] = json.loads(report.read_text())
    return found


def correct(store: str, report: Path, *extra: str) -> list[Any]:
    return ok("correct", "--from", str(report), "--reason", "sync", "--operator", "erin", *extra, store=store)


def test_a_report_that_does_not_agree_with_its_ledger_is_refused_whole(sqlite_url: str, tmp_path: Path) -> None:
    ledger_with_stream(sqlite_url, tmp_path)
    ours = balances(sqlite_url)
    members = sorted(ours)
    theirs = {member: balance for member, (balance, _) in ours.items()}
    theirs[members[3]] += 40
    report = reconciled(sqlite_url, legacy_file(tmp_path / "pos.csv", theirs), tmp_path / "report.json")
    off = next(index for index, item in enumerate(report["items"]) if item["member_id"] == members[3])
    head = log_head(sqlite_url)

    def forged(change: Any) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(report))
        change(copy)
        return copy

    def billion(copy: dict[str, Any]) -> None:  # the review's forgery: a difference that makes 1,000,000,000 points
        copy["items"][off]["difference"] = -1_000_000_000

    def ledger_balance(copy: dict[str, Any]) -> None:  # balances that agree with the difference, not with the ledger
        item = copy["items"][off]
        item["ledger_balance"] -= 1_000_000_000
        item["difference"] -= 1_000_000_000

    ghost = {"member_id": "GHOST-1", "kind": "balance", "ledger_balance": 0, "other_balance": 5000,
             "difference": -5000, "ledger_tier": "member", "other_tier": None, "last_events": []}  # fmt: skip
    cases = {
        "another ledger": (lambda r: r["ledger"].update(id="0123456789abcdef"), "was made on ledger 0123456789abcdef"),
        "a ghost member": (lambda r: r["items"].insert(0, ghost), "did not have this member at position"),
        "a billion points": (billion, "do not follow from its balances"),
        "another balance": (ledger_balance, f"the ledger had balance {ours[members[3]][0]}"),
        "a later position": (lambda r: r["ledger"].update(position=head + 1), "beyond this ledger's log"),
        "a member twice": (lambda r: r["items"].append(r["items"][off]), "in member id order, each member once"),
        "no ledger": (lambda r: r["ledger"].pop("id"), "names no ledger"),
        "a kind that does not follow": (lambda r: r["items"][off].update(kind="tier"), "do not follow"),
    }
    for name, (change, reason) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(forged(change)))
        one_line_error(correct_raw(sqlite_url, path), 1, reason, "nothing recorded")
    cut = tmp_path / "cut.json"
    cut.write_text((tmp_path / "report.json").read_text()[:-200])
    one_line_error(correct_raw(sqlite_url, cut), 1, "not valid JSON", "nothing recorded")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    one_line_error(correct_raw(sqlite_url, fifo), 1, "not a regular file")
    assert log_head(sqlite_url) == head  # nothing recorded by any of them

    done = correct(sqlite_url, tmp_path / "report.json")  # the report itself is accepted
    assert done[-1]["corrections"] == 1 and outcomes(done)[members[3]] == "corrected"


def correct_raw(store: str, report: Path) -> Any:
    return cli("correct", "--from", str(report), "--reason", "sync", "--operator", "erin", store=store)


def test_a_correction_is_the_difference_seen_at_the_reports_position_and_is_made_once(
    store_url: str, tmp_path: Path
) -> None:
    ledger_with_stream(store_url, tmp_path)
    ours = balances(store_url)
    member = next(m for m in sorted(ours) if ours[m][0] >= 100)
    theirs = {m: balance for m, (balance, _) in ours.items()}
    theirs[member] -= 30  # the ledger holds 30 points too many
    export = legacy_file(tmp_path / "crm.csv", theirs)
    first = reconciled(store_url, export, tmp_path / "first.json")
    assert [(i["member_id"], i["difference"]) for i in first["items"]] == [(member, 30)]

    last = ok("history", member, store=store_url)[-1]["effective_at"]
    redemption = {
        "type": "redemption", "event_id": "late-redemption", "member_id": member, "redemption_id": "rdm-late",
        "occurred_at": last, "points": 10, "reward": "voucher",
    }  # fmt: skip
    feed = tmp_path / "late.jsonl"
    feed.write_text(json.dumps(redemption) + "\n")
    assert ok("ingest", str(feed), store=store_url)[-1]["recorded"] == 1  # activity after the report
    second = reconciled(store_url, export, tmp_path / "second.json")  # made before the first is applied
    assert second["ledger"]["position"] > first["ledger"]["position"]

    done = correct(store_url, tmp_path / "first.json")
    assert outcomes(done) == {member: "corrected"} and done[0]["points"] == -30  # the difference seen then
    assert balances(store_url)[member][0] == theirs[member] - 10  # the other side's, plus what happened since
    again = correct(store_url, tmp_path / "first.json")
    assert outcomes(again) == {member: "already_corrected"}
    other_report = correct(store_url, tmp_path / "second.json")  # the same discrepancy, seen later: not twice
    assert (
        outcomes(other_report) == {member: "not_corrected"}
        and "corrected since the report" in other_report[0]["reason"]
    )
    assert balances(store_url)[member][0] == theirs[member] - 10

    as_of = ok("history", member, store=store_url)[1]["effective_at"]  # early on: recomputed at that time
    then = reconciled(store_url, export, tmp_path / "then.json", "--as-of", as_of)
    planned = correct(store_url, tmp_path / "then.json", "--dry-run")
    assert planned[-1]["dry_run"] is True and planned[-1]["position"] == then["ledger"]["position"]
    assert planned[-1]["corrections"] + planned[-1]["not_corrected"] == len(then["items"])
    # The ledger's id, kept beside the positions, is no position: the ledger still verifies.
    verified = cli("verify", "--format", "json", store=store_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_ledger_id_is_one_per_ledger_kept_in_it_and_the_same_for_every_process(
    postgres_url: str, tmp_path: Path
) -> None:
    found: list[str] = []

    def ask() -> None:  # first asked by several processes' worth of connections at once
        app = LedgerApplication(parse_store_url(postgres_url), Program())
        try:
            found.append(ledger_id(app))
        finally:
            app.close()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1 and len(found[0]) == 16

    assert cli("ingest", str(SAMPLE), "--dead-letter", "/dev/null", store=postgres_url).returncode == 0
    assert cli("rebuild", store=postgres_url).returncode == 0
    export = legacy_file(tmp_path / "none.csv", {})
    report = reconciled(postgres_url, export, tmp_path / "report.json")
    assert report["ledger"]["id"] == found[0]  # another process, after a rebuild

    shadow = f"sqlite:///{tmp_path / 'shadow.db'}"
    assert cli("ingest", str(SAMPLE), "--dead-letter", "/dev/null", store=shadow).returncode == 0
    versus = ok("reconcile", "--against-ledger", shadow, "--report", str(tmp_path / "s.json"), store=postgres_url)
    assert versus[-1]["discrepancies"] == 0
    shadow_report = json.loads((tmp_path / "s.json").read_text())
    assert shadow_report["ledger"]["id"] == found[0] != shadow_report["against"]["id"]  # a shadow has its own
