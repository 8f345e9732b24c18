"""Sweeping only what is due, against reading those members' rows alone and against sweeping everyone
(not a test).

    python -m benchmarks.sweep [--members 50000] [--history 5] [--fresh] [--profile]

Builds once, in the database `pl_bench_sweep`, a ledger of 50,000 members with a few purchases each and
its views: about 5% of them have something due at the sweep time T (a lot expiring by T, or a tier above
the base one to review), the rest nothing. Each run copies it twice (`CREATE DATABASE … TEMPLATE`) and,
side by side:
- the floor: the due members' stored rows (latest snapshot and the events after it) read in batches of
  1,000 with the same two queries a sweep loads members with, nothing decoded;
- `sweep --as-of T` (only the due members, found in the views) on the first copy;
- `sweep --all-members --as-of T` on the second.
Both sweeps must record the same number of changed members. With --profile the due sweep runs under
cProfile and its top functions go to stderr. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from datetime import timedelta
from typing import Any

from benchmarks.common import SERVER, Discard, database_exists, drop_database, fresh_database
from consumers.jsonlines import ingest_lines
from devkit.streamgen import DEFAULT_START
from ledger.application import SWEEP_BATCH_SIZE, LedgerApplication
from ledger.member import member_uuid
from ledger.program import Program
from ledger.storage.originators import stored_histories
from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect
from projections.queries import due_members
from projections.runner import Projections
from projections.sweep import sweep_due
from projections.views import VIEWS

DATABASE = "pl_bench_sweep"
#: The sweep time, in days after the stream's start.
SWEEP_DAY = 400
#: One member in this many has a lot expiring by T; one in this many again a tier above the base one.
EXPIRING_EVERY = 22
TIERED_EVERY = 220


def _member_lines(index: int, history: int) -> list[bytes]:
    """A member's purchases: an early one (its lot expires by T) for one in EXPIRING_EVERY, a large one (silver)
    for one in TIERED_EVERY, and small ones late enough that nothing else is due at T."""
    member = f"M{index:07d}"
    days = [1 if index % EXPIRING_EVERY == 0 else 100, *(100 + 10 * n for n in range(1, history))]
    amounts = ["1500.00" if index % TIERED_EVERY == 1 else "20.00", *(["10.00"] * (history - 1))]
    return [
        json.dumps(
            {
                "event_id": f"e-{member}-{n}",
                "type": "purchase",
                "member_id": member,
                "occurred_at": (DEFAULT_START + timedelta(days=day, seconds=index % 86_400)).isoformat(),
                "transaction_id": f"t-{member}-{n}",
                "amount": amount,
                "currency": "USD",
            }
        ).encode()
        for n, (day, amount) in enumerate(zip(days, amounts, strict=True))
    ]


def _build(members: int, history: int) -> dict[str, float]:
    app = LedgerApplication(parse_store_url(fresh_database(DATABASE)), Program())
    started = time.perf_counter()
    lines = [line for index in range(members) for line in _member_lines(index, history)]
    lines.sort(key=lambda line: json.loads(line)["occurred_at"])
    ingest_lines(app, io.BytesIO(b"\n".join(lines) + b"\n"), "bench.jsonl", Discard(), batch_size=2_000)
    with Projections(app).reading():  # the views, built once with the data set
        pass
    app.close()
    with connect(parse_store_url(f"{SERVER}/{DATABASE}"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as autovacuum would have by then
    return {"build_seconds": round(time.perf_counter() - started, 1)}


def _floor(url: str, as_of: Any) -> dict[str, float]:
    app = LedgerApplication(parse_store_url(url), Program())
    with Projections(app).reading([VIEWS["members"]]) as (sql, _):
        due = due_members(sql, as_of, app.program.base_tier)
    started = time.perf_counter()
    rows = 0
    for start in range(0, len(due), SWEEP_BATCH_SIZE):
        ids = [member_uuid(member_id) for member_id in due[start : start + SWEEP_BATCH_SIZE]]
        histories = stored_histories(app.backend, app.recorder, app.snapshots.recorder, ids)  # type: ignore[union-attr]
        rows += sum(len(h.events) + (h.snapshot is not None) for h in (histories or {}).values())
    seconds = time.perf_counter() - started
    app.close()
    return {"due_members": len(due), "floor_rows": rows, "floor_seconds": round(seconds, 3)}


def _sweep(url: str, as_of: Any, *, everyone: bool, profile: bool = False) -> dict[str, float]:
    app = LedgerApplication(parse_store_url(url), Program())
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    visited, changed = app.sweep(as_of) if everyone else sweep_due(app, as_of)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    app.close()
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    return {"visited": visited, "changed": changed, "seconds": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--history", type=int, default=5, help="purchases per member")
    parser.add_argument("--fresh", action="store_true", help="build the data set again")
    parser.add_argument("--profile", action="store_true", help="profile the due sweep (stderr)")
    args = parser.parse_args()
    figures: dict[str, Any] = {"members": args.members, "history": args.history}
    if args.fresh or not database_exists(DATABASE):
        figures.update(_build(args.members, args.history))
        print(f"built {args.members:,} members in {figures['build_seconds']} s", flush=True)
    as_of = DEFAULT_START + timedelta(days=SWEEP_DAY)
    due_url, all_url = fresh_database(f"{DATABASE}_due", DATABASE), fresh_database(f"{DATABASE}_all", DATABASE)
    figures.update(_floor(due_url, as_of))
    due = _sweep(due_url, as_of, everyone=False, profile=args.profile)
    everyone = _sweep(all_url, as_of, everyone=True)
    if due["changed"] != everyone["changed"]:
        raise SystemExit(f"the sweeps differ: {due} against {everyone}")
    figures.update({f"due_{k}": v for k, v in due.items()} | {f"all_{k}": v for k, v in everyone.items()})
    figures["due_to_floor_ratio"] = round(figures["floor_seconds"] / due["seconds"], 3)
    figures["all_to_due_time"] = round(everyone["seconds"] / due["seconds"], 1)
    for name in (f"{DATABASE}_due", f"{DATABASE}_all"):
        drop_database(name)
    print(f"due members: {figures['due_members']:,} of {args.members:,}; floor (their rows read): "
          f"{figures['floor_seconds']} s; sweep of the due: {due['seconds']} s (ratio {figures['due_to_floor_ratio']}, "
          f"goal >= 0.3); sweep of everyone: {everyone['seconds']} s")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
