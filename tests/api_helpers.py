"""A real `points-ledger serve` for the API tests (and benchmarks/serve.py): a process of its own on a free
loopback port, its keys made with `api-key create`, spoken to over real HTTP (http.client, keep-alive off:
every request a connection)."""

from __future__ import annotations

import http.client
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.broker import started_on_a_free_port
from tests.cli_helpers import cli, cli_command, cli_env

ROLES = ("pos", "helpdesk", "finance", "admin")
#: Seconds a server may take to answer /healthz after it starts.
START_TIMEOUT_S = 30.0
#: What uvicorn logs once it listens.
RUNNING = "Uvicorn running on"


class PortTakenError(Exception):
    """The server could not listen on the port picked free (another process took it first)."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0]


@dataclass
class Server:
    """A running server: its address, its process, its log, and a key per role (by role name)."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    store: str
    keys: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        role: str | None = None,
        key: str | None = None,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """One request on a connection of its own; `role` sends that role's key."""
        sent = dict(headers or {})
        if role is not None:
            key = self.keys[role]
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, role: str | None = None, **options: Any) -> Answer:
        return self.request("GET", path, role=role, **options)

    def post(self, message: dict[str, Any] | bytes, role: str | None = "admin", **options: Any) -> Answer:
        return self.request("POST", "/v1/messages", role=role, body=message, **options)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def create_keys(store: str, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
    """A key per role, named after it (`<role>-key`), made with the CLI as an operator would."""
    keys = {}
    for role in roles:
        result = cli("api-key", "create", "--name", f"{role}-key", "--role", role, "--operator", "tests",
                     "--format", "json", store=store)  # fmt: skip
        assert result.returncode == 0, result.stderr
        keys[role] = json.loads(result.stdout)["key"]
    return keys


def _start(args: list[str], store: str, log: Path, env: dict[str, str] | None, port: int) -> Server:
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=cli_env(env))
    server = Server("127.0.0.1", port, process, log, store)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            if "address already in use" in text.lower():
                raise PortTakenError(text)
            raise AssertionError(f"{shlex.join(args)} exited with {process.returncode}:\n{text}")
        try:  # listening (ours: another process on the port would not have logged it here), then answering
            if RUNNING in log.read_text(errors="replace") and server.get("/healthz", timeout=1.0).status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    text = log.read_text(errors="replace")
    raise AssertionError(f"{shlex.join(args)} did not answer /healthz in {START_TIMEOUT_S} s:\n{text}")


@contextmanager
def running_server(
    store: str, folder: Path, *extra: str, env: dict[str, str] | None = None, keys: dict[str, str] | None = None
) -> Iterator[Server]:
    """`serve` on `store` (a ledger with a key per role, made unless `keys` are given), stopped (SIGTERM)
    afterwards."""
    keys = create_keys(store) if keys is None else keys

    def command(port: int) -> list[str]:
        return cli_command("serve", "--port", str(port), *extra, store=store)

    with running_command(command, folder, store=store, env=env) as server:
        server.keys = keys
        yield server


@contextmanager
def running_command(
    command: Callable[[int], list[str]], folder: Path, *, store: str = "", env: dict[str, str] | None = None
) -> Iterator[Server]:
    """The server `command(port)` starts on a free port (it must log RUNNING and answer /healthz), stopped
    (SIGTERM) afterwards; its output goes to a log file in `folder`."""
    log = folder / f"serve-{time.monotonic_ns()}.log"
    server = started_on_a_free_port(lambda port: _start(command(port), store, log, env, port), PortTakenError)
    try:
        yield server
    finally:
        stop(server)


def stop(server: Server) -> int:
    """SIGTERM, then the exit status (killed if it does not stop in time)."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode
