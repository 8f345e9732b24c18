"""One config file, flags > environment > file > defaults, `config show` with sources, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devkit.streamgen import generate
from points_ledger.config import load_settings
from tests.cli_helpers import cli, one_line_error
from tests.kafka_helpers import create_topic, positions, produce, unique

SECRET = "s3cret-Passw0rd-xyzzy"
#: Environment variables of the settings, removed so that the machine's own cannot leak into a test.
SETTINGS_ENV = [
    "LEDGER_CONFIG",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "LEDGER_GROUP",
    "LEDGER_BATCH_SIZE",
    "KAFKA_COMPRESSION",
]


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # ./points-ledger.toml is looked for in the working directory
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


def shown(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = cli(*args, "config", "show", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return {row["setting"]: row for row in map(json.loads, result.stdout.splitlines())}


def test_flags_beat_the_environment_beat_the_file_beat_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "file:9092"\ncompression = "zstd"\n'
        '[consume]\ngroup = "from-file"\nbatch_size = 700\ntopics = ["a", "b"]\n'
    )
    env = {"LEDGER_CONFIG": str(config), "LEDGER_GROUP": "from-env", "KAFKA_COMPRESSION": "lz4"}
    rows = shown("--store", "sqlite:///x.db", env=env)
    assert rows["config_file"] == {"setting": "config_file", "value": str(config), "source": "env LEDGER_CONFIG"}
    assert (rows["store.url"]["value"], rows["store.url"]["source"]) == ("sqlite:///x.db", "flag")
    assert (rows["consume.group"]["value"], rows["consume.group"]["source"]) == ("from-env", "env LEDGER_GROUP")
    assert (rows["kafka.compression"]["value"], rows["kafka.compression"]["source"]) == ("lz4", "env KAFKA_COMPRESSION")
    assert (rows["consume.batch_size"]["value"], rows["consume.batch_size"]["source"]) == (700, f"file {config}")
    assert rows["consume.topics"]["value"] == ["a", "b"]
    assert (rows["consume.store_attempts"]["value"], rows["consume.store_attempts"]["source"]) == (3, "default")
    # A command's own flag beats all of them.
    flagged = cli("config", "show", "--format", "json", "--compression", "gzip", env=env)
    row = next(r for r in map(json.loads, flagged.stdout.splitlines()) if r["setting"] == "kafka.compression")
    assert (row["value"], row["source"]) == ("gzip", "flag")
    # --config beats LEDGER_CONFIG; ./points-ledger.toml is read when neither names a file.
    other = tmp_path / "other.toml"
    other.write_text("[consume]\nbatch_size = 42\n")
    assert shown("--config", str(other), env={"LEDGER_CONFIG": str(config)})["consume.batch_size"]["value"] == 42
    (tmp_path / "points-ledger.toml").write_text("[consume]\nbatch_size = 43\n")
    rows = shown()
    assert rows["consume.batch_size"]["value"] == 43 and rows["config_file"]["value"] == "points-ledger.toml"


def test_secrets_are_masked_and_never_written_into_the_config_file(tmp_path: Path) -> None:
    password_file = tmp_path / "kafka.password"
    password_file.write_text(SECRET + "\n")
    env = {"KAFKA_SASL_PASSWORD": SECRET}
    table = cli("config", "show", env=env)
    rows = shown(env=env)
    assert rows["kafka.sasl_password"] == {"setting": "kafka.sasl_password", "value": "********",
                                           "source": "env KAFKA_SASL_PASSWORD"}  # fmt: skip
    assert SECRET not in table.stdout + table.stderr
    url = cli("--store", f"postgresql://u:{SECRET}@db:5432/l", "config", "show")
    assert url.returncode == 0 and SECRET not in url.stdout + url.stderr and "u:***@db" in url.stdout

    inline = tmp_path / "inline.toml"
    inline.write_text(f'[kafka]\nsasl_password = "{SECRET}"\n')
    result = cli("--config", str(inline), "config", "show")
    one_line_error(result, 2, "kafka.sasl_password must not be written in the file", "KAFKA_SASL_PASSWORD")
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[kafka\n", ["is not valid TOML"]),
        ('[consume]\nbatch_size = "lots"\n', ["consume.batch_size", "valid integer"]),
        (f'[kafka]\nsecurity_protocol = "{SECRET}"\n', ["kafka.security_protocol", "PLAINTEXT"]),
        ('[kafka]\nbootstrap = "x"\n', ["kafka.bootstrap", "Extra inputs are not permitted"]),
        ('[consume]\ntopics = ["no/slash"]\n', ["consume.topics", "is not a Kafka topic name"]),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2_without_the_values_given(
    tmp_path: Path, content: str, fragments: list[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = cli("--config", str(config), "config", "show")
    one_line_error(result, 2, *fragments)
    assert SECRET not in result.stderr


def test_a_config_file_that_is_named_must_exist(tmp_path: Path) -> None:
    one_line_error(cli("--config", str(tmp_path / "nope.toml"), "balances"), 2, "nope.toml does not exist")
    one_line_error(cli("balances", env={"LEDGER_CONFIG": str(tmp_path / "gone.toml")}), 2, "gone.toml does not exist")


def test_secret_files_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    base = ["consume", "--bootstrap-servers", "127.0.0.1:1", "--security-protocol", "SASL_PLAINTEXT",
            "--sasl-mechanism", "PLAIN", "--sasl-username", "u"]  # fmt: skip
    missing = cli(*base, "--sasl-password-file", str(tmp_path / "none"), store=f"sqlite:///{tmp_path / 'l.db'}")
    one_line_error(missing, 2, "kafka.sasl_password_file", "cannot be read")
    (tmp_path / "empty").write_text("\n")
    empty = cli(*base, "--sasl-password-file", str(tmp_path / "empty"), store=f"sqlite:///{tmp_path / 'l.db'}")
    one_line_error(empty, 2, "is empty")
    no_password = cli(*base, store=f"sqlite:///{tmp_path / 'l.db'}")
    one_line_error(no_password, 2, "needs a SASL username and password")


def test_consume_runs_from_the_config_file_alone(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic, group = unique("cfg"), unique("g")
    create_topic(kafka_bootstrap, topic, 2)
    last = produce(kafka_bootstrap, topic, generate(300, 20, 60, seed=3)).last_offsets
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = tmp_path / "points-ledger.toml"
    config.write_text(
        f'[store]\nurl = "{store}"\n[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\nsession_timeout_ms = 3000\n'
        f'[consume]\ntopics = ["{topic}"]\ngroup = "{group}"\nbatch_size = 50\n'
    )
    result = cli("consume", "--until-caught-up", "--format", "json")  # ./points-ledger.toml, nothing else
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["processed"] == sum(offset + 1 for offset in last.values())
    assert positions(store, topic, 2) == last


def test_the_production_config_in_the_readme_is_valid() -> None:
    production = Path(__file__).resolve().parents[1] / "deploy" / "points-ledger.toml"
    rows = shown("--config", str(production))
    assert rows["kafka.security_protocol"]["value"] == "SASL_SSL"
    assert rows["kafka.sasl_password_file"]["source"] == f"file {production}"
    assert "sslmode=verify-full" in rows["store.url"]["value"]


def test_no_secret_appears_in_anything_any_command_prints(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Secrets set in every place they may be given; every command's output is searched for them."""
    kafka_secret, key_secret, db_secret, url_secret = (f"{SECRET}-{part}" for part in ("kafka", "key", "db", "url"))
    password_file = tmp_path / "kafka.password"
    password_file.write_text(kafka_secret + "\n")
    (tmp_path / "db.password").write_text(db_secret + "\n")
    env = {"KAFKA_SASL_PASSWORD": kafka_secret, "KAFKA_SSL_KEY_PASSWORD": key_secret, "PGPASSWORD": db_secret,
           "LEDGER_STORE_PASSWORD_FILE": str(tmp_path / "db.password")}  # fmt: skip
    sasl = ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "u",
            "--bootstrap-servers", kafka_bootstrap]  # fmt: skip
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"\n".join(generate(20, 3, 5, seed=1)) + b"\n")
    postgres = f"postgresql://ledger:{url_secret}@127.0.0.1:1/ledger"
    runs = [
        cli("config", "show", env=env),
        cli("config", "show", "--format", "json", env=env),
        cli("--store", postgres, "config", "show", env=env),
        cli("--store", postgres, "balances", env=env),
        cli("--store", postgres, "check", *sasl, env=env),
        cli("--store", postgres, "consume", *sasl, "--until-idle", "1", env=env),
        cli("produce", str(stream), *sasl, env=env),
        cli("produce", str(stream), *sasl, "--sasl-password-file", str(password_file), env=env),
        cli("--store", f"sqlite:///{tmp_path / 'l.db'}", "ingest", str(stream), env=env),
        *(cli(*command, "--help", env=env) for command in (["consume"], ["produce"], ["check"], ["demo"], [])),
    ]
    for result in runs:
        printed = result.stdout + result.stderr
        for secret in (kafka_secret, key_secret, db_secret, url_secret, SECRET):
            assert secret not in printed, (result.args, printed)
    assert [r.returncode for r in runs[3:8]] == [3, 1, 3, 1, 1], [(r.returncode, r.stderr) for r in runs[3:8]]
    assert all("Traceback" not in r.stderr for r in runs)


def test_a_flag_naming_a_secret_file_outranks_the_secret_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_file = tmp_path / "kafka.password"
    from_file.write_text("from-the-file\n")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-environment")
    settings, _ = load_settings({})
    assert settings.kafka_settings().sasl_password.get_secret_value() == "from-the-environment"  # type: ignore[union-attr]
    settings, _ = load_settings({"kafka": {"sasl_password_file": from_file}})
    assert settings.kafka_settings().sasl_password.get_secret_value() == "from-the-file"  # type: ignore[union-attr]
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(from_file))  # the same layer: the secret itself wins
    settings, _ = load_settings({})
    assert settings.kafka_settings().sasl_password.get_secret_value() == "from-the-environment"  # type: ignore[union-attr]


def test_a_store_url_that_cannot_be_parsed_is_a_usage_error_without_the_url() -> None:
    for command in (["balances"], ["check", "--bootstrap-servers", "127.0.0.1:1"]):
        result = cli("--store", f"postgresql://u:{SECRET}@[::1/db", *command)
        assert SECRET not in result.stdout + result.stderr and "Traceback" not in result.stderr
        assert "cannot be parsed" in result.stdout + result.stderr
    unparsed = cli("--store", f"postgresql://u:{SECRET}@[::1/db", "balances")
    one_line_error(unparsed, 2, "bad PostgreSQL URL (not shown: it cannot be parsed")


def test_the_api_settings_come_from_the_file_and_the_environment_and_bad_ones_stop_serve(tmp_path: Path) -> None:
    config = tmp_path / "api.toml"
    config.write_text("[api]\nport = 9191\nthreads = 4\nready_lag_max = 0\n")
    rows = shown(env={"LEDGER_CONFIG": str(config), "LEDGER_API_WORKERS": "3", "LEDGER_API_METRICS": "false"})
    assert (rows["api.port"]["value"], rows["api.port"]["source"]) == (9191, f"file {config}")
    assert (rows["api.workers"]["value"], rows["api.workers"]["source"]) == (3, "env LEDGER_API_WORKERS")
    assert (rows["api.metrics"]["value"], rows["api.ready_lag_max"]["value"]) == (False, 0)
    assert rows["api.host"] == {"setting": "api.host", "value": "127.0.0.1", "source": "default"}
    for bad in ("[api]\nport = 0\n", "[api]\nworkers = 33\n", "[api]\nthreads = 0\n", "[api]\nlisten = 1\n"):
        config.write_text(bad)
        result = cli("--config", str(config), "serve", store=f"sqlite:///{tmp_path / 'x.db'}")
        assert result.returncode == 2 and "api." in result.stderr, result.stderr
