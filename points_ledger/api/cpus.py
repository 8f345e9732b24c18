"""One CPU per server process (`api.pin_cpu`): its event loop and its threads stay on one core.

A process's Python runs one thread at a time (the GIL), and each request passes it between the event loop and
a pool thread. When those threads sit on different cores, every pass wakes the other core: on this project's
2-core machine a balance look-up served 2,200 to 3,100 requests/s unpinned and 3,900 pinned, and the
framework's constant 9,500 and 11,300 (docs/performance.md, The HTTP API).

A process pins itself and its threads to one of the CPUs it may use, one that no other server process on the
host has claimed: each claims its CPU by holding a lock on a file named after it, in a folder shared by the
host's servers (CLAIMS_VARIABLE, or one per user in the temporary folder), so the workers of one `serve`,
and separate `serve`s, spread over the CPUs, and a process that ends frees its CPU. When every CPU is
claimed, the process runs unpinned, and its log says so.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import IO

log = logging.getLogger("points_ledger.api")
#: The folder where the host's server processes claim their CPUs (default: `default_claims_folder()`).
CLAIMS_VARIABLE = "LEDGER_API_CPU_CLAIMS"
#: The claimed CPU's lock file, held open (and locked) for the process's life.
_held: list[IO[bytes]] = []


def default_claims_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"points-ledger-cpus-{os.getuid()}"


def _claimed(folder: Path, cpu: int) -> bool:
    """Lock CPU `cpu`'s file in `folder` for this process's life; False if another process holds it."""
    handle = (folder / f"cpu-{cpu}.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _held.append(handle)
    return True


def _pin_threads(cpu: int) -> None:
    for thread in os.listdir("/proc/self/task"):  # Linux pins a thread at a time: each one there is
        with suppress(ProcessLookupError):  # a thread that has ended since
            os.sched_setaffinity(int(thread), {cpu})


def pin_this_process() -> int | None:
    """Pin this process's threads (and so the ones it starts later) to one CPU it may use that no other
    server process has claimed: the CPU, or None when it stays unpinned (and the log says why)."""
    if not hasattr(os, "sched_setaffinity"):
        log.warning("api.pin_cpu: this system cannot pin a process to a CPU; serving unpinned")
        return None
    folder = Path(os.environ.get(CLAIMS_VARIABLE) or default_claims_folder())
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        allowed = sorted(os.sched_getaffinity(0), reverse=True)  # the last CPUs first: CPU 0 takes more interrupts
        cpu = next((cpu for cpu in allowed if _claimed(folder, cpu)), None)
    except OSError as error:
        log.warning("api.pin_cpu: cannot claim a CPU in %s (%s); serving unpinned", folder, error)
        return None
    if cpu is None:
        log.warning("api.pin_cpu: every CPU this process may use (%d) is claimed by another server process; "
                    "serving unpinned", len(allowed))  # fmt: skip
        return None
    _pin_threads(cpu)
    log.info("api.pin_cpu: this process runs on CPU %d", cpu)
    return cpu
