"""Running a doc example as a reader would: in a directory of its own, with the repository's data beside it.

A plain `points-ledger ARGS` line (optionally after `NAME=VALUE` settings and before `> FILE` or
`2>/dev/null`) runs in this process through click's CliRunner, which is fast; anything else runs in bash,
where `points-ledger` and `python` are this interpreter on this worktree's code. `COMMAND &` starts a
background job (a server) that `kill %N` stops, as in a terminal. What a block starts from (its `setup`, or
the block it `continues`) is built once per session and copied, unless it holds a process (a broker, a job).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

from points_ledger.cli import main
from points_ledger.config import ENVIRONMENT
from tests.doc_examples import ROOT, Block, commands_of, console_commands, files_before, previous_runnable

#: What the examples name relative to the repository root, linked into each example's directory.
SHARED = ("samples", "deploy", "examples")
#: A block that needs a Kafka broker: it gets one of its own (see docs/testing.md for why).
KAFKA_WORDS = re.compile(r"\b(consume|produce|publish|topics create|balance_service\.py)\b|KAFKA_BOOTSTRAP_SERVERS")
#: A block that serves the HTTP API: it gets a free port of its own in LEDGER_API_PORT.
SERVE_WORDS = re.compile(r"\bpoints-ledger serve\b")
#: A line that starts a background job: `COMMAND &` (not `&&`).
BACKGROUND = re.compile(r"(?P<command>.*[^&])&\s*$")
#: A line that stops one: `kill %N`.
KILL_JOB = re.compile(r"kill %(?P<number>[1-9][0-9]*)\s*$")
#: `export NAME=VALUE`: bash evaluates VALUE (`$(…)`, `$VAR`), and NAME holds it for the rest of the block.
EXPORT = re.compile(r"export\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)", re.DOTALL)
#: Settings the test provides (the broker's address, a free port): an export in the block keeps them as they are.
PINNED = frozenset({"KAFKA_BOOTSTRAP_SERVERS", "LEDGER_API_PORT"})
#: The first words of shell lines that only make sense with the lines around them.
COMPOUND = frozenset({"for", "while", "until", "if", "then", "else", "fi", "do", "done", "case", "esac"})
#: Characters that make a line something for bash, not a plain command.
SHELL_CHARACTERS = frozenset("|;&$`<>*(){}")
#: Seconds any one command may take.
TIMEOUT_S = 300
_SETTING = re.compile(r"[A-Z_][A-Z0-9_]*=.*", re.DOTALL)


@dataclass(frozen=True)
class Ran:
    """A command's exit status and what a terminal would have shown (stdout and stderr, interleaved)."""

    status: int
    output: str

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


@dataclass(frozen=True)
class Invoked:
    """A command run in this process: its exit status, stdout, stderr, and both as a terminal shows them."""

    status: int
    stdout: str
    stderr: str
    output: str


@dataclass(frozen=True)
class Plain:
    """A line `NAME=VALUE … points-ledger ARGS [> FILE] [2>/dev/null]`, taken apart."""

    settings: dict[str, str]
    args: list[str]
    stdout_file: str | None
    quiet: bool


def plain_command(line: str) -> Plain | None:
    """The line as a `Plain` command, or None when it needs a shell."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    settings: dict[str, str] = {}
    while tokens and _SETTING.fullmatch(tokens[0]):
        name, value = tokens.pop(0).split("=", 1)
        settings[name] = value
    if not tokens or tokens[0] != "points-ledger":
        return None
    args, quiet, stdout_file = tokens[1:], False, None
    while args:
        if args[-1] == "2>/dev/null":
            args, quiet = args[:-1], True
        elif len(args) > 1 and args[-2] == ">":
            args, stdout_file = args[:-2], args[-1]
        else:
            break
    if any(SHELL_CHARACTERS & set(arg) for arg in args) or any(SHELL_CHARACTERS & set(v) for v in settings.values()):
        return None
    return Plain(settings, args, stdout_file, quiet)


def split_pipe(line: str) -> tuple[str, str] | None:
    """(before, after) the line's first `|` outside quotes, or None: `points-ledger … | jq …` runs its first
    half in this process and feeds what it printed to the rest in bash."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "|" and "|" not in line[index - 1 : index] + line[index + 1 : index + 2]:
            return line[:index].rstrip(), line[index + 1 :].lstrip()
    return None


def is_compound(script: str) -> bool:
    """The script has a line that only runs with its neighbours (a loop, a continued line): run it whole."""
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.endswith("\\"):
            return True
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError:
            return True
        if words and (words[0] in COMPOUND or (_SETTING.fullmatch(words[0]) and len(words) == 1)):
            return True
    return False


@dataclass(frozen=True)
class Job:
    """A background job: its process (bash exec'd into the command) and where its unredirected output goes."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Workspace:
    """An example's directory, its environment (exports, the broker), its background jobs and how to run a
    command in it."""

    directory: Path
    shims: Path
    env: dict[str, str] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)

    def run(self, line: str) -> Ran:
        """One command line: an export, a job started or stopped, a plain command in this process, else bash."""
        exported = EXPORT.fullmatch(line.strip())
        if exported is not None:
            return self.export(exported["name"], exported["value"])
        background = BACKGROUND.fullmatch(line.strip())
        if background is not None:
            return self.start(background["command"].strip())
        killed = KILL_JOB.fullmatch(line.strip())
        if killed is not None:
            return self.stop(int(killed["number"]))
        plain = plain_command(line)
        if plain is not None:
            invoked = self._invoke(plain)
            if plain.stdout_file is not None:
                (self.directory / plain.stdout_file).write_text(invoked.stdout)
                return Ran(invoked.status, invoked.stderr)
            return Ran(invoked.status, invoked.stdout if plain.quiet else invoked.output)
        piped = split_pipe(line)
        plain = plain_command(piped[0]) if piped else None
        if piped is None or plain is None or plain.stdout_file is not None:
            return self.bash(line)
        first = self._invoke(plain)
        rest = self.bash(piped[1], stdin=first.stdout)
        return Ran(rest.status or first.status, ("" if plain.quiet else first.stderr) + rest.output)

    def _invoke(self, plain: Plain) -> Invoked:
        """`points-ledger ARGS` through CliRunner, in the example's directory and environment."""
        env: dict[str, str | None] = {**dict.fromkeys(ENVIRONMENT), **self.env, **plain.settings}
        cwd = Path.cwd()
        os.chdir(self.directory)
        try:
            result = CliRunner().invoke(main, plain.args, env=env, prog_name="points-ledger")
        finally:
            os.chdir(cwd)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            crash = "".join(traceback.format_exception(result.exception))  # as a process of its own would show
            return Invoked(1, result.stdout, result.stderr + crash, result.output + crash)
        return Invoked(result.exit_code, result.stdout, result.stderr, result.output)

    def bash(self, script: str, stdin: str | None = None) -> Ran:
        done = self._bash(script, stdin, stderr=subprocess.STDOUT)
        return Ran(done.returncode, done.stdout)

    def _bash(self, script: str, stdin: str | None, stderr: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + script], cwd=self.directory, env=self._bash_env(),
            input=stdin or "", stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip

    def _bash_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT}
        return env | {"PATH": f"{self.shims}{os.pathsep}{env.get('PATH', '')}", "PYTHONPATH": str(ROOT), **self.env}

    def export(self, name: str, value: str) -> Ran:
        """`export NAME=VALUE`: VALUE as bash expands it (what that prints on stderr is shown, as in a terminal;
        a command in it that fails fails the line); a setting the test pinned stays as it is."""
        if name in PINNED and name in self.env:
            return Ran(0, "")
        done = self._bash(f'{name}={value}\nprintf %s "${name}"', None, stderr=subprocess.PIPE)
        if done.returncode == 0:
            self.env[name] = done.stdout
        return Ran(done.returncode, done.stderr)

    def start(self, command: str) -> Ran:
        """`COMMAND &`: bash exec'd into COMMAND (so that `kill %N` signals the command itself), left running.
        What it prints unredirected is not shown (a terminal would mix it into later output); a failure shows it."""
        log = self.directory.parent / f"job-{len(self.jobs) + 1}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", "exec " + command], cwd=self.directory, env=self._bash_env(),
                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.jobs.append(Job(process, log))
        return Ran(0, "")

    def stop(self, number: int) -> Ran:
        """`kill %N`: SIGTERM to job N, then wait for it to end. The line fails when there is no such job
        running, or when the job ends other than with exit status 0 or by the SIGTERM itself (uvicorn raises
        it again once it has shut down cleanly: what the job logged tells a clean stop)."""
        if number > len(self.jobs):
            return Ran(1, f"kill: %{number}: no such job")
        job = self.jobs[number - 1]
        if job.process.poll() is not None:
            return Ran(1, f"kill: %{number}: it had ended, exit status {job.process.returncode}:\n{job.output()}")
        job.process.terminate()  # SIGTERM
        try:
            status = job.process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
            return Ran(1, f"kill: %{number}: still running {TIMEOUT_S} s after SIGTERM:\n{job.output()}")
        if status in {0, -signal.SIGTERM}:
            return Ran(0, "")
        return Ran(1, f"%{number} exited {status} on SIGTERM:\n{job.output()}")

    def stop_jobs(self) -> None:
        """Stop whatever jobs the block left running (SIGTERM, then SIGKILL after TIMEOUT_S)."""
        for number, job in enumerate(self.jobs, start=1):
            if job.process.poll() is None:
                self.stop(number)

    def script(self, script: str, where: str) -> None:
        """A bash or sh block (or a setup): every command must exit 0."""
        if is_compound(script):
            self.must_succeed(script, self.bash(script), where)
            return
        for line in script.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                self.must_succeed(line, self.run(line), where)

    @staticmethod
    def must_succeed(command: str, ran: Ran, where: str) -> None:
        assert ran.status == 0, f"{where}: `{command}` exited {ran.status}:\n{ran.output}"

    def replay(self, block: Block) -> None:
        """Run `block` as a step towards another: its commands, without checking what they print."""
        if block.language == "console":
            for shown in console_commands(block.text):
                self.run(shown.command)
        else:
            self.script(block.text, block.id)


def _mentions(block: Block, words: re.Pattern[str]) -> bool:
    """The block's commands, its setup or (all the way up) what it continues match `words`."""
    texts = [commands_of(block), block.markers.get("setup", "")]
    if any(words.search(line) for text in texts for line in text.splitlines()):
        return True
    return "continues" in block.markers and _mentions(previous_runnable(block), words)


def needs_kafka(block: Block) -> bool:
    """The block's commands, its setup or what it continues talk to a broker."""
    return _mentions(block, KAFKA_WORDS)


def serves(block: Block) -> bool:
    """The block's commands, its setup or what it continues start the HTTP API."""
    return _mentions(block, SERVE_WORDS)


def holds_a_process(block: Block) -> bool:
    """The block runs with a broker or starts a background job (or continues one that does): what it leaves
    cannot be saved and copied, because a process cannot."""
    return needs_kafka(block) or _mentions(block, BACKGROUND)


def starts_with_a_process(block: Block) -> bool:
    """What the block starts from holds a process: a broker, a job its setup starts, or the state of a block
    it continues that holds one. (A block whose own commands start the job may start from a saved state.)"""
    if needs_kafka(block) or any(BACKGROUND.search(line) for line in block.markers.get("setup", "").splitlines()):
        return True
    return "continues" in block.markers and holds_a_process(previous_runnable(block))


def link_shared(directory: Path) -> None:
    for name in SHARED:
        if (ROOT / name).exists():
            (directory / name).symlink_to(ROOT / name)


def write_shims(directory: Path) -> Path:
    """`points-ledger` and `python` for bash: this interpreter, on this worktree's code."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, run in (("points-ledger", "-m points_ledger "), ("python", "")):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {run}"$@"\n')
        shim.chmod(0o755)
    return directory


class States:
    """The directories examples start from, built once per session: the files and setup a block names (one
    build for every block naming the same), or the state a block it continues left. A block that starts from
    a broker or a running job builds its own every time (the broker's data and a process are not saved)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.before: dict[str, Path] = {}
        self.after: dict[str, Path] = {}

    def prepare(self, block: Block, workspace: Workspace) -> None:
        """Make the workspace what `block` starts from: what it continues, the files above it, its setup."""
        if starts_with_a_process(block):
            self._build(block, workspace)
            return
        key = _state_key(block)
        if key not in self.before:
            self._build(block, workspace)
            self.before[key] = self._save(workspace, f"before-{key}")
        else:
            _restore(self.before[key], workspace)

    def remember_after(self, block: Block, workspace: Workspace) -> None:
        """What `block` left, for a block that continues it."""
        if not holds_a_process(block):
            self.after[block.id] = self._save(workspace, f"after-{_state_key(block)}")

    def _build(self, block: Block, workspace: Workspace) -> None:
        if "continues" in block.markers:
            before = previous_runnable(block)
            if before.id in self.after:
                _restore(self.after[before.id], workspace)
            else:
                self.prepare(before, workspace)
                workspace.replay(before)
        for name, text in files_before(block).items():
            (workspace.directory / name).write_text(text)
        if "setup" in block.markers:
            workspace.script(block.markers["setup"], f"{block.id} (setup)")

    def _save(self, workspace: Workspace, name: str) -> Path:
        target = self.cache / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(workspace.directory, target, symlinks=True, ignore=shutil.ignore_patterns(*SHARED))
        return target


def _state_key(block: Block) -> str:
    """Blocks that start alike share a key: the same files and setup, not continuing another block."""
    if "continues" in block.markers:
        identity = f"{block.id}"
    else:
        identity = f"{sorted(files_before(block).items())}\n{block.markers.get('setup', '')}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _restore(saved: Path, workspace: Workspace) -> None:
    shutil.copytree(saved, workspace.directory, symlinks=True, dirs_exist_ok=True)
