"""What each web console page costs on a ledger of realistic size, beside the API answers it is made of
(not a test).

    python -m benchmarks.console [--members 50000] [--purchases 4] [--rounds 20] [--store URL | --postgres]

Builds a ledger as benchmarks/serve.py does (`--purchases` purchases per member, spread over the last 365
days, so that the year's roll-forward and KPIs have twelve months to add up), starts `serve`, signs in to
the console with an admin key as a browser does (the sign-in form, its CSRF cookie, the session cookie),
then asks each page `--rounds` times in turn, one request at a time, after two unmeasured requests. Beside
each page, the API routes that answer the same figures are timed the same way, summed (`api_ms`); a page's
`to_api` is its median over that sum: what drawing the page (HTML, its charts, and for finance the
month-end liability, which no API route answers) adds. Timings are wall-clock on
a shared machine: compare the ratios of one run, never the milliseconds of two.

Progress goes to stderr; the last line on stdout is one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from benchmarks.common import benchmark_store
from benchmarks.serve import build_ledger, member_id, progress, require_caught_up
from tests.api_helpers import Server, create_keys, running_server

#: The span of the ledger's purchases: a year, for the year's reports.
SPAN = timedelta(days=365)


def _request(server: Server, path: str, headers: dict[str, str], method: str = "GET", body: str = "") -> Any:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
    try:
        connection.request(method, path, body=body.encode() or None, headers=headers)
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def sign_in(server: Server, key: str) -> str:
    """The session cookie header a browser would send after signing in with `key`."""
    form = _request(server, "/console/sign-in", {})
    token = form.getheader("set-cookie").split(";")[0]
    csrf = token.split("=", 1)[1]
    body = urlencode({"key": key, "csrf": csrf, "next": "/console/"})
    headers = {"Cookie": token, "Content-Type": "application/x-www-form-urlencoded"}
    answer = _request(server, "/console/sign-in", headers, "POST", body)
    if answer.status != 303:
        raise SystemExit(f"sign-in answered {answer.status}")
    cookies = [value for name, value in answer.getheaders() if name.lower() == "set-cookie"]
    return str(next(cookie.split(";")[0] for cookie in cookies if cookie.startswith("pl_console=")))


def asking(server: Server, path: str, headers: dict[str, str]) -> Callable[[], Any]:
    return lambda: _request(server, path, headers)


def timed(ask: Callable[[], Any], rounds: int) -> dict[str, float]:
    for _ in range(2):
        ask()
    took = []
    for _ in range(rounds):
        began = time.perf_counter()
        answer = ask()
        took.append((time.perf_counter() - began) * 1000)
        if answer.status != 200:
            raise SystemExit(f"answered {answer.status}")
    return {"median_ms": round(statistics.median(took), 2), "min_ms": round(min(took), 2)}


def pages(members: int, now: datetime) -> dict[str, tuple[str, list[str]]]:
    """Each page's address and the API routes that answer its figures."""
    member = member_id(members // 2)
    year = {"from": datetime(now.year - 1, now.month, 1, tzinfo=UTC).isoformat(), "to": now.isoformat()}
    by_month = urlencode({**year, "by": "month"})
    as_of = quote(now.isoformat())
    return {
        "member": (f"/console/members/{member}", [f"/v1/members/{member}", f"/v1/members/{member}/history?limit=50"]),
        "finance": (f"/console/finance?as_of={as_of}&{by_month}",
                    [f"/v1/reports/liability?as_of={as_of}", f"/v1/reports/rollforward?{by_month}"]),
        "kpis": (f"/console/kpis?{by_month}", [f"/v1/reports/kpis?{by_month}"]),
        "month_end_csv": (f"/console/finance/month-end-liability.csv?as_of={as_of}&{by_month}", []),
        "status": ("/console/status", ["/v1/projections/status"]),
    }  # fmt: skip


def run(args: argparse.Namespace, store: str, folder: Path) -> dict[str, Any]:
    build = build_ledger(store, args.members, args.purchases, folder, SPAN)
    require_caught_up(store)
    keys = create_keys(store, ("admin",))
    results: dict[str, Any] = {}
    with running_server(store, folder, keys=keys) as server:
        cookie = {"Cookie": sign_in(server, keys["admin"])}
        bearer = {"Authorization": f"Bearer {keys['admin']}"}
        for name, (page, routes) in pages(args.members, datetime.now(UTC).replace(microsecond=0)).items():
            figures = timed(asking(server, page, cookie), args.rounds)
            api = sum(timed(asking(server, route, bearer), args.rounds)["median_ms"] for route in routes)
            if routes:
                figures.update(api_ms=round(api, 2), to_api=round(figures["median_ms"] / api, 2))
            progress(f"{name}: {figures}")
            results[name] = figures
    return {"store": store.split(":", 1)[0], "members": args.members, "purchases_per_member": args.purchases,
            "rounds": args.rounds, "build": build, "pages": results}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--purchases", type=int, default=4, help="purchases per member, over the last year")
    parser.add_argument("--rounds", type=int, default=20, help="measured requests per page")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", help="an empty store's URL (default: a fresh SQLite file in a temporary folder)")
    where.add_argument("--postgres", action="store_true", help="a throwaway database on the local PostgreSQL server")
    args = parser.parse_args()
    if min(args.members, args.purchases, args.rounds) < 1:
        parser.error("--members, --purchases and --rounds must be at least 1")
    with benchmark_store("console", args.store, args.postgres) as (store, folder):
        print(json.dumps(run(args, store, folder)))


if __name__ == "__main__":
    main()
