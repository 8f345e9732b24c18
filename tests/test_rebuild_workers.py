"""A rebuild split over worker processes (PostgreSQL): the same tables as one process builds, workers that
stop with the rebuild that started them, and a worker's failure that stops the rebuild with the old views
serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections.runner import Projections, RebuildWorkersError, select_views
from tests.cli_helpers import cli, cli_env, one_line_error
from tests.kafka_helpers import wait_for
from tests.view_answers import view_tables

#: Seconds a killed rebuild's workers get to follow it.
WORKERS_GONE_S = 10.0


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "stream.jsonl"
    path.write_bytes(b"\n".join(generate(4_000, 120, 700, seed=11)) + b"\n")
    return path


def ingested(store: str, stream_file: Path) -> None:
    result = cli("ingest", str(stream_file), "--dead-letter", os.devnull, "--format", "json", store=store)
    assert result.returncode == 0, result.stderr


def open_app(url: str) -> LedgerApplication:
    return LedgerApplication(parse_store_url(url), Program())


#: An environment variable every command of a test starts its rebuild with, and the workers inherit: it tells
#: this test's workers from those of a test running beside it.
MARK = "POINTS_LEDGER_TEST_MARK"


def marked() -> dict[str, str]:
    """A new mark for one test's commands."""
    return {MARK: uuid.uuid4().hex}


def worker_processes(mark: dict[str, str]) -> list[int]:
    """The rebuild workers running with `mark` in their environment."""
    wanted = f"{MARK}={mark[MARK]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
                environment = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue  # gone meanwhile
            if b"projections.partitions" in command and wanted in environment:
                found.append(int(entry.name))
    return found


def test_workers_build_the_same_tables_as_one_process(postgres_url: str, stream_file: Path) -> None:
    ingested(postgres_url, stream_file)
    app = open_app(postgres_url)
    try:
        projections = Projections(app)
        head = projections.db.head()
        assert projections.rebuild(select_views(), workers=1).position == head
        one_process = view_tables(app)
        reported: list[tuple[int, int]] = []
        assert projections.rebuild(select_views(), lambda n, p: reported.append((n, p)), workers=3).position == head
        assert view_tables(app) == one_process  # row for row, hash chains included
        assert sum(n for n, _ in reported) == head  # every event reported once, by whichever worker built it
        positions = [p for _, p in reported]
        assert positions == sorted(positions) and positions[-1] <= head  # the least any worker reached
        assert len(one_process["pl_audit"]) == head
    finally:
        app.close()


def test_verify_in_workers_finds_what_one_process_finds(postgres_url: str, stream_file: Path) -> None:
    """verify replays the members by the rebuild's partitions: the same verdict, each worker one member at a time."""
    ingested(postgres_url, stream_file)

    def verified(workers: str) -> tuple[int, list[dict[str, object]]]:
        result = cli("verify", "--workers", workers, "--format", "json", store=postgres_url)
        return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]

    status, lines = verified("2")
    assert status == 0 and lines[-1]["members"] == 120 and lines[-1]["discrepancies"] == 0
    app = open_app(postgres_url)
    try:
        assert lines[-1]["events"] == app.recorder.max_notification_id()
        with Projections(app).db.transaction(commit=True) as sql:  # one row wrong in each of many members
            sql.execute("UPDATE pl_audit SET tier = 'platinum' WHERE version = 3")
    finally:
        app.close()
    one, two = verified("1"), verified("2")
    assert one[0] == two[0] == 1
    assert sorted(map(str, one[1][:-1])) == sorted(map(str, two[1][:-1])) and len(one[1]) > 100
    assert one[1][-1] == two[1][-1]


def test_a_rebuild_killed_midway_takes_its_workers_with_it(postgres_url: str, stream_file: Path) -> None:
    ingested(postgres_url, stream_file)
    before = cli("balances", "--format", "json", store=postgres_url).stdout
    mark = marked()
    killed = cli("rebuild", "--workers", "2", env={"POINTS_LEDGER_CRASH_AFTER_BATCH": "2", **mark}, store=postgres_url)
    assert killed.returncode == -9, killed.stderr
    # none goes on writing into fresh tables a later rebuild makes
    wait_for(lambda: worker_processes(mark) == [], WORKERS_GONE_S, "the killed rebuild's workers to end")
    assert cli("balances", "--format", "json", store=postgres_url).stdout == before

    rebuilt = cli("rebuild", "--workers", "2", "--format", "json", store=postgres_url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["views"] == ["members", "audit"]
    assert cli("balances", "--format", "json", store=postgres_url).stdout == before
    verified = cli("verify", "--format", "json", store=postgres_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_worker_dies_with_the_process_that_started_it() -> None:
    """The parent-death signal: a rebuild killed by SIGKILL leaves no worker writing."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"  # the worker has asked to die with its parent
        assert alive(worker)
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(worker), WORKERS_GONE_S, "the worker to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()


#: A process starting a worker-like child that asks to die with it, then waiting to be killed.
PARENT_SCRIPT = """
import signal, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import os, signal; "
    "from projections.partitions import die_with_parent; "
    "die_with_parent(os.getppid()); print('ready', flush=True); signal.pause()"],
    stdout=subprocess.PIPE, text=True)
print(child.pid, flush=True)
print(child.stdout.readline().strip(), flush=True)
signal.pause()  # until killed
"""


def test_a_failing_worker_stops_the_rebuild_and_the_old_views_keep_serving(
    postgres_url: str, stream_file: Path
) -> None:
    ingested(postgres_url, stream_file)
    before = cli("balances", "--format", "json", store=postgres_url).stdout  # views caught up to the head
    app = open_app(postgres_url)
    try:
        with Projections(app).db.transaction(commit=True) as sql:  # an event no code can read any more
            sql.execute("UPDATE ledger_events SET state = ? WHERE notification_id = 2000", (b"{not json",))
    finally:
        app.close()
    mark = marked()
    failed = cli("rebuild", "--workers", "2", env=mark, store=postgres_url)
    one_line_error(failed, 1, "rebuild worker", "exited with code 1", "cannot read stored event", "old views keep")
    assert worker_processes(mark) == []
    assert cli("balances", "--format", "json", store=postgres_url).stdout == before


def test_workers_are_for_postgresql_and_within_bounds(tmp_path: Path, stream_file: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    ingested(store, stream_file)
    refused = cli("rebuild", "--workers", "2", store=store)
    assert refused.returncode == 2 and "--workers: an sqlite ledger rebuilds in one process" in refused.stderr
    assert cli("rebuild", "--workers", "0", store=store).returncode == 2
    assert cli("rebuild", "--workers", "1", store=store).returncode == 0
    app = open_app(store)
    try:
        with pytest.raises(RebuildWorkersError, match=r"1\.\.16"):
            Projections(app).rebuild(select_views(), workers=17)
    finally:
        app.close()
