"""The console's sessions on both stores: a session is found by its token only while its key is active, it
is not signed out and not 12 hours old; only the token's hash is stored; the tables are insert-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger.access import Role
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.api_keys import ApiKeyStore, api_key_store
from ledger.storage.console_sessions import (
    SESSION_HOURS_MAX,
    SESSIONS_TABLE,
    SIGN_OUTS_TABLE,
    ConsoleSessionStore,
    console_session_store,
    csrf_matches,
)
from ledger.storage.store import parse_store_url


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[ApiKeyStore, ConsoleSessionStore]]:
    app = LedgerApplication(parse_store_url(store_url), Program())
    keys = api_key_store(app)
    yield keys, console_session_store(keys, app.store)
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
    assert csrf_matches(opened, opened.csrf) and not csrf_matches(opened, "x" + opened.csrf[1:])
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
