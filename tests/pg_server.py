"""A throwaway PostgreSQL server of a test's own: initdb/pg_ctl as the `postgres` user on a free port.

The shared server on 127.0.0.1:5432 is never stopped or reconfigured; tests that need to stop a server
(a database outage) or to change its authentication (TLS, passwords) start one of these instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from devkit.broker import started_on_a_free_port

#: The server binaries of the installed PostgreSQL.
PG_BIN = Path("/usr/lib/postgresql") / sorted(os.listdir("/usr/lib/postgresql"))[-1] / "bin"
AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


@dataclass(frozen=True)
class PgServer:
    """One server: its directory (data in `data/`, the log in `log`, the Unix socket) and its TCP port."""

    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "log"

    def url(self, dbname: str = "ledger", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        subprocess.run([*self._pg_ctl(), "-l", str(self.log), "-o", options, "-w", "start"],
                       check=True, capture_output=True)  # fmt: skip

    def stop(self) -> None:
        """An immediate stop (like a crash: no checkpoint, clients cut off)."""
        subprocess.run([*self._pg_ctl(), "-m", "immediate", "-w", "stop"], check=True, capture_output=True)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection over the Unix socket (trusted whatever the TCP rules say)."""
        return psycopg.connect(host=str(self.base), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def _pg_ctl(self) -> list[str]:
        return [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.data)]


@contextmanager
def pg_server(
    *, initdb_args: tuple[str, ...] = ("-A", "trust"), configure: Callable[[PgServer], None] | None = None
) -> Iterator[PgServer]:
    """initdb, `configure(server)` (write config and certificates into `server.data`), start, create the
    database `ledger`; stopped and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pl-pg-"))
    shutil.chown(base, "postgres")
    server = PgServer(base, port=0)  # its port is picked when it starts
    try:
        subprocess.run([*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(server.data), "-U", "postgres", *initdb_args],
                       check=True, capture_output=True)  # fmt: skip
        if configure is not None:
            configure(server)
        server = started_on_a_free_port(partial(_started, base), subprocess.CalledProcessError)
        try:
            with server.admin() as admin:
                admin.execute('CREATE DATABASE "ledger"')
            yield server
        finally:
            subprocess.run([*server._pg_ctl(), "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _started(base: Path, port: int) -> PgServer:
    server = PgServer(base, port)
    server.start()
    return server


def write_as_postgres(path: Path, content: str | bytes, mode: int = 0o600) -> None:
    """A file in the server's directory that the server (running as `postgres`) can read and trusts."""
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    shutil.chown(path, "postgres", "postgres")
    path.chmod(mode)
