"""`points-ledger check` passes on a sound set-up and finds each misconfiguration planted here."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from kafka import KafkaProducer

from consumers.kafka_settings import KafkaSettings
from tests.cli_helpers import cli
from tests.kafka_helpers import create_topic, unique
from tests.ports import closed_port


def run_check(*args: str, store: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli("check", *args, store=store, env=env)


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """check name -> its whole line."""
    found = {}
    for line in result.stdout.splitlines():
        status, rest = line.split(" ", 1)
        found[rest.strip().split(":", 1)[0]] = f"{status} {rest.strip()}"
    return found


def topics_with_dead_letters(bootstrap: str) -> str:
    topic = unique("chk")
    create_topic(bootstrap, topic, 2)
    create_topic(bootstrap, f"{topic}.dlq", 1)
    return topic


def test_a_sound_set_up_passes_every_check(kafka_bootstrap: str, postgres_url: str) -> None:
    topic = topics_with_dead_letters(kafka_bootstrap)
    result = run_check("--bootstrap-servers", kafka_bootstrap, "--format", "json", "--topic", topic,
                       store=postgres_url)  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stdout
    assert all(row["ok"] for row in rows)
    names = [row["check"] for row in rows]
    assert names == ["settings", "store", "store privileges", "store clock", "kafka", f"topic {topic}",
                     f"topic {topic}.dlq", "group points-ledger", f"clock {topic}", "codecs", "api",
                     "api keys"]  # fmt: skip


def test_check_finds_missing_topics_an_unknown_database_and_a_busy_metrics_port(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    missing = unique("missing")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "c.toml"
        config.write_text(f'[consume]\ntopics = ["{missing}"]\n[metrics]\nport = {port}\n')
        store = postgres_url.rsplit("/", 1)[0] + "/pl_no_such_database"
        result = cli("--config", str(config), "check", "--bootstrap-servers", kafka_bootstrap, store=store)
    assert result.returncode == 1
    found = lines(result)
    assert found["store"].startswith("FAIL") and 'database "pl_no_such_database" does not exist' in found["store"]
    assert "fix: create the database" in found["store"]
    assert found[f"topic {missing}"].startswith("FAIL") and "does not exist" in found[f"topic {missing}"]
    assert found[f"topic {missing}.dlq"].startswith("FAIL")
    assert found["metrics"].startswith("FAIL") and f"127.0.0.1:{port}" in found["metrics"]
    assert found["kafka"].startswith("ok")


def test_check_finds_unreachable_services_with_what_refused(tmp_path: Path) -> None:
    result = run_check("--bootstrap-servers", f"127.0.0.1:{closed_port()}",
                       store=f"postgresql://postgres@127.0.0.1:{closed_port()}/x")  # fmt: skip
    assert result.returncode == 1
    found = lines(result)
    assert found["store"].startswith("FAIL") and "Connection refused" in found["store"]
    assert found["kafka"].startswith("FAIL") and "no bootstrap server accepts a connection" in found["kafka"]
    missing_folder = run_check("--bootstrap-servers", "127.0.0.1:1", store=f"sqlite:///{tmp_path}/no/such/l.db")
    assert lines(missing_folder)["store"].startswith("FAIL") and "mkdir -p" in missing_folder.stdout


def test_check_finds_a_producer_clock_running_ahead(kafka_bootstrap: str, sqlite_url: str) -> None:
    topic = topics_with_dead_letters(kafka_bootstrap)
    producer = KafkaProducer(**KafkaSettings(kafka_bootstrap).producer_config())
    ahead_ms = int((time.time() + 3_600) * 1000)
    producer.send(topic, key=b"M", value=b"{}", timestamp_ms=ahead_ms, partition=0).get(timeout=30)
    producer.close()
    result = run_check("--bootstrap-servers", kafka_bootstrap, "--topic", topic, store=sqlite_url)
    assert result.returncode == 0, result.stdout  # a warning: the consumer caps record times at its own clock
    clock = lines(result)[f"clock {topic}"]
    assert clock.startswith("WARN") and "+3" in clock and "synchronise the clocks" in clock


def test_check_reports_settings_that_cannot_be_used(tmp_path: Path, sqlite_url: str) -> None:
    program = tmp_path / "program.toml"
    program.write_text('tiers = [{name = "gold", threshold = 10, multiplier = "1"}]\n')
    bad_program = cli("--program", str(program), "check", store=sqlite_url)
    assert bad_program.returncode == 1
    assert lines(bad_program)["settings"].startswith("FAIL") and "threshold 0" in bad_program.stdout
    no_ca = run_check("--bootstrap-servers", "127.0.0.1:1", "--security-protocol", "SSL", "--ssl-cafile",
                      str(tmp_path / "ca.pem"), store=sqlite_url)  # fmt: skip
    assert no_ca.returncode == 1 and "kafka.ssl_cafile: no file" in lines(no_ca)["settings"]
