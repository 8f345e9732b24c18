"""The web console's sign-in sessions, kept beside the API keys in the ledger's own database.

Signing in with an API key opens a session: a random token (256 bits) goes to the browser in an HttpOnly
cookie, and only its SHA-256 is stored, as with the keys (ledger.storage.api_keys says why one hash is
enough). Each session has its own CSRF token, which every form the console sends carries back. A session
ends when it is signed out, when it is SESSION_HOURS_MAX old, or as soon as its key is revoked: every page
reads the session, its key and the key's revocation in one query, in the page's own read transaction.

Two tables, insert-only like the keys' (who signed in when, and when each session ended, stay on record):
`ledger_console_sessions` a row per sign-in, `ledger_console_sign_outs` a row per session signed out,
created with the keys' tables (ledger.storage.api_keys). Several server processes share them, so a session
opened by one worker is known to all.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.access import ApiKey
from ledger.micros import from_micros, to_micros
from ledger.storage.api_keys import ApiKeyStore, key_hash, native_cursor

#: How long a session lasts from sign-in, whatever is done in it: a working day.
SESSION_HOURS_MAX = 12
#: Longest cookie value looked at (a real token is 43 characters).
TOKEN_LENGTH_MAX = 64


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in session: whose key, and the CSRF token its forms must carry."""

    key: ApiKey
    csrf: str
    expires_at: datetime


def csrf_matches(session: ConsoleSession, sent: str | None) -> bool:
    """Whether a form's CSRF token is the session's (compared in constant time)."""
    return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())


class ConsoleSessionStore:
    """The sessions of one ledger's database, on the key store's connection, SQL and tables (ApiKeyStore
    creates them with its own)."""

    def __init__(self, keys: ApiKeyStore) -> None:
        self.keys = keys
        self.sessions = keys.sessions
        self.sign_outs = keys.sign_outs

    def open(self, key: ApiKey, now: datetime | None = None) -> tuple[str, ConsoleSession]:
        """A new session for the active key `key`: the token for the browser's cookie (not kept), and the
        session."""
        started = now or datetime.now(UTC)
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(key, secrets.token_urlsafe(32), started + timedelta(hours=SESSION_HOURS_MAX))
        with self.keys.transaction(commit=True) as cursor:
            self.keys.rows(
                cursor,
                f"INSERT INTO {self.sessions} (id, key_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (key_hash(token), key.id, session.csrf, to_micros(started), to_micros(session.expires_at)),
            )
        return token, session

    def find_in(self, cursor: Any, token: str | None, now: datetime | None = None) -> ConsoleSession | None:
        """The live session `token` opened (its key active, not signed out, not expired), read in the caller's
        transaction on the ledger's database; else None."""
        if not token or len(token) > TOKEN_LENGTH_MAX:
            return None
        cursor = native_cursor(cursor)
        select = self.keys.select_keys(
            f"JOIN {self.sessions} s ON s.key_id = k.id LEFT JOIN {self.sign_outs} o ON o.id = s.id "
            "WHERE s.id = ? AND o.id IS NULL AND s.expires_at > ?",
            more_columns=", s.csrf, s.expires_at",
        )
        found = self.keys.rows(cursor, select, (key_hash(token), to_micros(now or datetime.now(UTC))))
        if not found:
            return None
        row = found[0]
        key = self.keys.key_of_row(row)
        if not key.active:
            return None
        return ConsoleSession(key, str(row[8]), from_micros(int(row[9])))

    def end(self, token: str, now: datetime | None = None) -> None:
        """Sign the session `token` out (nothing happens for an unknown or already ended one)."""
        with self.keys.transaction(commit=True) as cursor:
            self.keys.rows(
                cursor,
                f"INSERT INTO {self.sign_outs} (id, ended_at) SELECT id, ? FROM {self.sessions} WHERE id = ? "
                "ON CONFLICT (id) DO NOTHING",
                (to_micros(now or datetime.now(UTC)), key_hash(token[:TOKEN_LENGTH_MAX])),
            )
