"""Start-up: declaring the CLI loads no heavy library, so `--help` and `--version` stay quick.

The commands import kafka-python, eventsourcing, pydantic, psycopg and rich only when they run. This guards
that in a fresh interpreter (what is loaded, never how long it took).
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from points_ledger import errors
from tests.cli_helpers import ROOT, cli

HEAVY = ("kafka", "eventsourcing", "pydantic", "psycopg", "rich")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import points_ledger.cli, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_api_server_loads_no_chart_library_until_a_chart_is_drawn() -> None:
    """Every `serve` process (each worker, each restart) imports the application: matplotlib, which the
    console's charts use, doubled that import's time."""
    code = "import points_ledger.api.app, sys; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_version_and_help_work() -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("points-ledger, version ")
    usage = cli("--help")
    assert usage.returncode == 0
    for command in ("balance", "consume", "ingest", "publish", "report", "sweep", "verify"):
        assert f"  {command} " in usage.stdout


@pytest.mark.parametrize(
    "classes",
    [errors.NOT_FOUND, errors.BAD_USAGE, errors.CONFLICT, errors.UNAVAILABLE, errors.BATCH_STOPPED,
     errors.REFUSED, errors.INVARIANT],
)  # fmt: skip
def test_every_error_class_reported_exists(classes: tuple[str, ...]) -> None:
    """errors.py names the exceptions it tells apart as strings (so it imports none of their libraries)."""
    for name in classes:
        module, _, attribute = name.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        assert isinstance(found, type) and issubclass(found, Exception), name
    assert len(errors.raised(classes)) == len(classes)
