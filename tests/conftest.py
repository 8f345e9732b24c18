"""Shared fixtures: stores on SQLite, PostgreSQL (a throwaway database per test) and memory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.store import parse_store_url
from points_ledger.broker import kafka_cluster
from points_ledger.preflight import connect

#: The shared PostgreSQL server every developer machine and CI runs; tests never stop it.
POSTGRES_ADMIN_URL = os.environ.get("LEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connect() -> psycopg.Connection[Any]:
    return connect(parse_store_url(POSTGRES_ADMIN_URL), autocommit=True)


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the shared server, dropped afterwards."""
    name = f"pl_test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another database, for comparing two runs."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same integration test on the embedded default and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def program() -> Program:
    return Program()


@pytest.fixture
def memory_ledger(program: Program) -> Iterator[LedgerApplication]:
    app = LedgerApplication(parse_store_url("memory://"), program)
    yield app
    app.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a Tansu broker for the whole session (tests use their own topics)."""
    with kafka_cluster() as (bootstrap_servers, _):
        yield bootstrap_servers
