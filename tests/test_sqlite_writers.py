"""Two processes writing one SQLite ledger at once: SQLite takes one writer at a time, so one waits for the
other's transaction (up to the store's lock timeout), and neither fails with "database is locked". A deferred
transaction that reads (the ledger's time) before it writes would fail at once instead of waiting, whenever
the other process wrote in between (`take_sqlite_write_lock`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli_helpers import cli, cli_command, cli_env

#: Messages per process, and per transaction: small batches make the two collide hundreds of times.
MESSAGES = 600
BATCH = 5


def purchases(prefix: str) -> str:
    return "".join(
        json.dumps({"event_id": f"{prefix}-{n}", "type": "purchase", "member_id": f"{prefix}-{n % 20}",
                    "occurred_at": "2026-03-01T00:00:00Z", "transaction_id": f"t-{prefix}-{n}",
                    "amount": "10.00", "currency": "USD"}) + "\n"
        for n in range(MESSAGES)
    )  # fmt: skip


def ingesting(file: Path, store: str) -> subprocess.Popen[str]:
    command = cli_command("ingest", str(file), "--batch-size", str(BATCH), "--format", "json", store=store)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())


def test_two_processes_ingesting_one_sqlite_file_at_once_both_record_everything(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert cli("ingest", "-", "--format", "json", store=store, stdin=b"").returncode == 0  # the ledger exists
    files = []
    for prefix in ("a", "b"):
        files.append(tmp_path / f"{prefix}.jsonl")
        files[-1].write_text(purchases(prefix))
    runs = [ingesting(file, store) for file in files]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert json.loads(out)["recorded"] == MESSAGES, out
    balances = [json.loads(line) for line in cli("balances", "--format", "json", store=store).stdout.splitlines()]
    assert len(balances) == 40 and sum(member["balance"] for member in balances) == 2 * MESSAGES * 10
