"""Finding and fixing discrepancies: `reconcile` against a balance file or a shadow ledger, `correct` with
compensating adjustments (never edits), and the loop reconcile, correct, reconcile reaching zero, through a
SIGKILL in the middle of `correct`."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections.defaults import REPORT_ITEMS
from tests.cli_helpers import cli
from tests.messages import wire

#: Silver and gold earning more per unit (a multiplier applied wrongly): balances differ for every member who
#: bought in those tiers; tiers (from credits, not points) do not.
CORRECTED_PROGRAM = """tiers = [
  { name = "member", threshold = 0, multiplier = "1" },
  { name = "silver", threshold = 1000, multiplier = "1.5" },
  { name = "gold", threshold = 5000, multiplier = "2" },
  { name = "platinum", threshold = 15000, multiplier = "2" },
]
"""


def ok(*args: str, store: str, env: dict[str, str] | None = None) -> list[Any]:
    done = cli(*args, "--format", "json", store=store, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def ledger_with_stream(store: str, tmp_path: Path, program: Path | None = None) -> None:
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(generate(1_500, 100, 300, seed=19)) + b"\n")
    extra = ["--program", str(program)] if program is not None else []
    done = cli(*extra, "ingest", str(stream), "--dead-letter", str(tmp_path / "dl.jsonl"), store=store)
    assert done.returncode == 0, done.stderr


def balances(store: str) -> dict[str, tuple[int, str]]:
    return {row["member_id"]: (row["balance"], row["tier"]) for row in ok("balances", store=store)}


def outcomes(lines: list[Any]) -> dict[str, str]:
    """Each member's outcome in `correct`'s output (every line but the summary)."""
    return {line["member_id"]: line["outcome"] for line in lines[:-1]}


def legacy_file(path: Path, rows: dict[str, int], tiers: dict[str, str] | None = None) -> Path:
    lines = ["member_id,balance,tier" if tiers else "member_id,balance"]
    lines += [
        f"{member},{balance}" + (f",{tiers.get(member, '')}" if tiers else "") for member, balance in rows.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def corrections_of(store: str) -> dict[str, list[Member.Event]]:
    app = LedgerApplication(parse_store_url(store), Program())
    try:
        return {
            member_id: [
                e for e in app.member_events(member_id) if e.provenance.get("event_id", "").startswith("correct-")
            ]
            for member_id in app.member_ids()
        }
    finally:
        app.close()


def test_reconcile_correct_reconcile_reaches_zero_on_a_legacy_file_with_a_few_members_off(
    store_url: str, tmp_path: Path
) -> None:
    ledger_with_stream(store_url, tmp_path)
    ours = balances(store_url)
    chance = random.Random(3)
    theirs = {member: balance for member, (balance, _) in ours.items()}
    off = chance.sample(sorted(m for m, b in theirs.items() if b >= 60), 6)  # a few percent, by random amounts
    for member in off:
        theirs[member] += chance.choice([-1, 1]) * chance.randint(1, 60)
    theirs["LEGACY-ONLY"] = 75  # a member the ledger never heard of
    export = legacy_file(tmp_path / "legacy.csv", theirs)

    report_path = tmp_path / "report.json"
    summary = ok("reconcile", "--against", str(export), "--report", str(report_path), store=store_url)[-1]
    assert summary["members_compared"] == len(ours) + 1
    assert summary["discrepancies"] == len(off) + 1 == summary["balance"] + summary["missing_in_ledger"]
    report = json.loads(report_path.read_text())
    items = {item["member_id"]: item for item in report["items"]}
    for member in off:
        item = items[member]
        assert (item["ledger_balance"], item["other_balance"]) == (ours[member][0], theirs[member])
        assert item["difference"] == ours[member][0] - theirs[member] != 0
        assert item["last_events"] and item["last_events"][-1]["balance"] == ours[member][0]  # context, latest last
    assert items["LEGACY-ONLY"]["kind"] == "missing_in_ledger" and items["LEGACY-ONLY"]["last_events"] == []

    assert report["ledger"]["id"] and report["ledger"]["position"] == summary["position"]

    before = corrections_of(store_url)
    planned = ok("correct", "--from", str(report_path), "--reason", "legacy sync", "--operator", "alice", "--dry-run",
                 store=store_url)  # fmt: skip
    assert {p["member_id"]: p["points"] for p in planned[:-1] if p["outcome"] == "planned"} == {
        m: -items[m]["difference"] for m in off
    }
    assert outcomes(planned)["LEGACY-ONLY"] == "not_corrected"  # correct never creates a member
    assert corrections_of(store_url) == before  # a dry run changes nothing

    done = ok("correct", "--from", str(report_path), "--reason", "legacy sync", "--operator", "alice", store=store_url)
    assert done[-1]["corrections"] == len(off) and done[-1]["rejected"] == 0 and done[-1]["not_corrected"] == 1
    assert {m: o for m, o in outcomes(done).items() if o == "corrected"} == dict.fromkeys(off, "corrected")
    again = ok("correct", "--from", str(report_path), "--reason", "legacy sync", "--operator", "alice", store=store_url)
    assert again[-1]["corrections"] == 0 and again[-1]["already_corrected"] == len(off)  # corrects once

    after = ok("reconcile", "--against", str(export), "--report", str(tmp_path / "after.json"), store=store_url)[-1]
    assert after["discrepancies"] == after["missing_in_ledger"] == 1  # only the member the ledger never had
    carried = legacy_file(tmp_path / "carry.csv", {"LEGACY-ONLY": 75})
    assert cli("migrate", str(carried), store=store_url).returncode == 0  # carried over the way members come in
    after = ok("reconcile", "--against", str(export), "--report", str(tmp_path / "after.csv"), store=store_url)[-1]
    assert after["discrepancies"] == 0
    header = ["member_id", "kind", "ledger_balance", "other_balance", "difference", "ledger_tier", "other_tier"]
    assert list(csv.reader(io.StringIO((tmp_path / "after.csv").read_text()))) == [[*header, "last_events"]]
    trail = ok("history", off[0], store=store_url)
    correction = next(row for row in trail if row["provenance"]["event_id"].startswith("correct-"))
    assert correction["event"] == "PointsAdjusted" and correction["change"] == -items[off[0]]["difference"]
    assert (correction["details"]["operator"], correction["details"]["reason"]) == ("alice", "legacy sync")
    assert correction["effective_at"] == trail[-2]["effective_at"]  # at the member's ledger time: nothing expired first


def test_every_kind_of_discrepancy_is_reported_and_only_balances_are_corrected(sqlite_url: str, tmp_path: Path) -> None:
    ledger_with_stream(sqlite_url, tmp_path)
    ours = balances(sqlite_url)
    members = sorted(ours)
    rich = next(m for m in members[2:] if ours[m][0] > 100)
    theirs = {m: b for m, (b, _) in ours.items() if m != members[0]}  # members[0]: missing in the other system
    other_tier = "platinum" if ours[members[1]][1] != "platinum" else "member"
    tiers = {members[1]: other_tier}  # a tier-only difference; empty tier cells are not compared
    theirs[rich] = -50  # removing more than the balance: the rules refuse it
    export = legacy_file(tmp_path / "pos.csv", theirs, tiers)
    report_path = tmp_path / "report.json"
    summary = ok("reconcile", "--against", str(export), "--report", str(report_path), store=sqlite_url)[-1]
    assert (summary["missing_in_other"], summary["tier"], summary["balance"]) == (1, 1, 1)
    lines = ok("correct", "--from", str(report_path), "--reason", "pos sync", "--operator", "bob", store=sqlite_url)
    assert (lines[-1]["corrections"], lines[-1]["rejected"], lines[-1]["not_corrected"]) == (0, 1, 2)
    assert [line for line in lines if line.get("outcome") == "rejected"] == [
        {"member_id": rich, "outcome": "rejected", "points": -(ours[rich][0] + 50),
         "event_id": next(line["event_id"] for line in lines if line.get("member_id") == rich),
         "reason": "insufficient_points"}
    ]  # fmt: skip
    assert {line["member_id"]: line["kind"] for line in lines if line.get("outcome") == "not_corrected"} == {
        members[0]: "missing_in_other", members[1]: "tier",
    }  # fmt: skip
    again = ok("correct", "--from", str(report_path), "--reason", "pos sync", "--operator", "bob", store=sqlite_url)
    assert (again[-1]["already_corrected"], again[-1]["rejected"]) == (0, 1)  # refused then, not made since
    assert next(line for line in again if line.get("member_id") == rich)["reason"].startswith("refused by the rules")


def test_a_shadow_ledger_with_a_corrected_program_is_reconciled_and_its_differences_corrected(
    postgres_url: str, tmp_path: Path
) -> None:
    ledger_with_stream(postgres_url, tmp_path)
    program = tmp_path / "corrected.toml"
    program.write_text(CORRECTED_PROGRAM)
    shadow = f"sqlite:///{tmp_path / 'shadow.db'}"
    ledger_with_stream(shadow, tmp_path, program)
    report_path = tmp_path / "shadow.json"
    summary = ok("reconcile", "--against-ledger", shadow, "--report", str(report_path), store=postgres_url)[-1]
    assert summary["discrepancies"] > 20 and summary["discrepancies"] == summary["balance"]
    report = json.loads(report_path.read_text())
    assert report["against"]["store"] == shadow and report["against"]["position"] > 0

    crashed = cli("correct", "--from", str(report_path), "--reason", "earn rate fix", "--operator", "carol",
                  "--batch-size", "7", store=postgres_url, env={"POINTS_LEDGER_CRASH_AFTER_BATCH": "2"})  # fmt: skip
    assert crashed.returncode == -9, crashed.stderr  # killed by SIGKILL after its second batch
    partial = corrections_of(postgres_url)
    assert sum(len(events) for events in partial.values()) == 14  # two whole batches, nothing of a third
    assert all(len(events) <= 1 for events in partial.values())  # each member's correction whole or absent

    done = ok("correct", "--from", str(report_path), "--reason", "earn rate fix", "--operator", "carol",
              store=postgres_url)[-1]  # fmt: skip
    assert done["already_corrected"] == 14
    after = ok("reconcile", "--against-ledger", shadow, "--report", str(tmp_path / "after.json"), store=postgres_url)[
        -1
    ]
    assert done["not_corrected"] == done["rejected"] == 0
    assert after["discrepancies"] == 0  # the loop reaches zero


def test_reconcile_and_correct_refuse_what_they_cannot_use(sqlite_url: str, tmp_path: Path) -> None:
    ledger_with_stream(sqlite_url, tmp_path)
    export = legacy_file(tmp_path / "ok.csv", {"M000001": 5})
    report = str(tmp_path / "r.json")
    both = cli("reconcile", "--against", str(export), "--against-ledger", sqlite_url, "--report", report,
               store=sqlite_url)  # fmt: skip
    assert both.returncode == 2 and "exactly one of --against" in both.stderr
    neither = cli("reconcile", "--report", report, store=sqlite_url)
    assert neither.returncode == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("member_id,balance\nA,1.5\nB,2\nB,3\n")
    refused = cli("reconcile", "--against", str(bad), "--report", report, store=sqlite_url)
    assert refused.returncode == 1
    assert (
        "line 2 (A): balance: must be a whole number" in refused.stderr
        and "line 4 (B): member B is also on line 3" in refused.stderr
    )
    not_a_report = tmp_path / "nonsense.json"
    not_a_report.write_text('{"hello": 1}')
    wrong = cli("correct", "--from", str(not_a_report), "--reason", "r", "--operator", "o", store=sqlite_url)
    assert wrong.returncode == 1 and "is not a reconcile report" in wrong.stderr
    missing = cli("reconcile", "--against-ledger", f"sqlite:///{tmp_path / 'nowhere.db'}", "--report", report,
                  store=sqlite_url)  # fmt: skip
    assert missing.returncode != 0 and not (tmp_path / "nowhere.db").exists()


def test_reconcile_reads_a_balance_file_from_a_pipe_once(sqlite_url: str, tmp_path: Path) -> None:
    ledger_with_stream(sqlite_url, tmp_path)
    ours = balances(sqlite_url)
    theirs = {member: balance + 1 for member, (balance, _) in sorted(ours.items(), reverse=True)}  # any order
    pipe = tmp_path / "export.csv"
    os.mkfifo(pipe)
    content = legacy_file(tmp_path / "export-file.csv", theirs).read_bytes()

    def feed() -> None:
        with pipe.open("wb") as writer:
            writer.write(content)

    feeder = threading.Thread(target=feed)
    feeder.start()
    summary = ok("reconcile", "--against", str(pipe), "--report", str(tmp_path / "r.json"), store=sqlite_url)[-1]
    feeder.join()
    assert summary["discrepancies"] == summary["balance"] == len(ours) and summary["net_difference"] == -len(ours)


def test_reconcile_as_of_shows_the_changes_up_to_that_time_only(sqlite_url: str, tmp_path: Path) -> None:
    """A comparison as of T explains the balance of then: the member's later changes (a purchase that lifts
    the tier, a goodwill adjustment) are not its context."""
    stream = tmp_path / "m1.jsonl"
    stream.write_text("".join(json.dumps(message) + "\n" for message in [
        wire("enrollment", "M1", "2024-01-01"),
        wire("purchase", "M1", "2024-02-01", transaction_id="t1", amount="100.00", currency="USD"),
        wire("purchase", "M1", "2024-06-01", transaction_id="t2", amount="9000.00", currency="USD"),
        wire("adjustment", "M1", "2024-07-01", adjustment_id="a1", points=5, reason="goodwill", operator="ann"),
    ]))  # fmt: skip
    assert cli("ingest", str(stream), store=sqlite_url).returncode == 0
    export = legacy_file(tmp_path / "pos.csv", {"M1": 0})
    as_of = "2024-03-01T00:00:00Z"

    def reported(*extra: str) -> dict[str, Any]:
        report_path = tmp_path / f"report{len(extra)}.json"
        ok("reconcile", "--against", str(export), "--report", str(report_path), *extra, store=sqlite_url)
        [item] = json.loads(report_path.read_text())[REPORT_ITEMS]
        return dict(item)

    then = reported("--as-of", as_of)
    times = [datetime.fromisoformat(event["effective_at"]) for event in then["last_events"]]
    assert times and max(times) <= datetime.fromisoformat(as_of)
    assert (then["last_events"][-1]["balance"], then["last_events"][-1]["tier"]) == (
        then["ledger_balance"], then["ledger_tier"],
    )  # fmt: skip
    assert then["ledger_tier"] == "member" and "adjustment" not in {event["event"] for event in then["last_events"]}
    latest = reported()
    assert latest["last_events"][-1]["balance"] == latest["ledger_balance"] > then["ledger_balance"]
    assert latest["ledger_tier"] != "member"
