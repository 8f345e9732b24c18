"""API keys, kept hashed in the ledger's own database beside its events (SQLite or PostgreSQL).

A key reads `plk_<id>_<secret>`: the prefix makes a leaked key easy to find in a log search, the id (16 hex
digits) finds its row, and the secret (`secrets.token_urlsafe(32)`, 256 random bits) proves it. Only the
key's SHA-256 is stored. A slow password hash (bcrypt, scrypt) exists to make guessing a *human* password
from its hash expensive; a 256-bit random secret cannot be guessed from its hash at any cost, so one SHA-256
(microseconds) is enough, and cheap enough to check on every request. The comparison is constant-time.

Two tables, both insert-only: `ledger_api_keys` holds a row per key as created (who and when), and
`ledger_api_key_revocations` a row per revoked key (who and when), its primary key the key's id, so a key
is revoked once and a second revoke inserts nothing. Nothing is ever updated or deleted: the audit trail of
who created and who revoked each key is the tables themselves, and a database role that may only INSERT
and SELECT them is enough to run the API. A key's state is derived: active while it has no revocation row.
Every `authenticate` reads the tables (no cache), so a revocation holds from the next request on.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from ledger.access import ApiKey, Role, check_name
from ledger.micros import from_micros, to_micros
from ledger.storage.backend import Backend, OnBackend
from ledger.storage.pgconnect import schema_lock
from ledger.storage.store import Store

KEYS_TABLE = "ledger_api_keys"
REVOCATIONS_TABLE = "ledger_api_key_revocations"
#: The web console's sign-ins with a key, and their ends (ledger.storage.console_sessions), created with the
#: keys' tables: whoever creates the first key (the tables' owner) creates them, and a server whose role may
#: only read and insert finds them.
SESSIONS_TABLE = "ledger_console_sessions"
SIGN_OUTS_TABLE = "ledger_console_sign_outs"
#: What every key starts with.
KEY_PREFIX = "plk"
#: Longest text `authenticate` looks at: a real key is 64 characters; anything much longer is not hashed.
KEY_LENGTH_MAX = 128
#: Keys whose rows `_key_of_row` remembers: far more than a ledger's keys (each row is a few hundred bytes).
KEYS_REMEMBERED = 1024
_KEY_PATTERN = re.compile(r"plk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_COLUMNS = "k.id, k.name, k.role, k.created_at, k.created_by, r.revoked_at, r.revoked_by"


class ApiKeyError(ValueError):
    """A key operation refused: the message says why."""


class NameTakenError(ApiKeyError):
    """An active key already has the name."""


class UnknownKeyError(ApiKeyError):
    """No key has the id."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def _key_of_row(row: tuple[Any, ...]) -> ApiKey:
    """The key a row of `ApiKeyStore.select_keys` describes (its first seven columns). Remembered by the row's
    values, so a revocation (a new row) is never answered from memory: a server checks the key of every
    request, and building it anew was a third of the check."""
    key_id, name, role, created_at, created_by, revoked_at, revoked_by = row
    return ApiKey(
        key_id, name, Role(role), from_micros(int(created_at)), created_by,
        None if revoked_at is None else from_micros(int(revoked_at)), revoked_by,
    )  # fmt: skip


def native_cursor(cursor: Any) -> Any:
    """The driver's own cursor of a library cursor (SQLite's: its rowcount and description)."""
    return getattr(cursor, "sqlite_cursor", cursor)


def parse_key(key: str) -> str | None:
    """The id of a well-formed key, else None."""
    if len(key) > KEY_LENGTH_MAX:
        return None
    match = _KEY_PATTERN.fullmatch(key)
    return match.group(1) if match else None


class ApiKeyStore:
    """The keys of one ledger's database; `schema_lock` serialises the tables' creation between processes."""

    def __init__(self, backend: Backend, recorder: Any, schema_lock: Callable[[], AbstractContextManager[None]]):
        if backend not in {Backend.SQLITE, Backend.POSTGRES}:
            raise ApiKeyError(f"API keys are kept in a SQLite or PostgreSQL store, not a {backend.value} one")
        self.on_postgres = backend is Backend.POSTGRES
        self.datastore = recorder.datastore
        schema = f"{self.datastore.schema}." if self.on_postgres else ""
        self.keys = schema + KEYS_TABLE
        self.revocations = schema + REVOCATIONS_TABLE
        self.sessions = schema + SESSIONS_TABLE
        self.sign_outs = schema + SIGN_OUTS_TABLE
        self._ensure(schema_lock)

    # ---- the SQL, written once for both databases ("?" placeholders) --------------------------------------

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield native_cursor(cursor)

    def rows(self, cursor: Any, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor.execute(statement.replace("?", "%s") if self.on_postgres else statement, params)
        if cursor.description is None:
            return []
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cursor.fetchall()]

    def _ensure(self, schema_lock: Callable[[], AbstractContextManager[None]]) -> None:
        with self.transaction(commit=False) as cursor:
            if self.on_postgres:
                found = bool(self.rows(cursor, "SELECT to_regclass(?) IS NOT NULL", (self.sign_outs,))[0][0])
            else:
                found = bool(self.rows(cursor, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                        (SIGN_OUTS_TABLE,)))  # fmt: skip
        if found:  # the last table created: a read, so processes starting beside a writer do not wait for the lock
            return
        with schema_lock(), self.transaction(commit=True) as cursor:
            self.rows(
                cursor,
                f"CREATE TABLE IF NOT EXISTS {self.keys} (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "role TEXT NOT NULL, key_sha256 TEXT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL)",
            )
            self.rows(
                cursor,
                f"CREATE TABLE IF NOT EXISTS {self.revocations} (id TEXT PRIMARY KEY REFERENCES {self.keys} (id), "
                "revoked_at BIGINT NOT NULL, revoked_by TEXT NOT NULL)",
            )
            self.rows(
                cursor,
                f"CREATE TABLE IF NOT EXISTS {self.sessions} (id TEXT PRIMARY KEY, key_id TEXT NOT NULL "
                f"REFERENCES {self.keys} (id), csrf TEXT NOT NULL, created_at BIGINT NOT NULL, "
                "expires_at BIGINT NOT NULL)",
            )
            self.rows(
                cursor,
                f"CREATE TABLE IF NOT EXISTS {self.sign_outs} (id TEXT PRIMARY KEY REFERENCES {self.sessions} (id), "
                "ended_at BIGINT NOT NULL)",
            )

    def select_keys(self, where: str = "", order: str = "", more_columns: str = "") -> str:
        """A SELECT of each key's row (`key_of_row` reads it), its hash eighth, then `more_columns`; `where`
        may begin with further JOINs."""
        return (
            f"SELECT {_COLUMNS}, k.key_sha256{more_columns} FROM {self.keys} k "
            f"LEFT JOIN {self.revocations} r ON r.id = k.id {where} {order}"
        )

    @staticmethod
    def key_of_row(row: tuple[Any, ...]) -> ApiKey:
        """The key a row of `select_keys` describes."""
        return _key_of_row(tuple(row[:7]))

    # ---- what the CLI and the server call ---------------------------------------------------------------

    def create(self, name: str, role: Role, operator: str) -> tuple[ApiKey, str]:
        """A new key named `name` (unique among active keys), created by `operator`, and its secret text
        (shown once: it is not kept)."""
        check_name(name)
        check_name(operator, "operator")
        key_id = secrets.token_hex(8)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        created = ApiKey(key_id, name, Role(role), datetime.now(UTC), operator)
        with self.transaction(commit=True) as cursor:
            if self.on_postgres:  # taken by one creator at a time: two cannot both find the name free
                self.rows(cursor, f"LOCK TABLE {self.keys} IN SHARE ROW EXCLUSIVE MODE")
            # Inserted first: on SQLite that takes the write lock, so the check below sees every other creation.
            self.rows(
                cursor,
                f"INSERT INTO {self.keys} (id, name, role, key_sha256, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, created.role.value, key_hash(key), to_micros(created.created_at), operator),
            )
            same = self.rows(cursor, f"SELECT count(*) FROM {self.keys} k WHERE k.name = ? AND NOT EXISTS "
                                      f"(SELECT 1 FROM {self.revocations} r WHERE r.id = k.id)", (name,))  # fmt: skip
            if int(same[0][0]) > 1:
                raise NameTakenError(f"an active key is already named {name!r}: revoke it first, or choose another")
        return created, key

    def list(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""
        with self.transaction(commit=False) as cursor:
            return [
                self.key_of_row(row) for row in self.rows(cursor, self.select_keys(order="ORDER BY k.created_at, k.id"))
            ]

    def revoke(self, key_id: str, operator: str) -> tuple[ApiKey, bool]:
        """The key `key_id`, revoked by `operator` unless it already was; and whether this call revoked it."""
        check_name(operator, "operator")
        with self.transaction(commit=True) as cursor:
            found = self.rows(cursor, self.select_keys("WHERE k.id = ?"), (key_id,))
            if not found:
                raise UnknownKeyError(f"no API key has the id {key_id!r}")
            before = self.key_of_row(found[0])
            if not before.active:
                return before, False
            self.rows(
                cursor,
                f"INSERT INTO {self.revocations} (id, revoked_at, revoked_by) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (key_id, to_micros(datetime.now(UTC)), operator),
            )
            revoked_now = cursor.rowcount == 1  # 0: revoked by another process since the read above
            after = self.key_of_row(self.rows(cursor, self.select_keys("WHERE k.id = ?"), (key_id,))[0])
        return after, revoked_now

    def authenticate(self, key: str) -> ApiKey | None:
        """The active key `key` is, or None (malformed, unknown id, wrong secret, revoked)."""
        if parse_key(key) is None:
            return None
        with self.transaction(commit=False) as cursor:
            return self._authenticated(cursor, key)

    def authenticate_in(self, cursor: Any, key: str) -> ApiKey | None:
        """`authenticate`, in the caller's transaction on the ledger's database (a server reads the key and
        the answer in one transaction: a round trip less per request)."""
        return self._authenticated(native_cursor(cursor), key)

    def _authenticated(self, cursor: Any, key: str) -> ApiKey | None:
        key_id = parse_key(key)
        if key_id is None:
            return None
        found = self.rows(cursor, self.select_keys("WHERE k.id = ?"), (key_id,))
        if not found:
            return None
        if not hmac.compare_digest(key_hash(key), str(found[0][7])):
            return None
        api_key = self.key_of_row(found[0])
        return api_key if api_key.active else None


#: Active keys by role, read without creating anything (`active_key_roles`).
_ACTIVE_ROLES = (
    f"SELECT k.role, count(*) FROM {KEYS_TABLE} k LEFT JOIN {REVOCATIONS_TABLE} r ON r.id = k.id "
    "WHERE r.id IS NULL GROUP BY k.role ORDER BY k.role"
)


def active_key_roles(connection: Any) -> dict[str, int]:
    """How many active keys each role has, read on a DB-API connection (sqlite3 or psycopg) that may only
    read (`check`); none when the key tables do not exist yet."""
    cursor = connection.cursor()
    try:
        cursor.execute(_ACTIVE_ROLES)
    except Exception as error:  # the drivers' "no such table" differ; any other failure is re-raised
        text = str(error).lower()
        if "no such table" in text or "does not exist" in text:
            return {}
        raise
    return {str(role): int(count) for role, count in cursor.fetchall()}


class _OpenLedger(OnBackend, Protocol):
    """An open ledger (a LedgerApplication): its recorder, its backend and its store."""

    @property
    def store(self) -> Store: ...


def api_key_store(ledger: _OpenLedger) -> ApiKeyStore:
    """The key store of an open ledger, in its database."""
    return ApiKeyStore(ledger.backend, ledger.recorder, lambda: schema_lock(ledger.store))
