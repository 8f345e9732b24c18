"""A cheap HTTP/1.1 load client for the API benchmarks: N keep-alive connections, one coroutine each, on one
uvloop event loop, each sending its next request as soon as the last one is answered.

Raw asyncio streams, not an HTTP library: the client shares the machine's cores with the server, so it does
as little as it can per request (write the bytes, read the status line and headers, read Content-Length
bytes). It reports its own CPU time (getrusage of this process) beside the server's (/proc), so a reader can
see which of them ran out of CPU.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

#: Bytes of a status line or header line; a longer one means the server is not speaking HTTP/1.1 to us.
LINE_MAX = 8_192
#: Seconds the last requests of a phase may take after its end (one timeout for the phase, not a task per
#: request: that would double the client's cost per request).
STRAGGLER_TIMEOUT_S = 30.0
#: Seconds a client waits after a failed request before it connects again (a refused port is not a busy loop).
RECONNECT_PAUSE_S = 0.05

#: A request's raw bytes, from its sequence number in the phase (distinct numbers: distinct requests).
MakeRequest = Callable[[int], bytes]


def request_bytes(method: str, path: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 keep-alive request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method != "GET":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ProtocolError(Exception):
    """An answer this client cannot read (no Content-Length, a malformed line)."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of the next answer on the connection and whether the server keeps it open; its body is read
    and dropped."""
    status_line = await reader.readline()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not a status line: {status_line[:80]!r}")
    length, keep_alive = None, True
    while True:
        line = await reader.readline()
        if line in {b"\r\n", b"\n", b""} or len(line) > LINE_MAX:
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection":
            keep_alive = value.strip().lower() != b"close"
    if length is None:
        raise ProtocolError("an answer without Content-Length")
    await reader.readexactly(length)
    return int(parts[1]), keep_alive


@dataclass
class Tally:
    """What the measured window saw: every answer's latency and status, and the requests that failed."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, status: int, seconds: float) -> None:
        self.latencies_s.append(seconds)
        self.statuses[status] += 1


def server_cpu_s(pid: int) -> float:
    """User plus system CPU seconds so far of process `pid` and its children (a server's worker processes),
    from Linux /proc; 0.0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]  # fmt: skip
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(map(server_cpu_s, children))


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Load:
    """What to send where: `clients` connections to 127.0.0.1:`port`, `warmup_s` unmeasured, then `seconds`
    measured; `server_pid`'s CPU time is measured over the same window."""

    port: int
    clients: int
    warmup_s: float
    seconds: float
    server_pid: int


async def _client(load: Load, make: MakeRequest, numbers: itertools.count[int], window: tuple[float, float],
                  tally: Tally) -> None:  # fmt: skip
    start, end = window
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while (began := time.perf_counter()) < end:
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", load.port)
            reader, writer = connection
            writer.write(make(next(numbers)))
            status, keep_alive = await read_response(reader)
        except (OSError, ProtocolError, asyncio.IncompleteReadError) as error:
            if began >= start:
                tally.failures[type(error).__name__] += 1
            _close(connection)
            connection = None
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        if began >= start:
            tally.add(status, time.perf_counter() - began)
        if not keep_alive:
            _close(connection)
            connection = None
    _close(connection)


def _close(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if connection is not None:
        connection[1].close()


@dataclass(frozen=True)
class Window:
    """The measured window's wall-clock seconds (until the last answer came) and the CPU seconds this process
    and the server spent in it."""

    seconds: float
    client_cpu_s: float
    server_cpu_s: float


async def _phase(load: Load, make: MakeRequest) -> tuple[Tally, Window]:
    tally, numbers = Tally(), itertools.count()
    start = time.perf_counter() + load.warmup_s
    window = (start, start + load.seconds)
    clients = [asyncio.ensure_future(_client(load, make, numbers, window, tally)) for _ in range(load.clients)]
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    began, client_cpu, server_cpu = time.perf_counter(), own_cpu_s(), server_cpu_s(load.server_pid)
    try:
        await asyncio.wait_for(asyncio.gather(*clients), load.seconds + STRAGGLER_TIMEOUT_S)
    except TimeoutError:
        raise RuntimeError(f"requests still unanswered {STRAGGLER_TIMEOUT_S:g} s after the phase ended") from None
    seconds = time.perf_counter() - began
    return tally, Window(seconds, own_cpu_s() - client_cpu, server_cpu_s(load.server_pid) - server_cpu)


def percentile_ms(sorted_s: list[float], fraction: float) -> float | None:
    if not sorted_s:
        return None
    return round(sorted_s[min(len(sorted_s) - 1, int(fraction * len(sorted_s)))] * 1000, 2)


def measure(load: Load, make: MakeRequest) -> dict[str, Any]:
    """Run one phase; its figures: count, requests/s, p50/p99/max (ms), errors (non-2xx but 409, and failed
    requests), rejections (409), and both processes' CPU time over the window."""
    tally, window = uvloop.run(_phase(load, make))
    latencies = sorted(tally.latencies_s)
    rejections = tally.statuses[409]
    errors = sum(n for status, n in tally.statuses.items() if not 200 <= status < 300 and status != 409)
    return {
        "clients": load.clients,
        "seconds": load.seconds,
        "count": len(latencies),
        "rps": round(len(latencies) / load.seconds, 1),
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "max_ms": percentile_ms(latencies, 1.0),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "errors": errors + sum(tally.failures.values()),
        "rejections_409": rejections,
        "statuses": {str(status): n for status, n in sorted(tally.statuses.items())},
        "failures": dict(tally.failures),
        "client_cpu_s": round(window.client_cpu_s, 2),
        "client_cpu_share": round(window.client_cpu_s / window.seconds, 2),
        "server_cpu_s": round(window.server_cpu_s, 2),
        "server_cpu_share": round(window.server_cpu_s / window.seconds, 2),
    }
