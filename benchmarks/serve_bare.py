"""The floor of `serve`: a FastAPI app that answers a constant, served by uvicorn with `serve`'s own options
(points_ledger.api.server.uvicorn_options: one worker, access log off, uvloop and httptools when installed),
each process pinned to a CPU of its own as `serve` pins its own (api.pin_cpu, points_ledger.api.cpus)
unless `--no-pin-cpu`.

    python -m benchmarks.serve_bare --port 8081 [--workers N] [--no-pin-cpu]

`GET /v1/constant` answers as a ledger route does (a plain `def` run on the thread pool, its JSON rendered by
points_ledger.api.rendering) but does no work; `GET /v1/constant-async` skips the thread pool too. Whatever
`serve` takes beyond them is the ledger's own cost (benchmarks/serve.py compares them).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

from points_ledger.api.cpus import pin_this_process
from points_ledger.api.rendering import json_response
from points_ledger.api.server import configure_logging, uvicorn_options
from points_ledger.config import ApiSection

#: What both constant routes answer: about the size of a member's balance.
CONSTANT = {"member_id": "M000000", "balance": 1000, "tier": "member", "position": 0}

#: Set (to anything) by `--no-pin-cpu` for the server processes.
UNPINNED_VARIABLE = "POINTS_LEDGER_BARE_UNPINNED"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not os.environ.get(UNPINNED_VARIABLE):
        pin_this_process()
    yield


app = FastAPI(docs_url=None, redoc_url=None, lifespan=lifespan)


@app.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


@app.get("/v1/constant")
def constant() -> Response:
    return json_response(CONSTANT)


@app.get("/v1/constant-async")
async def constant_async() -> Response:
    return json_response(CONSTANT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes, as `serve --workers`")
    parser.add_argument("--no-pin-cpu", action="store_true", help="leave the processes unpinned (api.pin_cpu false)")
    args = parser.parse_args()
    configure_logging()
    if args.no_pin_cpu:
        os.environ[UNPINNED_VARIABLE] = "1"
    uvicorn.run("benchmarks.serve_bare:app", **uvicorn_options(ApiSection(port=args.port, workers=args.workers)))


if __name__ == "__main__":
    main()
