"""The HTTP API under load: balance look-ups and redemptions against the framework's floor (not a test).

    python -m benchmarks.serve [--members 50000] [--clients 8] [--seconds 10] [--warmup 2]
                               [--workers 1] [--threads N] [--no-pin-cpu] [--store URL | --postgres]

Builds a ledger of `--members` members (`--purchases` purchases each, 500 points apiece, in the last 30 days)
as an operator would: a JSON Lines file through `points-ledger ingest`, then `projections rebuild`; the
views must show no lag before any timing starts. Then, each phase with `--clients` keep-alive connections
(benchmarks/http_load.py), `--warmup` seconds unmeasured and `--seconds` measured:

1. bare: benchmarks/serve_bare.py's constant (a plain `def` route: the framework's own way to run synchronous
   work, on its thread pool) and, for reference, its `async def` twin, served with `serve`'s uvicorn options;
2. lookup: `GET /v1/members/{id}` with a pos key, members drawn at random from the whole ledger;
3. redemption: `POST /v1/messages`, 10 points each, distinct event ids, the members in turn (each has
   enough points for many rounds; a 409 rejection is counted apart from the errors).

Each phase reports count, requests/s, p50/p99/max (ms), errors (non-2xx but 409, and failed requests),
409 rejections, and the CPU time of this process (the client) and of the server over the measured window:
all share the machine's cores, so a client near one core's worth means the client was the bottleneck.
`lookup_to_bare` is look-up requests/s over the bare route's. Goals (reported, not asserted):
lookup_to_bare >= 0.3, look-up p99 < 20 ms at 8 clients.

`--workers` is the processes of both servers, the bare one and `serve` (`serve --workers`); `--threads`
is `serve`'s `api.threads` (default: the setting's default); `--no-pin-cpu` leaves both servers' processes
unpinned (`api.pin_cpu` false; pinned by default, as `serve` runs).

The store is a fresh SQLite file in a temporary folder unless `--store` names one (it must be empty) or
`--postgres` asks for a throwaway PostgreSQL database on the local server (created, and dropped afterwards).
Progress goes to stderr; the last line on stdout is one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import benchmark_store
from benchmarks.http_load import Load, MakeRequest, measure, request_bytes
from points_ledger.config import ApiSection
from tests.api_helpers import Server, create_keys, running_command, running_server
from tests.cli_helpers import cli_command, cli_env

#: Points each purchase earns (amount 500.00 at the default program's one point per unit).
PURCHASE_AMOUNT = "500.00"
#: Points each benchmark redemption takes.
REDEMPTION_POINTS = 10
#: The span the ledger's purchases are spread over, ending an hour before the run.
HISTORY = timedelta(days=30)
GOAL_LOOKUP_TO_BARE = 0.3
GOAL_LOOKUP_P99_MS = 20.0
GOAL_CLIENTS = 8


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def member_id(index: int) -> str:
    return f"M{index:06d}"


def utc_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ledger_lines(members: int, purchases: int, now: datetime, span: timedelta = HISTORY) -> Iterator[bytes]:
    """`purchases` rounds of one purchase per member, in time order over `span` up to an hour before `now`."""
    total = members * purchases
    first = now - timedelta(hours=1) - span
    for n in range(total):
        yield json.dumps({
            "event_id": f"bench-p{n}", "type": "purchase", "member_id": member_id(n % members),
            "occurred_at": utc_text(first + span * n / total), "transaction_id": f"bench-t{n}",
            "amount": PURCHASE_AMOUNT, "currency": "USD",
        }, separators=(",", ":")).encode()  # fmt: skip


def cli_json(store: str, *args: str) -> list[Any]:
    """`points-ledger ARGS --format json` on `store` in a process of its own (its stderr is ours): the JSON
    lines it prints."""
    command = cli_command(*args, "--format", "json", store=store)
    done = subprocess.run(command, stdout=subprocess.PIPE, env=cli_env(), check=True, text=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def build_ledger(store: str, members: int, purchases: int, folder: Path, span: timedelta = HISTORY) -> dict[str, Any]:
    """Ingest the ledger's stream (over `span`) into `store` (which must be empty), rebuild the views; the
    seconds each took."""
    stream = folder / "ledger.jsonl"
    with stream.open("wb") as sink:
        for line in ledger_lines(members, purchases, datetime.now(UTC), span):
            sink.write(line + b"\n")
    began = time.perf_counter()
    [tally] = cli_json(store, "ingest", str(stream))
    ingest_s = time.perf_counter() - began
    if tally["recorded"] != members * purchases:
        raise SystemExit(f"the store must be empty: ingest recorded {tally['recorded']} of {members * purchases}")
    progress(f"ingest:  {members * purchases:,} purchases in {ingest_s:.1f} s")
    began = time.perf_counter()
    [rebuilt] = cli_json(store, "projections", "rebuild")
    rebuild_s = time.perf_counter() - began
    progress(f"rebuild: {rebuilt['events']:,} events in {rebuild_s:.1f} s")
    return {"events": rebuilt["events"], "ingest_s": round(ingest_s, 2), "rebuild_s": round(rebuild_s, 2),
            "build_s": round(ingest_s + rebuild_s, 2),
            "members_per_s": round(members / (ingest_s + rebuild_s))}  # fmt: skip


def require_caught_up(store: str) -> None:
    lagging = [view for view in cli_json(store, "projections", "status") if view["lag"] != 0]
    if lagging:
        raise SystemExit(f"views lag behind the log before timing: {lagging}")


def lookups(port: int, key: str, members: int) -> MakeRequest:
    """`GET /v1/members/{id}` of a member drawn at random from the whole ledger."""
    draw = random.Random(members).randrange
    headers = {"Authorization": f"Bearer {key}"}
    return lambda _: request_bytes("GET", f"/v1/members/{member_id(draw(members))}", port, headers)


def redemptions(port: int, key: str, members: int) -> MakeRequest:
    """Redemption `n` (a distinct event id in every run) of member n mod `members`, now."""
    run, occurred_at = uuid.uuid4().hex[:8], utc_text(datetime.now(UTC))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def make(n: int) -> bytes:
        body = json.dumps({
            "event_id": f"bench-{run}-r{n}", "type": "redemption", "member_id": member_id(n % members),
            "occurred_at": occurred_at, "redemption_id": f"bench-{run}-r{n}", "points": REDEMPTION_POINTS,
        }).encode()  # fmt: skip
        return request_bytes("POST", "/v1/messages", port, headers, body)

    return make


def constant(port: int, path: str) -> MakeRequest:
    request = request_bytes("GET", path, port, {})
    return lambda _: request


def phase(
    name: str, server: Server, make_for: Callable[[int], MakeRequest], args: argparse.Namespace
) -> dict[str, Any]:
    """Measure one phase against `server`; `make_for(port)` gives its requests."""
    load = Load(server.port, args.clients, args.warmup, args.seconds, server.process.pid)
    progress(f"{name}: {args.clients} clients, {args.warmup:g} s warm-up, {args.seconds:g} s measured …")
    figures = measure(load, make_for(server.port))
    progress(
        f"{name}: {figures['rps']:,.0f} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
        f"errors {figures['errors']}, 409 {figures['rejections_409']}, CPU client {figures['client_cpu_share']:.0%} "
        f"server {figures['server_cpu_share']:.0%} of a core"
    )
    return figures


def bare_phases(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The constant, from a plain `def` route and from an `async def` one, served by benchmarks/serve_bare."""

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "benchmarks.serve_bare", "--port", str(port), "--workers", str(args.workers),
                *(["--no-pin-cpu"] if args.no_pin_cpu else [])]  # fmt: skip

    with running_command(command, folder) as bare:
        sync = phase("bare", bare, lambda port: constant(port, "/v1/constant"), args)
        asynchronous = phase("bare async", bare, lambda port: constant(port, "/v1/constant-async"), args)
    return sync, asynchronous


def ledger_phases(store: str, args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    key = create_keys(store, ("pos",))["pos"]
    flags = ["--workers", str(args.workers), *(["--threads", str(args.threads)] if args.threads else [])]
    with running_server(store, folder, *flags, keys={"pos": key}) as server:
        answer = server.get(f"/v1/members/{member_id(0)}", role="pos")  # catches the views up on the key's event
        if answer.status != 200:
            raise SystemExit(f"a look-up answered {answer.status}: {answer.body[:300]!r}")
        require_caught_up(store)
        progress(f"ready: {member_id(0)} has {answer.json()['balance']} points; views caught up")
        lookup = phase("lookup", server, lambda port: lookups(port, key, args.members), args)
        redemption = phase("redemption", server, lambda port: redemptions(port, key, args.members), args)
    return lookup, redemption


def uvicorn_implementations() -> dict[str, str]:
    """What uvicorn's `auto` picks here (the same interpreter runs the servers)."""
    return {"loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            "http": "httptools" if importlib.util.find_spec("httptools") else "h11"}  # fmt: skip


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def run(args: argparse.Namespace, store: str, folder: Path) -> dict[str, Any]:
    build = build_ledger(store, args.members, args.purchases, folder)
    bare, bare_async = bare_phases(args, folder)
    lookup, redemption = ledger_phases(store, args, folder)
    lookup_to_bare = ratio(lookup["rps"], bare["rps"])
    p99 = lookup["p99_ms"]
    return {
        "store": store.split(":", 1)[0],
        "members": args.members,
        "purchases_per_member": args.purchases,
        "clients": args.clients,
        "workers": args.workers,
        "threads": args.threads or ApiSection().threads,
        "pin_cpu": not args.no_pin_cpu,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "cores": os.cpu_count(),
        "uvicorn": uvicorn_implementations(),
        "build": build,
        "bare": bare,
        "bare_async": bare_async,
        "lookup": lookup,
        "redemption": redemption,
        "lookup_to_bare": lookup_to_bare,
        "lookup_to_bare_async": ratio(lookup["rps"], bare_async["rps"]),
        "redemption_to_bare": ratio(redemption["rps"], bare["rps"]),
        "goal_lookup_to_bare": GOAL_LOOKUP_TO_BARE,
        "goal_lookup_p99_ms": GOAL_LOOKUP_P99_MS,
        "goal_lookup_to_bare_met": lookup_to_bare is not None and lookup_to_bare >= GOAL_LOOKUP_TO_BARE,
        "goal_lookup_p99_met": (p99 is not None and p99 < GOAL_LOOKUP_P99_MS) if args.clients == GOAL_CLIENTS else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--purchases", type=int, default=2, help="purchases per member (500 points each)")
    parser.add_argument("--clients", type=int, default=GOAL_CLIENTS)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase")
    parser.add_argument("--workers", type=int, default=1, help="server processes (both servers)")
    parser.add_argument("--threads", type=int, help="serve's api.threads (default: the setting's default)")
    parser.add_argument("--no-pin-cpu", action="store_true", help="both servers unpinned (api.pin_cpu false)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", help="an empty store's URL (default: a fresh SQLite file in a temporary folder)")
    where.add_argument("--postgres", action="store_true", help="a throwaway database on the local PostgreSQL server")
    args = parser.parse_args()
    if min(args.members, args.purchases, args.clients, args.workers, args.threads or 1) < 1:
        parser.error("--members, --purchases, --clients, --workers and --threads must be at least 1")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be above 0 and --warmup not below")
    with benchmark_store("serve", args.store, args.postgres) as (store, folder):
        progress(f"store: {store.split(':', 1)[0]}, {args.members:,} members")
        result = run(args, store, folder)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
