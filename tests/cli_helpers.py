"""Running the real `points-ledger` command in a subprocess, as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "stream.jsonl"


def cli(
    *args: str, store: str | None = None, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args, store=store), input=stdin.decode() if stdin else None, capture_output=True, text=True,
        timeout=300, env=cli_env(env), check=False,
    )  # fmt: skip


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the ledger's own settings (each test names its store), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in {"LEDGER_STORE", "LEDGER_PROGRAM"}}
    return {**env, **(extra or {})}


def cli_command(*args: str, store: str | None = None) -> list[str]:
    return [sys.executable, "-m", "points_ledger", *(["--store", store] if store else []), *args]


def one_line_error(result: subprocess.CompletedProcess[str], status: int, *fragments: str) -> None:
    """The command failed with `status` and said why in one line on stderr, without a trace."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
