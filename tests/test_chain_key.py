"""The keyed chain: with a chain key kept outside the database, audit hashes, digests and the position log are
HMAC-SHA-256, so a database writer without the key cannot forge a chain that verifies; a ledger built with one
key and run with another (or none) says so in one line; the key is never printed."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

from tests.cli_helpers import cli, one_line_error
from tests.tampering import database, edit_event, first_event, ingested, run, verify_lines

KEY_ID = re.compile(r"hmac-sha256:[0-9a-f]{16}")


def key_file(tmp_path: Path, name: str = "chain.key") -> tuple[Path, str]:
    key = secrets.token_hex(32)
    path = tmp_path / name
    path.write_text(key + "\n")
    return path, key


@pytest.fixture
def keyed(tmp_path: Path) -> dict[str, str]:
    """The environment that gives every command the chain key (its file)."""
    path, _ = key_file(tmp_path)
    return {"LEDGER_CHAIN_KEY_FILE": str(path)}


def keyed_ledger(store_url: str, tmp_path: Path, env: dict[str, str]) -> str:
    """A small ledger whose views were built with the key."""
    return ingested(store_url, tmp_path, messages=600, members=20, env=env)


def test_a_keyed_ledger_verifies_with_its_key_and_says_plainly_when_run_without_it(
    sqlite_url: str, tmp_path: Path, keyed: dict[str, str]
) -> None:
    ledger = keyed_ledger(sqlite_url, tmp_path, keyed)
    digest = json.loads(cli("digest", "--format", "json", store=ledger, env=keyed).stdout)
    unkeyed = json.loads(cli("digest", "--format", "json", store=ledger).stdout)
    assert KEY_ID.fullmatch(digest["chain"]) and unkeyed["chain"] == "sha256"
    assert digest["digest"] != unkeyed["digest"] and digest["events"] == unkeyed["events"]
    saved = tmp_path / "digest.json"
    saved.write_text(json.dumps(digest))

    status, lines = verify_lines(ledger, "--digest", str(saved), env=keyed)
    assert status == 0, lines
    assert lines[-1]["chain"] == digest["chain"] and lines[-1]["digest"] == "matches"

    status, lines = verify_lines(ledger, "--digest", str(saved))  # no key: one line each, not one per row
    assert status == 1 and lines[-1]["digest"] == "unchecked"
    details = [line["detail"] for line in lines[:-1]]
    assert len(details) == 2, details
    assert details[0].startswith("the audit trail's hash chain is keyed (HMAC-SHA-256, key id ")
    assert "but this command runs without a chain key" in details[0]
    assert details[1].startswith("the saved digest is keyed") and "cannot be recomputed" in details[1]

    other, _ = key_file(tmp_path, "other.key")
    status, lines = verify_lines(ledger, env={"LEDGER_CHAIN_KEY_FILE": str(other)})
    assert status == 1 and len(lines) == 2 and "but this command runs with chain key id" in lines[0]["detail"]

    more = b'{"type":"purchase","event_id":"late-1","member_id":"M000001","occurred_at":"2025-06-01T00:00:00Z",' \
           b'"transaction_id":"late-t1","amount":"10.00","currency":"USD"}\n'  # fmt: skip
    assert cli("ingest", "-", stdin=more, store=ledger).returncode == 0  # the write side needs no key for events
    refused = cli("balance", "M000001", store=ledger)  # catching the trail up without the key would mix chains
    one_line_error(refused, 1, "the audit trail's hash chain is keyed", "without a chain key", "configure the key")
    status, lines = verify_lines(ledger)  # the views cannot catch up: said once each, and rows not compared
    assert status == 1 and [line["view"] for line in lines[:-1]] == ["views", "members", "audit", "audit"], lines
    assert "cannot catch up" in lines[0]["detail"] and "no view's rows were compared" in lines[1]["detail"]
    assert cli("balance", "M000001", store=ledger, env=keyed).returncode == 0


def test_an_unkeyed_trail_verified_with_a_key_says_so_and_a_rebuild_keys_it(
    sqlite_url: str, tmp_path: Path, keyed: dict[str, str]
) -> None:
    ledger = ingested(sqlite_url, tmp_path, messages=600, members=20)
    status, lines = verify_lines(ledger, env=keyed)
    assert status == 1 and len(lines) == 2
    assert lines[0]["detail"].startswith("the audit trail's hash chain is unkeyed (SHA-256), but this command runs "
                                         "with chain key id")  # fmt: skip
    swept = cli("sweep", "--as-of", "2026-06-30T00:00:00Z", store=ledger)  # a position recorded before the key
    assert swept.returncode == 0, swept.stderr
    rebuilt = cli("rebuild", store=ledger, env=keyed)  # checks the log against the unkeyed trail, then keys it
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert verify_lines(ledger, env=keyed)[0] == 0  # the positions recorded unkeyed before are checked as such
    assert cli("sweep", "--as-of", "2026-07-31T00:00:00Z", store=ledger, env=keyed).returncode == 0  # keyed now
    assert verify_lines(ledger, env=keyed)[0] == 0
    assert verify_lines(ledger)[0] == 1  # and now it is the unkeyed run that is told


def test_switching_to_a_key_still_refuses_a_changed_log(sqlite_url: str, tmp_path: Path, keyed: dict[str, str]) -> None:
    ledger = ingested(sqlite_url, tmp_path, messages=600, members=20)
    position, state = first_event(ledger, "PointsEarned")
    awarded = re.search(rb'"awarded":\d+', state)
    assert awarded is not None
    edit_event(ledger, position, awarded.group(0), awarded.group(0) + b"0")
    refused = cli("rebuild", store=ledger, env=keyed)
    one_line_error(refused, 1, f"(position {position}, PointsEarned) hashes differently")


def test_a_forged_log_with_its_trail_recomputed_without_the_key_is_caught(
    store_url: str, tmp_path: Path, keyed: dict[str, str]
) -> None:
    """Someone who can write the database, not read the key: they edit an event, then rebuild the views from the
    forged log with the tool itself (unkeyed), as the review did. Unkeyed, nothing in the database tells; keyed,
    verify does, even after they put the trail's recorded mode back."""
    ledger = keyed_ledger(store_url, tmp_path, keyed)
    saved = tmp_path / "digest.json"
    saved.write_text(cli("digest", "--format", "json", store=ledger, env=keyed).stdout)
    position, state = first_event(ledger, "PointsEarned")
    awarded = re.search(rb'"awarded":\d+', state)
    assert awarded is not None
    edit_event(ledger, position, awarded.group(0), awarded.group(0) + b"000")
    laundered = cli("rebuild", "--accept-log-changes", "--reason", "nothing to see", store=ledger)
    assert laundered.returncode == 0, laundered.stderr
    with database(ledger) as connection:
        run(connection, ledger, "DELETE FROM pl_log_changes_accepted")  # and the record of it
        [(mode,)] = run(connection, ledger, "SELECT chain FROM pl_audit_chain")
    assert mode == "sha256"
    assert verify_lines(ledger)[0] == 0  # without the key the forgery holds together

    status, lines = verify_lines(ledger, "--digest", str(saved), env=keyed)
    assert status == 1 and lines[-1]["digest"] == "differs"
    assert (
        lines[0]["view"] == "audit"
        and "is unkeyed (SHA-256), but this command runs with chain key id" in (lines[0]["detail"])
    )

    keyed_mode = json.loads(saved.read_text())["chain"]
    with database(ledger) as connection:  # the recorded mode put back: now every hash is checked, and fails
        run(connection, ledger, "UPDATE pl_audit_chain SET chain = ?", (keyed_mode,))
    status, lines = verify_lines(ledger, env=keyed)
    assert status == 1
    assert any(line["where"].endswith(f"(position {position})") and "hash: " in line["detail"] for line in lines)


def test_the_chain_key_is_a_secret_setting(sqlite_url: str, tmp_path: Path) -> None:
    path, key = key_file(tmp_path)
    shown = cli("--chain-key-file", str(path), "config", "show", "--format", "json", env={"LEDGER_CHAIN_KEY": key})
    assert shown.returncode == 0, shown.stderr
    settings = {row["setting"]: row for row in map(json.loads, shown.stdout.splitlines())}
    assert settings["store.chain_key_file"]["value"] == str(path)
    assert settings["store.chain_key"]["value"] is None  # the flag naming its file outranks the environment
    assert key not in shown.stdout + shown.stderr
    from_env = cli("config", "show", "--format", "json", env={"LEDGER_CHAIN_KEY": key})
    assert key not in from_env.stdout and '"value": "********"' in from_env.stdout

    short = tmp_path / "short.key"
    short.write_text("too short\n")
    refused = cli("--chain-key-file", str(short), "digest", store=sqlite_url)
    one_line_error(refused, 2, "store.chain_key", "at least 32 bytes")
    assert "too short" not in refused.stderr
    in_file = tmp_path / "points-ledger.toml"
    in_file.write_text(f'[store]\nchain_key = "{key}"\n')
    refused = cli("--config", str(in_file), "config", "show")
    one_line_error(refused, 2, "store.chain_key must not be written in the file", "LEDGER_CHAIN_KEY")
    assert key not in refused.stderr


def test_a_rebuild_with_another_key_cannot_check_the_log_and_needs_a_decision(
    sqlite_url: str, tmp_path: Path, keyed: dict[str, str]
) -> None:
    """Rotating the key: the trail keyed with the old one cannot be recomputed with the new."""
    ledger = keyed_ledger(sqlite_url, tmp_path, keyed)
    other, _ = key_file(tmp_path, "new.key")
    rotated = {"LEDGER_CHAIN_KEY_FILE": str(other)}
    one_line_error(cli("rebuild", store=ledger, env=rotated), 1, "it cannot check the log against that trail")
    accepted = cli("rebuild", "--accept-log-changes", "--reason", "key rotation", "--format", "json", store=ledger,
                   env=rotated)  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["log_checked"] is False and "was not checked" in accepted.stderr
    with database(ledger) as connection:
        [(checked, old, new)] = run(connection, ledger, "SELECT checked, trail_chain, new_chain FROM "
                                    "pl_log_changes_accepted")  # fmt: skip
    assert checked == 0 and old != new and KEY_ID.fullmatch(old) and KEY_ID.fullmatch(new)
    assert verify_lines(ledger, env=rotated)[0] == 0
