"""Running the API under uvicorn: `serve` in one process, or a supervisor and `api.workers` worker processes.

uvicorn stops on SIGTERM (or SIGINT) by refusing new connections, finishing the requests in flight (for up
to `api.shutdown_timeout_s`), then closing each worker's ledger. With several workers, each is a fresh
interpreter that loads the same settings (the flags are handed down in the environment; secrets never are
flags), and the metrics of all of them are kept in prometheus_client's multiprocess files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from points_ledger.api.app import FLAGS_VARIABLE
from points_ledger.api.observe import MULTIPROCESS_DIR

if TYPE_CHECKING:
    from points_ledger.config import ApiSection

APP = "points_ledger.api.app:app_from_environment"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure_logging() -> None:
    """One line per record on stderr (the access log among them), in UTC ISO-like times."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT, force=True)
    logging.Formatter.converter = __import__("time").gmtime


@contextmanager
def _multiprocess_metrics(workers: int) -> Iterator[None]:
    """A fresh directory for the workers' metric files, removed afterwards (kept if the caller gave one)."""
    if workers == 1 or os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    folder = tempfile.mkdtemp(prefix="points-ledger-metrics-")
    os.environ[MULTIPROCESS_DIR] = folder
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(folder, ignore_errors=True)


def uvicorn_options(api: ApiSection) -> dict[str, Any]:
    """How uvicorn serves the API (benchmarks/serve_bare.py serves its constant with the same): its loop and
    HTTP parser are uvicorn's `auto` choice, uvloop and httptools when installed."""
    return {
        "host": api.host,
        "port": api.port,
        "workers": api.workers,
        "access_log": False,  # ours (points_ledger.api.observe) names the key, never shows it
        "log_config": None,
        "timeout_graceful_shutdown": api.shutdown_timeout_s,
        "server_header": False,
    }


def _stopping_is_not_dying() -> None:
    """uvicorn, once it has shut down on SIGTERM or SIGINT, raises that signal again under the handlers it
    found, so the process would end as killed by it (status -15) after a clean stop: handled here instead,
    the stop asked for ends with exit 0, as `consume` and `projections follow` do."""
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, frame: None)


def serve(flags: Mapping[str, Any], api: ApiSection) -> None:
    """Serve until SIGTERM or SIGINT."""
    import uvicorn

    configure_logging()
    _stopping_is_not_dying()
    os.environ[FLAGS_VARIABLE] = json.dumps(flags, default=str)
    with _multiprocess_metrics(api.workers):
        uvicorn.run(APP, factory=True, **uvicorn_options(api))
