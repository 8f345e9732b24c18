"""`api.pin_cpu` (points_ledger.api.cpus): each server process and every one of its threads on one CPU of its
own, claimed in a folder the host's servers share; unpinned, and saying so, when every CPU is taken; and
left alone when the setting is off. Read off /proc, from real `serve` processes."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from points_ledger.api.cpus import CLAIMS_VARIABLE
from tests.api_helpers import Server, running_server

PINNED = "api.pin_cpu: this process runs on CPU"
#: Seconds every worker of a server may take to start serving (and so to pin itself).
WORKERS_START_S = 30.0
CPUS = sorted(os.sched_getaffinity(0))


def cpus_of_threads(pid: int) -> list[set[int]]:
    """The CPUs each thread of process `pid` may run on (its tasks' affinity)."""
    return [os.sched_getaffinity(int(thread)) for thread in os.listdir(f"/proc/{pid}/task")]


def worker_pids(server: Server) -> list[int]:
    """uvicorn's worker processes: the server's children started by multiprocessing's spawn."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
            if int(parent) == server.process.pid and b"spawn_main" in command:
                found.append(int(entry))
    return found


def wait_for_log(server: Server, text: str, count: int) -> str:
    deadline = time.monotonic() + WORKERS_START_S
    while server.log_text().count(text) < count:
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.05)
    return server.log_text()


def test_each_worker_and_all_its_threads_run_on_a_cpu_of_its_own(store_url: str, tmp_path: Path) -> None:
    workers = len(CPUS)
    claims = {CLAIMS_VARIABLE: str(tmp_path / "claims")}
    with running_server(store_url, tmp_path, "--workers", str(workers), env=claims) as server:
        wait_for_log(server, PINNED, workers)
        assert server.get("/v1/digest", role="finance").status == 200  # it serves, pinned
        pids = worker_pids(server)
        assert len(pids) == workers, pids
        chosen = []
        for pid in pids:
            threads = cpus_of_threads(pid)
            assert len(threads) > 1 and all(len(cpus) == 1 for cpus in threads), threads
            assert len({frozenset(cpus) for cpus in threads}) == 1, threads  # all on the same one
            chosen.append(min(threads[0]))
    assert sorted(chosen) == CPUS  # a CPU each, none shared


def test_a_server_runs_unpinned_and_says_so_when_every_cpu_is_claimed(store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "claims"
    folder.mkdir()
    held = [(folder / f"cpu-{cpu}.lock").open("ab") for cpu in CPUS]  # another server holds every CPU
    for handle in held:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with running_server(store_url, tmp_path, env={CLAIMS_VARIABLE: str(folder)}) as server:
            text = wait_for_log(server, "is claimed by another server process; serving unpinned", 1)
            assert PINNED not in text
            assert all(cpus == set(CPUS) for cpus in cpus_of_threads(server.process.pid))
    finally:
        for handle in held:
            handle.close()


def test_pin_cpu_off_leaves_the_server_where_the_system_puts_it(store_url: str, tmp_path: Path) -> None:
    env = {CLAIMS_VARIABLE: str(tmp_path / "claims"), "LEDGER_API_PIN_CPU": "false"}
    with running_server(store_url, tmp_path, env=env) as server:
        assert server.get("/v1/digest", role="finance").status == 200
        assert "api.pin_cpu" not in server.log_text()
        assert all(cpus == set(CPUS) for cpus in cpus_of_threads(server.process.pid))


def test_a_cpu_freed_by_a_process_that_ended_is_claimed_again(tmp_path: Path) -> None:
    """A worker that dies (its lock goes with it) leaves its CPU to the one that replaces it."""
    program = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from points_ledger.api.cpus import pin_this_process; print('cpu', pin_this_process())"
    )
    env = {**os.environ, CLAIMS_VARIABLE: str(tmp_path / "claims")}

    def pinned_once() -> str:
        done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip().splitlines()[-1]

    first, second = pinned_once(), pinned_once()
    assert first == second == f"cpu {CPUS[-1]}"  # the first ended: its CPU is free again
