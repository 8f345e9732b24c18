"""No password is printed, logged or listed, whatever its characters and wherever it is given (issue 17, item 3).

A password holding every character that ends a URL's piece somewhere (`#/?@:%`) is planted as a person may
write it (unencoded, percent-encoded, partly encoded, as a `password=` parameter, behind a user name holding
an '@') in every place a store password can be given: `--store`, LEDGER_STORE, the config file, a password
file, PGPASSWORD, POSTGRES_PASSWORD, and `reconcile --against-ledger` with its password file and environment
variables. Every command path that can print or log a URL then runs against a closed port (`config show`,
`check`, `balances`, `ingest`, `consume`, `reconcile`, `--help`), in process with LEDGER_DEBUG=1, and its
stdout, stderr (under systemd: the journal) and any exception are searched for every piece of the password
between those characters. The same password against a real server is in tests/test_postgres_security.py.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result

from devkit.broker import free_port
from points_ledger.cli import main
from points_ledger.config import SECRETS
from tests.cli_helpers import SAMPLE

#: The planted password: `p#a/s?s@w:o%rd` with longer pieces, so that finding a piece is never chance.
SECRET = "Pw7#xQz/k9Lm?zRq@m2Kp:tYv%rdX"
#: Its pieces between the special characters: a leak of any of them is a leak (the encoded forms hold them too).
PIECES = re.split(r"[#/?@:%]", SECRET)
#: Everything of the environment that could give a command a store, a password or a config file.
AMBIENT = (
    "LEDGER_STORE", "LEDGER_STORE_PASSWORD_FILE", "LEDGER_CONFIG", "LEDGER_AGAINST_LEDGER",
    "LEDGER_AGAINST_LEDGER_PASSWORD_FILE", "PGPASSWORD", "PGPASSFILE", "POSTGRES_PASSWORD", "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD", "KAFKA_BOOTSTRAP_SERVERS",
)  # fmt: skip
#: A closed port, for PostgreSQL and Kafka alike: every connection is refused at once.
CLOSED = free_port()
SERVER = f"127.0.0.1:{CLOSED}"
#: The password written into a URL in each way a person may write it, and the exit status that follows:
#: 2 for a URL refused as it is written, 3 for one read and then found unreachable.
WRITTEN = {
    "unencoded": (f"postgresql://ledger:{SECRET}@{SERVER}/ledger", 2),
    "percent-encoded": (f"postgresql://ledger:{quote(SECRET, safe='')}@{SERVER}/ledger", 3),
    "partly encoded": (
        f"postgresql://ledger:{SECRET.replace('%', '%25').replace('/', '%2F').replace('@', '%40')}@{SERVER}/ledger",
        3,
    ),
    "password parameter": (f"postgresql://ledger@{SERVER}/ledger?sslmode=disable&password={quote(SECRET)}", 2),
    "unencoded parameter": (f"postgresql://ledger@{SERVER}/ledger?password={SECRET}", 2),
    "user name with '@'": (f"postgresql://ledger@azure:{SECRET}@{SERVER}/ledger", 2),
    "not a URL": (SECRET, 2),
}
#: Commands that name their store in what they print, with the status each ends with on a closed port
#: (None: the status of the store URL).
COMMANDS: list[tuple[list[str], int | None]] = [
    (["config", "show"], 0),
    (["config", "show", "--format", "json"], 0),
    (["check", "--bootstrap-servers", SERVER], 1),
    (["balances"], None),
    (["ingest", str(SAMPLE)], None),
    (["consume", "--bootstrap-servers", SERVER, "--until-idle", "1"], None),
    (["--help"], 0),
]


@pytest.fixture(autouse=True)
def nothing_ambient(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEDGER_DEBUG", "1")  # a trace for any unexpected error: searched as well
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass of the machine's
    monkeypatch.chdir(tmp_path)  # no ./points-ledger.toml either


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    file = tmp_path / "db-password"
    file.write_text(f"{SECRET}\n")
    return file


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, prog_name="points-ledger")


def no_secret_in(result: Result, status: int) -> None:
    """The command ended with `status`, and nothing it printed or raised holds a piece of the password."""
    raised = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
    said = f"{result.stdout}\n{result.stderr}\n{raised}"
    assert [piece for piece in PIECES if piece in said] == [], said
    assert result.exit_code == status, said
    if status >= 2:  # an error: one line, no trace
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("points-ledger: error: "), result.stderr


@pytest.mark.parametrize("written", WRITTEN)
@pytest.mark.parametrize("given_by", ["--store", "LEDGER_STORE"])
def test_a_store_url_holding_a_password_is_never_shown(written: str, given_by: str) -> None:
    url, url_status = WRITTEN[written]
    flag, env = (["--store", url], None) if given_by == "--store" else ([], {"LEDGER_STORE": url})
    for command, status in COMMANDS:
        no_secret_in(invoke(*flag, *command, env=env), url_status if status is None else status)
    shown = invoke(*flag, "config", "show", "--format", "json", env=env).stdout
    assert ("postgresql://ledger:***@" in shown) == (url_status == 3), shown  # masked, or not shown at all


@pytest.mark.parametrize(
    "given_by",
    ["--store-password-file", "LEDGER_STORE_PASSWORD_FILE", "config file", "PGPASSWORD", "POSTGRES_PASSWORD"],
)
def test_a_password_given_apart_from_the_url_is_never_shown(secret_file: Path, tmp_path: Path, given_by: str) -> None:
    url = f"postgresql://ledger@{SERVER}/ledger"
    flags, env = ["--store", url], {}
    if given_by == "--store-password-file":
        flags += ["--store-password-file", str(secret_file)]
    elif given_by == "config file":
        config = tmp_path / "points-ledger.toml"
        config.write_text(f'[store]\nurl = "{url}"\npassword_file = "{secret_file}"\n')
        flags = []
    elif given_by == "LEDGER_STORE_PASSWORD_FILE":
        env[given_by] = str(secret_file)
    else:
        env[given_by] = SECRET
    for command, status in COMMANDS:
        no_secret_in(invoke(*flags, *command, env=env), 3 if status is None else status)


@pytest.mark.parametrize("written", WRITTEN)
def test_a_config_file_refuses_a_store_url_holding_a_password(written: str, tmp_path: Path) -> None:
    url, _ = WRITTEN[written]
    config = tmp_path / "points-ledger.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    result = invoke("config", "show")
    no_secret_in(result, 2)
    assert "store.url with a password" in result.stderr and "store.password_file" in result.stderr
    assert "PGPASSWORD" in result.stderr
    check = invoke("check", "--bootstrap-servers", SERVER)  # the systemd unit's ExecStartPre
    no_secret_in(check, 1)
    assert "FAIL settings: config file" in check.stdout


@pytest.mark.parametrize(("section", "name"), sorted(SECRETS))
def test_every_secret_setting_is_refused_in_a_config_file_by_the_same_rule(
    section: str, name: str, tmp_path: Path
) -> None:
    value = f"postgresql://ledger:{quote(SECRET, safe='')}@{SERVER}/ledger" if name == "url" else SECRET
    (tmp_path / "points-ledger.toml").write_text(f'[{section}]\n{name} = "{value}"\n')
    result = invoke("config", "show")
    no_secret_in(result, 2)
    secret = SECRETS[(section, name)]
    assert f"{section}.{name}{secret.holding} must not be written in the file" in result.stderr
    assert f"or in a file named by {section}.{secret.file_setting}" in result.stderr


def test_a_store_url_without_a_password_and_a_password_file_are_accepted_in_a_config_file(
    secret_file: Path, tmp_path: Path
) -> None:
    url = f"postgresql://ledger@{SERVER}/ledger?sslmode=disable"
    (tmp_path / "points-ledger.toml").write_text(f'[store]\nurl = "{url}"\npassword_file = "{secret_file}"\n')
    result = invoke("config", "show")
    no_secret_in(result, 0)
    assert f"{url}  [file points-ledger.toml]" in result.stdout


@pytest.mark.parametrize("given_by", ["--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "config file"])
def test_kafka_servers_holding_a_login_are_refused_without_showing_it(given_by: str, tmp_path: Path) -> None:
    servers = f"user:{SECRET}@{SERVER}"
    flags: list[str] = []
    env: dict[str, str] = {}
    if given_by == "--bootstrap-servers":
        flags = ["--bootstrap-servers", servers]
    elif given_by == "config file":
        (tmp_path / "points-ledger.toml").write_text(f'[kafka]\nbootstrap_servers = "{servers}"\n')
    else:
        env[given_by] = servers
    result = invoke("config", "show", *flags, env=env)
    no_secret_in(result, 2)
    assert "kafka.bootstrap_servers" in result.stderr and "holds no credentials" in result.stderr


@pytest.mark.parametrize("written", WRITTEN)
@pytest.mark.parametrize("given_by", ["--against-ledger", "LEDGER_AGAINST_LEDGER"])
def test_reconcile_never_shows_the_other_ledgers_password(written: str, given_by: str, tmp_path: Path) -> None:
    url, status = WRITTEN[written]
    report = tmp_path / "diff.json"
    flags, env = (["--against-ledger", url], {}) if given_by == "--against-ledger" else ([], {given_by: url})
    result = invoke("--store", f"sqlite:///{tmp_path / 'l.db'}", "reconcile", *flags, "--report", str(report), env=env)
    no_secret_in(result, status)
    assert not report.exists()


@pytest.mark.parametrize("given_by", ["--against-ledger-password-file", "LEDGER_AGAINST_LEDGER_PASSWORD_FILE"])
def test_reconcile_takes_the_other_ledgers_password_from_a_file(
    secret_file: Path, tmp_path: Path, given_by: str
) -> None:
    flags, env = ([given_by, str(secret_file)], {}) if given_by.startswith("--") else ([], {given_by: str(secret_file)})
    store = ["--store", f"sqlite:///{tmp_path / 'l.db'}"]
    other = ["--against-ledger", f"postgresql://ledger@{SERVER}/ledger"]
    result = invoke(*store, "reconcile", *other, *flags, "--report", str(tmp_path / "r.json"), env=env)
    no_secret_in(result, 3)
    assert f"postgresql://ledger@{SERVER}/ledger unavailable" in result.stderr
    alone = invoke(*store, "reconcile", "--against", str(SAMPLE), *flags, "--report", str(tmp_path / "r.json"), env=env)
    no_secret_in(alone, 2)
    assert "is for --against-ledger" in alone.stderr


def test_help_says_a_password_in_a_url_is_visible_to_other_users() -> None:
    for command in ([], ["reconcile"]):
        result = invoke(*command, "--help")
        no_secret_in(result, 0)
        text = " ".join(result.stdout.split())
        assert "visible to other users of the machine (the process list)" in text, text
    assert "--store-password-file" in invoke("--help").stdout
    assert "--against-ledger-password-file" in invoke("reconcile", "--help").stdout
