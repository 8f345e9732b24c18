"""Tamper evidence against a database writer (the review's experiments): `verify` reads the log itself and catches a
view row edited by hand, a stored event edited, deleted or forged, an edited snapshot and an event id recorded
twice; a rebuild repairs the views but refuses to launder a changed log unless told why; a digest commits to the
log and catches a stored event changed after it was taken."""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ledger.storage.claim_index import TABLE as CLAIMS_TABLE
from tests.cli_helpers import cli, one_line_error
from tests.tampering import (
    database,
    edit_event,
    events_table,
    first_event,
    ingested,
    run,
    snapshots_table,
    verify_lines,
)

#: The member the snapshot tests give more than a snapshot interval of events.
BUSY = "M000001"


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> str:
    return ingested(store_url, tmp_path)


def digest_of(store_url: str, path: Path) -> dict[str, Any]:
    result = cli("digest", "--format", "json", store=store_url)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_sound_ledger_verifies_and_its_digest_matches(ledger: str, tmp_path: Path) -> None:
    saved = tmp_path / "digest.json"
    digest = digest_of(ledger, saved)
    assert digest["chain"] == "sha256"  # no chain key configured
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 0, lines
    assert lines == [{"position": digest["position"], "events": digest["events"], "members": digest["members"],
                      "snapshots": 0, "chain": "sha256", "discrepancies": 0, "digest": "matches"}]  # fmt: skip
    assert digest["members"] == 40 and digest["events"] == digest["position"] > 1_200
    # More events afterwards change the current digest, not the proof about the saved position.
    more = b'{"type":"purchase","event_id":"late-1","member_id":"M000001","occurred_at":"2025-06-01T00:00:00Z",' \
           b'"transaction_id":"late-t1","amount":"10.00","currency":"USD"}\n'  # fmt: skip
    assert cli("ingest", "-", stdin=more, store=ledger).returncode == 0
    later = digest_of(ledger, tmp_path / "later.json")
    assert later["position"] > digest["position"] and later["digest"] != digest["digest"]
    assert verify_lines(ledger, "--digest", str(saved))[0] == 0


@pytest.mark.parametrize(
    ("edit", "view", "fragment"),
    [
        ("UPDATE pl_members SET balance = balance + 1 WHERE member_id = 'M000007'", "members", "balance: "),
        ("UPDATE pl_audit SET tier = 'platinum' WHERE member_id = 'M000003' AND version = 4", "audit",
         "tier: 'platinum'"),
        ("DELETE FROM pl_lots WHERE member_key IN (SELECT member_key FROM pl_members WHERE member_id = 'M000012')",
         "members", "open lots differ"),
        ("DELETE FROM pl_lot_changes WHERE position = (SELECT MAX(position) FROM pl_lot_changes)", "members",
         "lot movements"),
        ("INSERT INTO pl_members SELECT 'no-such-member', 'GHOST', balance, debt, tier, ledger_time, enrolled_at, "
         "version FROM pl_members WHERE member_id = 'M000002'", "members", "of a member the log does not hold"),
    ],
)  # fmt: skip
def test_a_view_row_edited_by_hand_is_caught_and_a_rebuild_repairs_it(
    ledger: str, edit: str, view: str, fragment: str
) -> None:
    with database(ledger) as connection:
        run(connection, ledger, edit)
    status, lines = verify_lines(ledger)
    assert status == 1
    findings = lines[:-1]
    assert findings and lines[-1]["discrepancies"] == len(findings)
    assert any(line["view"] == view and fragment in line["detail"] for line in findings), findings
    one_line_error(cli("verify", store=ledger), 1, "discrepancies between the log, itself and the views")
    assert cli("rebuild", store=ledger).returncode == 0  # the log is unchanged: nothing to refuse
    assert verify_lines(ledger)[0] == 0


def test_a_hash_edited_in_the_trail_needs_a_decision_before_a_rebuild_replaces_it(ledger: str) -> None:
    """The rebuild cannot tell a trail edited by hand from a changed log: it refuses, and an operator accepts."""
    with database(ledger) as connection:
        run(connection, ledger, "UPDATE pl_audit SET hash = ? WHERE member_id = 'M000011' AND version = 2", ("0" * 64,))
    status, lines = verify_lines(ledger)
    assert status == 1 and [line["view"] for line in lines[:-1]] == ["audit"] and "hash: " in lines[0]["detail"]
    one_line_error(cli("rebuild", store=ledger), 1, "member M000011 version 2", "hashes differently")
    accepted = cli("rebuild", "--accept-log-changes", "--reason", "pl_audit edited by hand", store=ledger)
    assert accepted.returncode == 0, accepted.stderr
    assert verify_lines(ledger)[0] == 0


def test_a_stored_event_edited_is_caught_and_a_rebuild_does_not_launder_it(ledger: str, tmp_path: Path) -> None:
    """The review's experiment: `awarded` of one stored event multiplied by 1,000."""
    saved = tmp_path / "digest.json"
    digest = digest_of(ledger, saved)
    before = cli("balances", "--format", "json", store=ledger).stdout
    position, state = first_event(ledger, "PointsEarned")
    awarded = re.search(rb'"awarded":(\d+)', state)
    assert awarded is not None and int(awarded.group(1)) > 0
    edit_event(ledger, position, awarded.group(0), awarded.group(0) + b"000")

    status, lines = verify_lines(ledger)
    assert status == 1
    here = [line for line in lines[:-1] if line["where"].endswith(f"(position {position})")]
    assert {line["view"] for line in here} == {"audit", "members"}, here  # the trail and the lot movement
    assert any("delta: " in line["detail"] and "hash: " in line["detail"] for line in here)

    refused = cli("rebuild", store=ledger)
    one_line_error(refused, 1, f"(position {position}, PointsEarned) hashes differently", "nothing was swapped in",
                   "--accept-log-changes")  # fmt: skip
    assert cli("balances", "--format", "json", store=ledger).stdout == before  # the old views keep serving
    assert digest_of(ledger, tmp_path / "now.json")["digest"] != digest["digest"]
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 1 and lines[-1]["digest"] == "differs"

    assert cli("rebuild", "--accept-log-changes", store=ledger).returncode == 2  # why, for the record
    assert cli("rebuild", "--reason", "why", store=ledger).returncode == 2
    accepted = cli("rebuild", "--accept-log-changes", "--reason", "INC-42: awards restored by hand",
                   "--format", "json", store=ledger)  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["log_changes_accepted"] >= 1
    assert "rebuilt from a changed log, as accepted" in accepted.stderr
    with database(ledger) as connection:
        recorded = run(connection, ledger, "SELECT accepted_by, reason, first_position, first_kind, differences, "
                                           "trail_chain, new_chain FROM pl_log_changes_accepted")  # fmt: skip
    [(who, why, first, kind, differences, old_chain, new_chain)] = [tuple(row) for row in recorded]
    assert (who, why, first, kind) == (getpass.getuser(), "INC-42: awards restored by hand", position, "PointsEarned")
    assert differences >= 1 and old_chain == new_chain == "sha256"
    assert verify_lines(ledger)[0] == 0  # the views now follow the log as it is...
    assert verify_lines(ledger, "--digest", str(saved))[1][-1]["digest"] == "differs"  # ...which the digest refutes


def test_a_stored_event_deleted_or_replaced_after_the_digest_is_caught(ledger: str, tmp_path: Path) -> None:
    saved = tmp_path / "digest.json"
    digest = digest_of(ledger, saved)
    table, position = events_table(ledger)
    columns = f"{position}, originator_id, originator_version, topic, state"
    with database(ledger) as connection:
        [row] = run(connection, ledger, f"SELECT {columns} FROM {table} WHERE {position} = 200")
        run(connection, ledger, f"DELETE FROM {table} WHERE {position} = 200")
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 1 and lines[-1]["digest"] == "differs"
    assert lines[-1]["events"] == digest["events"] - 1
    assert any(line["view"] == "log" and "cannot replay" in line["detail"] for line in lines)  # a version missing
    assert any(line["view"] == "views" and "the log does not hold" in line["detail"] for line in lines)

    forged = bytes(row[4]).replace(b'"event_id":"', b'"event_id":"inserted-', 1)
    with database(ledger) as connection:  # a forged event inserted by hand where the deleted one was
        run(connection, ledger, f"INSERT INTO {table} ({columns}) VALUES (?, ?, ?, ?, ?)", (*row[:4], forged))
    status, lines = verify_lines(ledger, "--digest", str(saved))
    assert status == 1 and lines[-1]["digest"] == "differs"
    assert lines[-1]["events"] == digest["events"]


def test_an_event_id_recorded_twice_is_caught(ledger: str) -> None:
    """A forged copy of a member's purchase appended to its history: replayable, but its message counts twice."""
    table, position = events_table(ledger)
    with database(ledger) as connection:
        [(member, version, topic, state)] = run(
            connection, ledger, f"SELECT originator_id, originator_version, topic, state FROM {table} "
            f"WHERE topic LIKE ? ORDER BY {position} LIMIT 1", ("%PointsEarned",),
        )  # fmt: skip
        [(last,)] = run(connection, ledger, f"SELECT MAX(originator_version) FROM {table} WHERE originator_id = ?",
                        (member,))  # fmt: skip
        run(connection, ledger, f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)", (member, last + 1, topic, state))  # fmt: skip
    event_id = json.loads(bytes(state))["provenance"]["event_id"]
    status, lines = verify_lines(ledger)
    assert status == 1
    assert any(line["view"] == "log" and f"event id {event_id!r} is recorded twice: at versions {version} and "
               f"{last + 1}" in line["detail"] for line in lines), lines  # fmt: skip


def busy_member(store_url: str) -> tuple[str, dict[str, Any]]:
    """Give BUSY more events than a snapshot interval; (the purchase line of one of its messages, the snapshot's
    decoded state, with its member id)."""
    purchases = [
        {"type": "purchase", "event_id": f"busy-{n}", "member_id": BUSY, "occurred_at": f"2025-02-{1 + n // 10:02d}"
         f"T{n % 10:02d}:00:00Z", "transaction_id": f"busy-t{n}", "amount": "12.00", "currency": "USD"}
        for n in range(110)
    ]  # fmt: skip
    lines = b"\n".join(json.dumps(purchase).encode() for purchase in purchases) + b"\n"
    assert cli("ingest", "-", stdin=lines, store=store_url).returncode == 0
    table = snapshots_table(store_url)
    with database(store_url) as connection:
        rows = run(connection, store_url, f"SELECT originator_id, originator_version, state FROM {table}")
    [(member, version, state)] = rows
    return json.dumps(purchases[0]), {"member": member, "version": version, "state": json.loads(bytes(state))}


def write_snapshot(store_url: str, snapshot: dict[str, Any]) -> None:
    state = json.dumps(snapshot["state"]).encode()
    with database(store_url) as connection:
        run(connection, store_url, f"UPDATE {snapshots_table(store_url)} SET state = ? WHERE originator_id = ? AND "
            "originator_version = ?", (state, snapshot["member"], snapshot["version"]))  # fmt: skip


def test_an_edited_snapshot_is_caught(ledger: str) -> None:
    _, snapshot = busy_member(ledger)
    assert verify_lines(ledger)[1][-1]["snapshots"] == 1
    snapshot["state"]["state"]["tier"] = "platinum" if snapshot["state"]["state"]["tier"] != "platinum" else "member"
    write_snapshot(ledger, snapshot)
    status, lines = verify_lines(ledger)
    assert status == 1
    [finding] = lines[:-1]
    assert finding["view"] == "snapshots" and f"version {snapshot['version']}" in finding["where"]
    assert finding["detail"] == "the snapshot differs from the log's replay in tier"


def test_ids_removed_from_the_claim_index_are_caught_and_so_is_the_message_they_let_in_twice(ledger: str) -> None:
    """The review's experiment, in today's design: the ids a writer dedupes with live in the claim index, not in
    snapshots. A database writer deletes a purchase's event id and transaction id from it; the re-sent purchase
    is then recorded twice. `verify` names the missing rows, then the ids claimed twice."""
    resent, _ = busy_member(ledger)
    purchase = json.loads(resent)
    with database(ledger) as connection:
        run(connection, ledger, f"DELETE FROM {CLAIMS_TABLE} WHERE key IN (?, ?)",
            (purchase["event_id"], purchase["transaction_id"]))  # fmt: skip
    status, lines = verify_lines(ledger)
    found = sorted(re.sub(r"version \d+", "version N", line["detail"]) for line in lines[:-1])
    assert status == 1 and found == [
        f"the claim index lacks event id {purchase['event_id']!r} (claimed at version N)",
        f"the claim index lacks transaction id {purchase['transaction_id']!r} (claimed at version N)",
    ], lines
    assert cli("ingest", "-", stdin=resent.encode() + b"\n", store=ledger).returncode == 0  # let in again
    status, lines = verify_lines(ledger)
    details = [line["detail"] for line in lines[:-1]]
    assert status == 1
    assert any(f"event id {purchase['event_id']!r} is recorded twice" in detail for detail in details), details
    assert any(f"transaction id {purchase['transaction_id']!r} is recorded twice" in detail for detail in details)


def test_a_digest_file_that_is_not_one_is_a_usage_error(ledger: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    chain_not_text = '{"position": 1, "digest": "' + "0" * 64 + '", "members": 0, "events": 0, "chain": 7}'
    for content in ("not json", '{"position": 1}', '{"position": -1, "digest": "x", "members": 0, "events": 0}',
                    chain_not_text):  # fmt: skip
        bad.write_text(content)
        result = cli("verify", "--digest", str(bad), store=ledger)
        assert result.returncode == 2 and "is not a saved digest" in result.stderr, result.stderr
    assert cli("verify", "--digest", str(tmp_path / "missing.json"), store=ledger).returncode == 2
    if ledger.startswith("sqlite"):
        refused = cli("verify", "--workers", "2", store=ledger)
        assert refused.returncode == 2 and "--workers: an sqlite ledger rebuilds in one process" in refused.stderr
