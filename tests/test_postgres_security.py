"""PostgreSQL in production: TLS with certificate checks, and passwords from anywhere but the command line.

One throwaway server for the module (never the shared one): scram-sha-256 passwords, a certificate from
a trustme CA, `ssl = on`, and a pg_hba.conf that accepts TCP only over TLS (`hostssl`) and rejects the
rest (`hostnossl ... reject`). Its log records every connection, so a test can tell the CLI's own
connections (the first direct one and the library's pool) went over TLS.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme

from consumers.deadletters import JsonLinesDeadLetters
from consumers.jsonlines import ingest_lines
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.pgconnect import connection_kwargs
from ledger.storage.store import StoreError, parse_store_url
from points_ledger.preflight import check_reachable, connect
from tests.cli_helpers import SAMPLE, cli, cli_command, cli_env, one_line_error
from tests.kafka_helpers import wait_for
from tests.pg_server import PgServer, pg_server, write_as_postgres
from tests.test_secrets import PIECES
from tests.test_secrets import SECRET as PLANTED

#: Distinctive, so finding it anywhere in output is never a coincidence.
SECRET = "Pw-7f3e9c1a-ledger-sekrit"
WRONG = "Wr0ng-b7c4e1-not-the-password"
USER = "ledger_app"
#: Variables that could hand a test a password or TLS setting it did not choose.
AMBIENT = (
    "PGPASSWORD", "PGPASSFILE", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGUSER", "PGAPPNAME",
    "PGCONNECT_TIMEOUT", "POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_GET_PASSWORD_TOPIC",
)  # fmt: skip
TLS_ON = "SSL enabled"
#: A role whose password holds every character that ends a URL's piece somewhere (`#/?@:%`).
PLANTED_USER = "ledger_planted"


@dataclass(frozen=True)
class TlsServer:
    server: PgServer
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA the server's certificate has nothing to do with


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    files = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(files / "ca.pem"))
    other.cert_pem.write_to_path(str(files / "other-ca.pem"))

    def configure(server: PgServer) -> None:
        write_as_postgres(server.data / "server.crt", b"".join(pem.bytes() for pem in certificate.cert_chain_pems))
        write_as_postgres(server.data / "server.key", certificate.private_key_pem.bytes())
        write_as_postgres(server.data / "pg_hba.conf", (
            "local     all all              trust\n"
            "hostssl   all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        ))  # fmt: skip
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\npassword_encryption = 'scram-sha-256'\nlog_connections = on\n")

    with pg_server(initdb_args=("--auth-local=trust", "--auth-host=scram-sha-256"), configure=configure) as server:
        with server.admin() as admin:
            admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{SECRET}'")
            admin.execute(f"CREATE ROLE {PLANTED_USER} LOGIN PASSWORD '{PLANTED}'")
        yield TlsServer(server, files / "ca.pem", files / "other-ca.pem")


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test names its own password source; no ~/.pgpass of the machine's either."""
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def new_database(tls_server: TlsServer, owner: str) -> str:
    """A fresh database owned by `owner` (left for the module's server to take away)."""
    name = f"pl_{uuid.uuid4().hex[:10]}"
    with tls_server.server.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
    return name


@pytest.fixture
def database(tls_server: TlsServer) -> str:
    """A fresh database owned by the application's role."""
    return new_database(tls_server, USER)


def url(tls_server: TlsServer, database: str, query: str = "", password: str | None = None) -> str:
    user = f"{USER}:{password}" if password else USER
    return f"postgresql://{user}@127.0.0.1:{tls_server.server.port}/{database}{'?' + query if query else ''}"


def verify_full(tls_server: TlsServer, *, ca: Path | None = None, extra: str = "") -> str:
    return f"sslmode=verify-full&sslrootcert={ca or tls_server.ca}{'&' + extra if extra else ''}"


def passfile(tmp_path: Path, tls_server: TlsServer, password: str = SECRET, mode: int = 0o600) -> Path:
    file = tmp_path / "pgpass"
    file.write_text(f"# libpq's format\n127.0.0.1:{tls_server.server.port}:*:{USER}:{password}\n")
    file.chmod(mode)
    return file


def no_secret_in(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr, (result.stdout, result.stderr)


def ingest_then_balances(store: str, env: dict[str, str] | None = None) -> None:
    ingested = cli("ingest", str(SAMPLE), "--format", "json", "--dead-letter", "/dev/null", store=store, env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["recorded"] > 0
    balances = cli("balances", "--format", "json", store=store, env=env)
    assert balances.returncode == 0, balances.stderr
    rows = [json.loads(line) for line in balances.stdout.splitlines()]
    assert rows and all(set(row) == {"member_id", "balance", "tier", "position"} for row in rows)
    no_secret_in(ingested, SECRET)
    no_secret_in(balances, SECRET)


def has_connected(tls_server: TlsServer, application_name: str) -> bool:
    return bool(connections_logged(tls_server, application_name))


def connections_logged(tls_server: TlsServer, application_name: str) -> list[str]:
    """The server's 'connection authorized' lines for one application_name."""
    log = tls_server.server.log.read_text(errors="replace").splitlines()
    return [line for line in log if "connection authorized" in line and f"application_name={application_name} " in line]


# ---- the password from each source, over verified TLS, through the real CLI ------------------------------


def test_pgpassword_over_verify_full_and_every_connection_is_tls(tls_server: TlsServer, database: str) -> None:
    name = f"pl-sec-{uuid.uuid4().hex[:8]}"
    store = url(tls_server, database, verify_full(tls_server, extra=f"application_name={name}"))
    ingest_then_balances(store, env={"PGPASSWORD": SECRET})
    # The CLI's direct connection and the library's pool both connected, and all of them over TLS.
    lines = connections_logged(tls_server, name)
    assert len(lines) >= 4 and all(TLS_ON in line for line in lines), lines  # two commands, >= 2 each


@pytest.mark.parametrize("named_by", ["PGPASSFILE", "passfile parameter"])
def test_a_libpq_passfile(tls_server: TlsServer, database: str, tmp_path: Path, named_by: str) -> None:
    file = passfile(tmp_path, tls_server)
    if named_by == "PGPASSFILE":  # and TLS from libpq's variables too: nothing in the URL's query
        env = {"PGPASSFILE": str(file), "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(tls_server.ca)}
        ingest_then_balances(url(tls_server, database), env=env)
    else:
        ingest_then_balances(url(tls_server, database, verify_full(tls_server, extra=f"passfile={file}")))


def test_password_in_the_url_still_works_and_is_masked(tls_server: TlsServer, database: str) -> None:
    store = url(tls_server, database, verify_full(tls_server), password=SECRET)
    ingest_then_balances(store)
    parsed = parse_store_url(store)
    assert SECRET not in parsed.describe() and ":***@" in parsed.describe()
    assert SECRET not in repr(parsed) and SECRET not in str(parsed)


def test_password_file_argument_in_process(
    tls_server: TlsServer, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "db-password"
    secret_file.write_text(f"{SECRET}\n")
    monkeypatch.setenv("POSTGRES_PASSWORD", WRONG)  # the password file comes first
    store = parse_store_url(url(tls_server, database, verify_full(tls_server)), password_file=secret_file)
    assert SECRET not in repr(store) and SECRET not in store.describe()
    check_reachable(store)
    with connect(store) as direct:
        row = direct.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row is not None and row[0] is True and str(row[1]).startswith("TLS"), row
    app = LedgerApplication(store, Program())
    try:
        tally = ingest_lines(app, io.BytesIO(SAMPLE.read_bytes()), "stream.jsonl", JsonLinesDeadLetters(io.StringIO()))
        assert tally.recorded > 0
        assert next(app.member_ids(), None) is not None
        datastore = app.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as pooled:  # the library's pool, not our direct connection
            row = pooled.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            assert row == {"ssl": True}, row
    finally:
        app.close()


# ---- refusals: exit 3 with the server's or libpq's reason, and no secret anywhere ---------------------


@pytest.mark.parametrize("named_by", ["url", "PGSSLMODE"])
def test_verify_full_against_an_untrusted_ca_fails(tls_server: TlsServer, database: str, named_by: str) -> None:
    env = {"PGPASSWORD": SECRET}
    if named_by == "url":
        store = url(tls_server, database, verify_full(tls_server, ca=tls_server.other_ca))
    else:
        store = url(tls_server, database)
        env |= {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(tls_server.other_ca)}
    result = cli("balances", store=store, env=env)
    one_line_error(result, 3, "unavailable", "certificate verify failed")
    no_secret_in(result, SECRET)


def test_the_server_refuses_a_connection_without_tls(tls_server: TlsServer, database: str) -> None:
    result = cli("balances", store=url(tls_server, database, "sslmode=disable"), env={"PGPASSWORD": SECRET})
    one_line_error(result, 3, "unavailable", "pg_hba.conf rejects connection", "no encryption")
    no_secret_in(result, SECRET)


@pytest.mark.parametrize("source", ["url", "PGPASSWORD", "passfile"])
def test_a_wrong_password_exits_3_with_the_servers_reason_and_never_shows_it(
    tls_server: TlsServer, database: str, tmp_path: Path, source: str
) -> None:
    query = verify_full(tls_server)
    env: dict[str, str] = {}
    if source == "PGPASSWORD":
        env["PGPASSWORD"] = WRONG
    elif source == "passfile":
        env["PGPASSFILE"] = str(passfile(tmp_path, tls_server, WRONG))
    store = url(tls_server, database, query, password=WRONG if source == "url" else None)
    result = cli("ingest", str(SAMPLE), store=store, env=env)
    one_line_error(result, 3, "unavailable", f'password authentication failed for user "{USER}"')
    no_secret_in(result, WRONG, SECRET)


# ---- bad settings: exit 2 before any connection ----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("sslmdoe=require", "sslmdoe"),
        ("sslmode=require&target_session_attrs=any", "target_session_attrs"),
        (f"password={WRONG}", "password"),
        ("sslmode=verify", "'verify'"),
        ("sslmode=require&sslmode=disable", "given twice: sslmode"),
        ("sslmode=", "without a value: sslmode"),
        ("connect_timeout=soon", "connect_timeout"),
        ("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "sslrootcert '/nonexistent/ca.pem' is not a file"),
    ],
)
def test_bad_url_parameters_exit_2_naming_them(tls_server: TlsServer, database: str, query: str, named: str) -> None:
    result = cli("balances", store=url(tls_server, database, query))
    one_line_error(result, 2, "bad PostgreSQL", named)
    no_secret_in(result, WRONG)


def test_a_password_file_that_cannot_be_used_exits_2(tls_server: TlsServer, database: str, tmp_path: Path) -> None:
    store = url(tls_server, database, verify_full(tls_server))
    missing = cli("balances", store=store, env={"PGPASSFILE": str(tmp_path / "missing")})
    one_line_error(missing, 2, "password file", "cannot be read", "No such file")
    readable = passfile(tmp_path, tls_server, mode=0o644)
    loose = url(tls_server, database, verify_full(tls_server, extra=f"passfile={readable}"))
    open_to_all = cli("balances", store=loose)
    one_line_error(open_to_all, 2, "group or world access")
    no_secret_in(open_to_all, SECRET)
    with pytest.raises(StoreError, match="cannot be read"):
        parse_store_url(store, password_file=tmp_path / "no-such-secret")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(StoreError, match="is empty"):
        parse_store_url(store, password_file=tmp_path / "empty")


# ---- the precedence, without a server ---------------------------------------------------------------------


def test_password_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = "postgresql://app{}@db.example:5432/ledger?sslmode=require&application_name=x&connect_timeout=7"
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\r\n")

    def password(store_url: str, file: Path | None = None) -> str | None:
        kwargs = connection_kwargs(parse_store_url(store_url, password_file=file))
        assert kwargs["sslmode"] == "require" and kwargs["application_name"] == "x" and kwargs["connect_timeout"] == 7
        value = kwargs.get("password")
        return None if value is None else str(value)

    monkeypatch.setenv("POSTGRES_PASSWORD", "from-env")
    monkeypatch.setenv("PGPASSWORD", "libpq-reads-this-itself")
    assert password(base.format(":from%40url"), secret_file) == "from@url"
    assert password(base.format(""), secret_file) == "from-file"
    assert password(base.format("")) == "from-env"
    monkeypatch.delenv("POSTGRES_PASSWORD")
    assert password(base.format("")) is None  # no password key: libpq takes PGPASSWORD, then the passfile


def test_masking_covers_messages_too() -> None:
    with pytest.raises(StoreError) as raised:
        parse_store_url(f"postgresql://app:{WRONG}@db.example:notaport/ledger")
    assert WRONG not in str(raised.value) and "app:***@db.example" in str(raised.value)
    with pytest.raises(StoreError) as raised:
        parse_store_url(f"postgresql://app:{WRONG}@db.example/ledger?bogus=1")
    assert WRONG not in str(raised.value) and "bogus" in str(raised.value)


# ---- the password file through the CLI's settings, and the preflight check ------------------------------


@pytest.mark.parametrize("named_by", ["flag", "env", "config file"])
def test_the_store_password_file_setting_reaches_both_connections(
    tls_server: TlsServer, database: str, tmp_path: Path, named_by: str
) -> None:
    secret_file = tmp_path / "db-password"
    secret_file.write_text(f"{SECRET}\n")
    store = url(tls_server, database, verify_full(tls_server))
    env: dict[str, str] = {}
    args: list[str] = []
    if named_by == "flag":
        args = ["--store-password-file", str(secret_file)]
    elif named_by == "env":
        env["LEDGER_STORE_PASSWORD_FILE"] = str(secret_file)
    else:
        config = tmp_path / "points-ledger.toml"
        config.write_text(f'[store]\nurl = "{store}"\npassword_file = "{secret_file}"\n')
        args = ["--config", str(config)]
    result = cli(*args, "ingest", str(SAMPLE), "--format", "json", "--dead-letter", "/dev/null",
                 store=None if named_by == "config file" else store, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["recorded"] > 0
    shown = cli(*args, "config", "show", "--format", "json", store=None if named_by == "config file" else store,
                env=env)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    no_secret_in(result, SECRET)
    no_secret_in(shown, SECRET)


def test_check_names_a_wrong_password_and_tls_without_showing_the_password(
    tls_server: TlsServer, database: str, tmp_path: Path
) -> None:
    closed = "127.0.0.1:1"  # no Kafka here: only the store lines matter
    store = url(tls_server, database, verify_full(tls_server))
    good = cli("check", "--bootstrap-servers", closed, store=store, env={"PGPASSWORD": SECRET})
    assert good.returncode == 1  # Kafka is unreachable
    assert "ok   store: " in good.stdout and ", TLS" in good.stdout, good.stdout
    assert re.search(r"ok   store: .*PostgreSQL \d+", good.stdout), good.stdout  # the server's own version
    assert "ok   store privileges: " in good.stdout and "ok   store clock: " in good.stdout
    bad = cli("check", "--bootstrap-servers", closed, store=store, env={"PGPASSWORD": WRONG})
    assert bad.returncode == 1
    assert f"FAIL store: {store.split('?')[0]}" in bad.stdout
    assert "password authentication failed" in bad.stdout and "fix: check the password" in bad.stdout
    untrusted = cli("check", "--bootstrap-servers", closed, env={"PGPASSWORD": SECRET},
                    store=url(tls_server, database, verify_full(tls_server, ca=tls_server.other_ca)))  # fmt: skip
    assert "FAIL store: " in untrusted.stdout and "certificate verify failed" in untrusted.stdout
    assert "fix: check sslmode and sslrootcert" in untrusted.stdout
    for result in (good, bad, untrusted):
        no_secret_in(result, SECRET, WRONG)


# ---- a password with every special character, against the real server ----------------------------------


@pytest.fixture
def planted_database(tls_server: TlsServer) -> str:
    """A fresh database owned by the role whose password is PLANTED."""
    return new_database(tls_server, PLANTED_USER)


def no_piece_in(*texts: str) -> None:
    """No piece of PLANTED between its special characters is in any of `texts`."""
    for text in texts:
        assert [piece for piece in PIECES if piece in text] == [], text


def test_a_password_with_every_special_character_reaches_libpq_and_nothing_else(
    tls_server: TlsServer, planted_database: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "db-password"
    secret_file.write_text(f"{PLANTED}\n")
    where = f"127.0.0.1:{tls_server.server.port}/{planted_database}?{verify_full(tls_server)}"
    bare = f"postgresql://{PLANTED_USER}@{where}"
    encoded = f"postgresql://{PLANTED_USER}:{quote(PLANTED, safe='')}@{where}"
    partly = (
        f"postgresql://{PLANTED_USER}:{PLANTED.replace('%', '%25').replace('/', '%2F').replace('@', '%40')}@{where}"
    )
    report = tmp_path / "diff.json"
    against = ["--against-ledger", bare, "--against-ledger-password-file", str(secret_file)]
    runs = [
        (cli("ingest", str(SAMPLE), "--format", "json", "--dead-letter", "/dev/null", store=encoded), 0),
        (cli("balances", "--format", "json", store=partly), 0),  # '#', '?' and ':' need no encoding
        (cli("--store-password-file", str(secret_file), "balances", store=bare), 0),
        (cli("balances", store=bare, env={"PGPASSWORD": PLANTED}), 0),
        (cli("balances", store=bare, env={"LEDGER_STORE_PASSWORD_FILE": str(secret_file)}), 0),
        (cli("check", "--bootstrap-servers", "127.0.0.1:1", store=encoded), 1),  # no Kafka here
        (cli("reconcile", *against, "--report", str(report), "--format", "json", store=encoded), 0),
        (cli("balances", store=f"postgresql://{PLANTED_USER}:{PLANTED}@{where}"), 2),  # as written: refused
        (cli("balances", store=f"postgresql://{USER}:{quote(PLANTED, safe='')}@{where}"), 3),  # someone else's
    ]
    for result, status in runs:
        assert result.returncode == status, (result.args, result.stdout, result.stderr)
        no_piece_in(result.stdout, result.stderr)
    check = runs[5][0].stdout
    shown = bare.split("?", maxsplit=1)[0].replace(PLANTED_USER, f"{PLANTED_USER}:***")
    assert f"ok   store: {shown}" in check, check
    assert "ok   store privileges: " in check
    assert json.loads(runs[6][0].stdout)["discrepancies"] == 0
    written = report.read_text()
    no_piece_in(written)
    assert json.loads(written)["ledger"]["store"].startswith(f"postgresql://{PLANTED_USER}:***@127.0.0.1:")
    assert "password authentication failed" in runs[8][0].stderr
    no_piece_in(tls_server.server.log.read_text(errors="replace"))  # nor in the server's log


def test_the_process_list_shows_a_password_only_when_a_flag_holds_it(
    tls_server: TlsServer, planted_database: str, tmp_path: Path
) -> None:
    """`/proc/PID/cmdline` is readable by every user of the machine; the environment (`/proc/PID/environ`) only
    by the same user and root, and a password file by whoever its mode allows."""
    secret_file = tmp_path / "db-password"
    secret_file.write_text(f"{PLANTED}\n")
    secret_file.chmod(0o600)
    for given_by in ("--store-password-file", "PGPASSWORD", "LEDGER_STORE", "--store"):
        name = f"pl-ps-{uuid.uuid4().hex[:8]}"
        where = (
            f"127.0.0.1:{tls_server.server.port}/{planted_database}?{verify_full(tls_server)}&application_name={name}"
        )
        bare, encoded = (
            f"postgresql://{PLANTED_USER}@{where}",
            f"postgresql://{PLANTED_USER}:{quote(PLANTED, safe='')}@{where}",
        )
        args = ["projections", "follow", "--poll-interval", "0.5"]
        env: dict[str, str] = {}
        store: str | None = bare
        if given_by == "--store-password-file":
            args = ["--store-password-file", str(secret_file), *args]
        elif given_by == "PGPASSWORD":
            env[given_by] = PLANTED
        elif given_by == "LEDGER_STORE":
            env[given_by], store = encoded, None
        else:
            store = encoded
        follower = subprocess.Popen(cli_command(*args, store=store), env=cli_env(env), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            wait_for(partial(has_connected, tls_server, name), 60, f"{given_by}: the follower connected")
            listed = Path(f"/proc/{follower.pid}/cmdline").read_bytes().decode()
        finally:
            follower.send_signal(signal.SIGTERM)
            out, err = follower.communicate(timeout=60)
        assert follower.returncode in {0, -signal.SIGTERM}, err  # the signal may come before its handler
        no_piece_in(out, err)
        if given_by == "--store":
            assert quote(PLANTED, safe="") in listed  # what --help warns of
        else:
            no_piece_in(listed)
