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

from devkit.broker import kafka_cluster
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.preflight import connect
from projections.runner import Projections

#: The shared PostgreSQL server every developer machine and CI runs; tests never stop it.
POSTGRES_ADMIN_URL = os.environ.get("LEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connect() -> psycopg.Connection[Any]:
    return connect(parse_store_url(POSTGRES_ADMIN_URL), autocommit=True)


@contextmanager
def throwaway_database(template: str = "template1") -> Iterator[str]:
    """A fresh PostgreSQL database on the shared server, a copy of `template`, dropped afterwards."""
    name = f"pl_test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def ledger_template() -> Iterator[str]:
    """The name of a database holding the ledger's and the views' tables, empty, for `throwaway_database` to
    copy: a hypothesis test that wants a fresh database per example then skips creating them each time.
    Emptied with TRUNCATE, so every copy gets a ledger id of its own when first opened."""
    with throwaway_database() as url:
        app = LedgerApplication(parse_store_url(url), Program())
        try:
            Projections(app).catch_up()
        finally:
            app.close()
        with connect(parse_store_url(url), autocommit=True) as db:
            tables = [row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            db.execute("TRUNCATE " + ", ".join(f'"{table}"' for table in tables) + " RESTART IDENTITY")
        yield url.rsplit("/", 1)[1]


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
    with kafka_cluster(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as (bootstrap_servers, _):
        yield bootstrap_servers


# --- secured Kafka endpoints (tests/kafka_security.py): each on its own memory-only Tansu -------------------
# (imported here, not at the top, so that this block stays one appended piece)
from tests.kafka_security import (  # noqa: E402
    Certificates,
    SecureEndpoint,
    make_certificates,
    sasl_endpoint,
    tansu_scram_endpoint,
    tls_endpoint,
)


@pytest.fixture(scope="session")
def kafka_certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """trustme PEM files: a CA, server certs (127.0.0.1/localhost, and broker.invalid), a client cert, another CA."""
    return make_certificates(tmp_path_factory.mktemp("kafka-certs"))


@pytest.fixture(scope="session")
def kafka_tls(kafka_certificates: Certificates) -> Iterator[SecureEndpoint]:
    """SSL: TLS (server cert for 127.0.0.1 and localhost) terminated in front of a plaintext Tansu."""
    with tls_endpoint(kafka_certificates) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def kafka_mtls(kafka_certificates: Certificates) -> Iterator[SecureEndpoint]:
    """SSL with mutual TLS: the listener wants a client certificate signed by the CA."""
    with tls_endpoint(kafka_certificates, mutual=True) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def kafka_sasl(kafka_certificates: Certificates) -> Iterator[SecureEndpoint]:
    """SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for SASL_USERNAME / SASL_PASSWORD."""
    with sasl_endpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def kafka_sasl_ssl(kafka_certificates: Certificates) -> Iterator[SecureEndpoint]:
    """SASL_SSL: the same logins over TLS."""
    with sasl_endpoint(kafka_certificates) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def kafka_tansu_scram() -> Iterator[SecureEndpoint]:
    """SASL_PLAINTEXT on Tansu's own --authentication listener: real SCRAM that refuses every login."""
    with tansu_scram_endpoint() as endpoint:
        yield endpoint


#: Tests that each take 15 s or more (`--durations`): started first, so that the two workers of
#: `pytest -n 2` are not left one idle while the other ends on one of them.
LONGEST_FIRST = (
    "tests/test_kafka_faults.py::test_kill_9_at_each_exactly_once_boundary_neither_loses_nor_doubles",
    "tests/test_publish.py::test_the_example_service_ends_equal_to_the_ledger_after_publishers_killed_at_random",
    "tests/test_store_failures.py::test_a_store_failure_at_any_step_of_a_batch_is_retried_and_dead_letters_nothing_valid",
    "tests/test_ledger_integration.py::test_a_large_messy_stream_follows_the_rules_to_the_point",
    "tests/test_replay.py::test_a_topic_replayed_into_a_shadow_ledger_with_a_corrected_program_answers_as_that_program",
    "tests/test_extremes.py::test_extreme_messages_through_consume_equal_ingest_and_a_replay_of_the_topic",
    "tests/test_kafka_faults.py::test_a_rebalance_mid_stream_neither_skips_nor_doubles",
    "tests/test_kafka_faults.py::test_a_database_restart_under_a_running_consume_neither_loses_nor_doubles_nor_dead",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (LONGEST_FIRST), the rest in their order."""

    def rank(item: pytest.Item) -> int:
        return next((index for index, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
                    len(LONGEST_FIRST))  # fmt: skip

    items.sort(key=rank)
