"""Running the real `points-ledger` command: in this process where a test checks only what it prints and its
exit status, in a subprocess (`cli_subprocess`) where signals, kills or start-up are what is tested."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

from click.testing import CliRunner

from points_ledger.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "stream.jsonl"
#: The ledger's own settings, which each test names itself: never taken from the environment pytest runs in.
LEDGER_SETTINGS = ("LEDGER_STORE", "LEDGER_PROGRAM")
#: Test hooks that kill the process: a command run with one of them set runs in a subprocess of its own.
CRASH_HOOKS = ("POINTS_LEDGER_CRASH_AFTER_BATCH", "POINTS_LEDGER_CRASH_BEFORE_COMMIT")


def cli(
    *args: str, store: str | None = None, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command's exit status, stdout and stderr, as `cli_subprocess` gives them, without starting Python.

    An exception the command does not handle shows as it would in a process of its own: a traceback on stderr
    and exit status 1, so tests that a failure is one line without a trace hold here too.
    """
    if env and any(hook in env for hook in CRASH_HOOKS):
        return cli_subprocess(*args, store=store, stdin=stdin, env=env)
    command = [*(["--store", store] if store else []), *args]
    unset: dict[str, str | None] = dict.fromkeys(LEDGER_SETTINGS)
    result = CliRunner().invoke(main, command, input=stdin, env={**unset, **(env or {})}, prog_name="points-ledger")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["points-ledger", *command], result.exit_code, result.stdout, stderr)


def cli_subprocess(
    *args: str, store: str | None = None, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m points_ledger` in a process of its own, as users run it."""
    return subprocess.run(
        cli_command(*args, store=store), input=stdin.decode() if stdin else None, capture_output=True, text=True,
        timeout=300, env=cli_env(env), check=False,
    )  # fmt: skip


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the ledger's own settings (each test names its store), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in LEDGER_SETTINGS}
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
