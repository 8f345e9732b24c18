"""API keys, through the CLI on both stores: shown once, kept only as a hash, listed with who created and
revoked them and when, refused by `authenticate` from the moment they are revoked; and the roles' permissions
as issue 19's table gives them."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.access import PERMISSIONS, ApiKey, Permission, Role, may, may_post
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.api_keys import KEYS_TABLE, REVOCATIONS_TABLE, ApiKeyStore, NameTakenError, api_key_store
from ledger.storage.store import parse_store_url
from tests.cli_helpers import cli, one_line_error
from tests.tampering import database, on_sqlite, run


def create(store_url: str, name: str, role: str = "pos", *extra: str) -> dict[str, Any]:
    result = cli("api-key", "create", "--name", name, "--role", role, "--format", "json", *extra, store=store_url)
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    return created


def listed(store_url: str) -> list[dict[str, Any]]:
    result = cli("api-key", "list", "--format", "json", store=store_url)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def keys(store_url: str) -> Iterator[ApiKeyStore]:
    """The key store as the server will open it: beside a ledger of its own, reading the tables on every call."""
    app = LedgerApplication(parse_store_url(store_url), Program())
    yield api_key_store(app)
    app.close()


def stored_text(store_url: str) -> str:
    """Everything the database holds, as text a search would read: the SQLite files' bytes, or every row of the
    key tables on PostgreSQL."""
    if on_sqlite(store_url):
        path = Path(store_url.removeprefix("sqlite:///"))
        files = [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-journal"))]
        return b"".join(file.read_bytes() for file in files if file.exists()).decode("latin-1")
    with database(store_url) as connection:
        rows = [row for table in (KEYS_TABLE, REVOCATIONS_TABLE)
                for row in run(connection, store_url, f"SELECT t::text FROM {table} t")]  # fmt: skip
    return "\n".join(str(row[0]) for row in rows)


def test_create_prints_the_key_once_and_nothing_keeps_or_shows_it(store_url: str) -> None:
    created = create(store_url, "till-1", "pos")
    assert list(created) == ["id", "name", "role", "key"]
    assert created["name"] == "till-1" and created["role"] == "pos"
    key = created["key"]
    assert key.startswith(f"plk_{created['id']}_")
    digest = hashlib.sha256(key.encode()).hexdigest()
    secret = key.split("_", 2)[2]
    for output_format in ("table", "json"):
        shown = cli("api-key", "list", "--format", output_format, store=store_url)
        assert shown.returncode == 0 and created["id"] in shown.stdout
        for text in (key, secret, digest):
            assert text not in shown.stdout + shown.stderr
    database_text = stored_text(store_url)
    assert secret not in database_text and key not in database_text
    assert digest in database_text  # what is kept instead

    table = cli("api-key", "create", "--name", "till-2", "--role", "pos", store=store_url)
    assert table.returncode == 0
    assert [line for line in table.stdout.splitlines() if line.startswith("key: plk_")]
    assert "only this once" in table.stderr


def test_authenticate_accepts_the_key_and_refuses_anything_else(store_url: str, keys: ApiKeyStore) -> None:
    created = create(store_url, "helpdesk-anna", "helpdesk")
    key: str = created["key"]
    found = keys.authenticate(key)
    assert isinstance(found, ApiKey)
    assert (found.id, found.name, found.role, found.active) == (created["id"], "helpdesk-anna", Role.HELPDESK, True)
    prefix, key_id, secret = key.split("_", 2)
    wrong_secret = f"{prefix}_{key_id}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"
    unknown_id = f"{prefix}_{'0' * 16 if key_id != '0' * 16 else '1' * 16}_{secret}"
    for refused in (wrong_secret, unknown_id, "", "plk_", key + "x", key[:-1], key.upper(), "Bearer " + key,
                    f"plk_{key_id}_{secret}' OR '1'='1", "x" * 10_000):  # fmt: skip
        assert keys.authenticate(refused) is None, refused

    revoked = cli("api-key", "revoke", created["id"], store=store_url)
    assert revoked.returncode == 0, revoked.stderr
    assert keys.authenticate(key) is None  # the next call already: nothing is cached


def test_roles_outside_the_four_are_bad_usage(store_url: str) -> None:
    for role in ("root", "POS", ""):
        result = cli("api-key", "create", "--name", "x", "--role", role, store=store_url)
        assert result.returncode == 2 and "--role" in result.stderr, result.stderr
    made = {create(store_url, f"k-{role}", role.value)["role"] for role in Role}
    assert made == {"pos", "helpdesk", "finance", "admin"}


def test_names_are_checked_and_unique_among_active_keys(store_url: str) -> None:
    first = create(store_url, "till-7")
    taken = cli("api-key", "create", "--name", "till-7", "--role", "finance", store=store_url)
    one_line_error(taken, 1, "already named 'till-7'")
    for bad in ("", "x" * 65, "tab\there"):
        result = cli("api-key", "create", "--name", bad, "--role", "pos", store=store_url)
        assert result.returncode == 2 and "--name" in result.stderr, (bad, result.stderr)
    assert cli("api-key", "revoke", first["id"], store=store_url).returncode == 0
    again = create(store_url, "till-7")  # a revoked key's name is free again
    assert again["id"] != first["id"]
    assert [(row["name"], row["revoked_at"] is None) for row in listed(store_url)] == [
        ("till-7", False),
        ("till-7", True),
    ]


def test_who_and_when_are_recorded_and_listed(store_url: str) -> None:
    before = datetime.now(UTC)
    created = create(store_url, "finance-close", "finance", "--operator", "carol")
    [row] = listed(store_url)
    assert list(row) == ["id", "name", "role", "created_at", "created_by", "revoked_at", "revoked_by"]
    assert (row["id"], row["name"], row["role"], row["created_by"]) == (created["id"], "finance-close", "finance",
                                                                        "carol")  # fmt: skip
    assert row["revoked_at"] is None and row["revoked_by"] is None
    created_at = datetime.fromisoformat(row["created_at"])
    assert created_at.utcoffset() == timedelta(0) and before <= created_at <= datetime.now(UTC)

    revoked = cli("api-key", "revoke", created["id"], "--operator", "dave", "--format", "json", store=store_url)
    assert revoked.returncode == 0 and "revoked the key" in revoked.stderr
    shown = json.loads(revoked.stdout)
    assert shown["revoked_by"] == "dave" and shown["created_by"] == "carol"
    [row] = listed(store_url)
    assert row["revoked_by"] == "dave" and created_at <= datetime.fromisoformat(row["revoked_at"])

    twice = cli("api-key", "revoke", created["id"], "--operator", "erin", store=store_url)
    assert twice.returncode == 0 and "already revoked" in twice.stderr and "nothing changed" in twice.stderr
    assert listed(store_url) == [row]  # the first revocation stands: nothing is updated in place

    table = cli("api-key", "list", store=store_url)
    assert "carol" in table.stdout and "dave" in table.stdout and created["id"] in table.stdout


def test_two_creators_at_once_get_one_key_of_a_name(store_url: str) -> None:
    """Each creator on a connection of its own, started together: the name is checked under the write lock."""
    apps = [LedgerApplication(parse_store_url(store_url), Program()) for _ in range(4)]
    try:
        stores = [api_key_store(app) for app in apps]
        start = threading.Barrier(len(stores))

        def create_one(store: ApiKeyStore) -> str:
            start.wait()
            try:
                store.create("till-race", Role.POS, "ops")
            except NameTakenError:
                return "taken"
            return "created"

        with ThreadPoolExecutor(len(stores)) as pool:
            outcomes = sorted(pool.map(create_one, stores))
    finally:
        for app in apps:
            app.close()
    assert outcomes == ["created", "taken", "taken", "taken"]
    assert [row["name"] for row in listed(store_url)] == ["till-race"]


def test_revoking_an_unknown_id_fails(store_url: str) -> None:
    create(store_url, "till-1")
    one_line_error(cli("api-key", "revoke", "0123456789abcdef", store=store_url), 1, "no API key has the id")


def test_the_default_operator_is_the_os_user(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "os-user")
    create(store_url, "till-1")
    assert listed(store_url)[0]["created_by"] == "os-user"


def test_listing_a_missing_ledger_creates_none(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'none.db'}"
    assert cli("api-key", "list", store=store).returncode != 0
    assert not (tmp_path / "none.db").exists()


# ---- the roles' permissions: issue 19's table ----------------------------------------------------------


def test_pos_reads_members_and_posts_the_tills_messages() -> None:
    assert may(Role.POS, Permission.READ_MEMBERS)
    assert all(may_post(Role.POS, kind) for kind in ("purchase", "refund", "redemption"))
    assert not may_post(Role.POS, "adjustment") and not may_post(Role.POS, "enrollment")
    assert not may(Role.POS, Permission.READ_HISTORY) and not may(Role.POS, Permission.READ_REPORTS)


def test_helpdesk_reads_members_and_history_and_posts_adjustments() -> None:
    assert may(Role.HELPDESK, Permission.READ_MEMBERS) and may(Role.HELPDESK, Permission.READ_HISTORY)
    assert may_post(Role.HELPDESK, "adjustment")
    assert not any(may_post(Role.HELPDESK, kind) for kind in ("purchase", "refund", "redemption"))
    assert not may(Role.HELPDESK, Permission.READ_DIGEST)


def test_finance_reads_reports_digest_and_projections_status_only() -> None:
    assert PERMISSIONS[Role.FINANCE] == {
        Permission.READ_REPORTS, Permission.READ_DIGEST, Permission.READ_PROJECTIONS_STATUS,
    }  # fmt: skip
    assert not may(Role.FINANCE, Permission.READ_MEMBERS)
    assert not any(may_post(Role.FINANCE, kind) for kind in ("purchase", "adjustment"))


def test_admin_may_do_all_of_it() -> None:
    assert all(may(Role.ADMIN, permission) for permission in Permission)
    assert all(may_post(Role.ADMIN, kind) for kind in ("purchase", "refund", "redemption", "adjustment", "enrollment"))
