"""The console's sessions on both stores: a session is found by its token only while its key is active, it
is not signed out and not 12 hours old; only the token's hash is stored; the tables are insert-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.access import Role
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.api_keys import SESSIONS_TABLE, SIGN_OUTS_TABLE, ApiKeyStore, api_key_store
from ledger.storage.console_sessions import SESSION_HOURS_MAX, ConsoleSessionStore, csrf_matches
from ledger.storage.store import parse_store_url


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[ApiKeyStore, ConsoleSessionStore]]:
    app = LedgerApplication(parse_store_url(store_url), Program())
    keys = api_key_store(app)
    yield keys, ConsoleSessionStore(keys)
    app.close()


def found(stores: tuple[ApiKeyStore, ConsoleSessionStore], token: str, now: datetime | None = None) -> object:
    keys, sessions = stores
    with keys.transaction(commit=False) as cursor:
        return sessions.find_in(cursor, token, now)


def test_a_session_lives_until_signed_out(stores: tuple[ApiKeyStore, ConsoleSessionStore]) -> None:
    keys, sessions = stores
    key, _ = keys.create("alice", Role.HELPDESK, "tests")
    token, opened = sessions.open(key)
    session = found(stores, token)
    assert session == opened
    forged = opened.csrf[:-1] + ("A" if opened.csrf[-1] != "A" else "B")
    assert csrf_matches(opened, opened.csrf) and not csrf_matches(opened, forged)
    assert not csrf_matches(opened, None)
    assert found(stores, token + "x") is None and found(stores, "") is None and found(stores, "t" * 500) is None
    other_token, _ = sessions.open(key)
    sessions.end(token)
    sessions.end(token)  # twice: nothing more
    assert found(stores, token) is None
    assert found(stores, other_token) is not None  # one session's end is not another's


def test_a_session_ends_with_its_time_or_its_key(stores: tuple[ApiKeyStore, ConsoleSessionStore]) -> None:
    keys, sessions = stores
    key, _ = keys.create("bob", Role.FINANCE, "tests")
    token, opened = sessions.open(key)
    assert opened.expires_at - datetime.now(UTC) <= timedelta(hours=SESSION_HOURS_MAX)
    assert found(stores, token, opened.expires_at - timedelta(seconds=1)) is not None
    assert found(stores, token, opened.expires_at) is None
    keys.revoke(key.id, "tests")
    assert found(stores, token) is None


def test_only_the_tokens_hash_is_kept(stores: tuple[ApiKeyStore, ConsoleSessionStore]) -> None:
    keys, sessions = stores
    key, _ = keys.create("carol", Role.ADMIN, "tests")
    token, _ = sessions.open(key)
    sessions.end(token)
    with keys.transaction(commit=False) as cursor:
        rows = keys.rows(cursor, f"SELECT * FROM {sessions.sessions}") + keys.rows(
            cursor, f"SELECT * FROM {sessions.sign_outs}"
        )
    assert rows and token not in repr(rows)
    assert sessions.sessions.endswith(SESSIONS_TABLE) and sessions.sign_outs.endswith(SIGN_OUTS_TABLE)


def test_the_key_store_creates_the_session_tables_once_then_only_reads(store_url: str) -> None:
    """Whoever creates the keys' tables (the first `api-key create`, as their owner) creates the sessions' too;
    a server opening them later takes no schema lock and creates nothing (a role that may only read and insert
    serves)."""
    app = LedgerApplication(parse_store_url(store_url), Program())
    try:
        keys = api_key_store(app)
        key, _ = keys.create("dave", Role.HELPDESK, "tests")
        token, _ = ConsoleSessionStore(keys).open(key)

        def no_lock() -> Any:
            raise AssertionError("the tables exist: opening them must not take the schema lock")

        again = ConsoleSessionStore(ApiKeyStore(app.backend, app.recorder, no_lock))
        with again.keys.transaction(commit=False) as cursor:
            assert again.find_in(cursor, token) is not None
    finally:
        app.close()
