"""The members a balance file names, kept on disk while the file is read: which line named each one first (to
refuse a member named twice), and their balances in member id order (to merge with the ledger's).

A file of millions of members is checked and sorted in bounded memory: the table is a private temporary SQLite
database (SQLite deletes its file when the table is closed), and SQLite holds at most CACHE_KIB of it in
memory. Its file lives in SQLite's temporary directory (`SQLITE_TMPDIR`, else `TMPDIR`, else /var/tmp or
/tmp) and takes about as much space as the rows it holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from types import TracebackType

#: SQLite's page cache for the table, in KiB: what it holds in memory, whatever the number of members.
CACHE_KIB = 2 * 1024
#: Members inserted per transaction.
COMMIT_EVERY = 10_000
#: Rows fetched at once when reading the members back in order.
FETCH_ROWS = 2_000


class MemberTable:
    """Members by id: the line that first named each one, and the balance and tier it gave."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)  # "": a private temporary database on disk
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db.execute(
            "CREATE TABLE members (member_id TEXT PRIMARY KEY, line INTEGER NOT NULL, balance INTEGER, tier TEXT)"
        )
        self._db.execute("BEGIN")
        self._pending = 0

    def __enter__(self) -> MemberTable:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._db.close()

    def add(self, member_id: str, line: int, balance: int | None = None, tier: str | None = None) -> int | None:
        """Keep the member as named on `line`; if an earlier line named it, keep nothing and return that line."""
        added = self._db.execute(
            "INSERT INTO members VALUES (?, ?, ?, ?) ON CONFLICT (member_id) DO NOTHING",
            (member_id, line, balance, tier),
        ).rowcount
        if added == 0:
            first: int = self._db.execute("SELECT line FROM members WHERE member_id = ?", (member_id,)).fetchone()[0]
            return first
        self._pending += 1
        if self._pending == COMMIT_EVERY:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._pending = 0
        return None

    def in_order(self) -> Iterator[tuple[str, int, str | None]]:
        """(member id, balance, tier) of every member, by member id in code point order (SQLite's BINARY
        collation compares UTF-8 bytes, which orders as code points do)."""
        cursor = self._db.execute("SELECT member_id, balance, tier FROM members ORDER BY member_id")
        try:
            while page := cursor.fetchmany(FETCH_ROWS):
                yield from page
                del page  # not held while the next one is fetched
        finally:
            cursor.close()
