"""Replay into a shadow ledger: `consume --from-beginning` with a corrected program reads the topic from the
start in a group of its own, and the shadow answers what the ledger would say under that program."""

from __future__ import annotations

import json
from pathlib import Path

from devkit.streamgen import generate
from tests.cli_helpers import cli
from tests.kafka_helpers import consume_args, create_topic, produce, unique

CORRECTED_PROGRAM = 'earn_rate = "2"\npoints_validity_days = 200\n'


def test_a_topic_replayed_into_a_shadow_ledger_with_a_corrected_program_answers_as_that_program(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    lines = generate(2_000, 60, 300, seed=41)
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(lines) + b"\n")
    topic = unique("replay")
    create_topic(kafka_bootstrap, topic, 3)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    produce(kafka_bootstrap, topic, [line for line in lines if line.strip()])
    group = unique("production")
    production = cli(*consume_args(kafka_bootstrap, topic, group, "--until-caught-up"), store=postgres_url)
    assert production.returncode == 0, production.stderr
    program = tmp_path / "corrected.toml"
    program.write_text(CORRECTED_PROGRAM)

    shadow = f"sqlite:///{tmp_path / 'shadow.db'}"
    replay_args = consume_args(kafka_bootstrap, topic, group, "--until-caught-up", "--from-beginning")
    replay = cli("--program", str(program), *replay_args, store=shadow)
    assert replay.returncode == 0, replay.stderr
    assert f"replaying from the beginning in consumer group {group}.replay-" in replay.stderr
    assert "in batches of up to 10,000 messages" in replay.stderr  # the largest a transaction may hold
    replayed = json.loads(replay.stdout)
    assert replayed["processed"] == json.loads(production.stdout)["processed"]  # every message read again

    # The same stream ingested message by message (a transaction each) under the corrected program.
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    ingested = cli("--program", str(program), "ingest", str(stream), "--format", "json", "--batch-size", "1",
                   "--dead-letter", str(tmp_path / "dl.jsonl"), store=reference)  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert replayed == json.loads(ingested.stdout)  # decided as that program decides
    answers = {}
    for name, store in (("shadow", shadow), ("reference", reference), ("production", postgres_url)):
        for command in (["balances"], ["report", "liability", "--as-of", "2024-09-01T00:00:00Z"]):
            done = cli("--program", str(program), *command, "--format", "json", store=store)
            assert done.returncode == 0, done.stderr
            answers[name, command[0]] = sorted(
                json.dumps({k: v for k, v in json.loads(line).items() if k != "position"})
                for line in done.stdout.splitlines()
            )  # members enrol in log order, which differs between partitions and a file
    assert answers["shadow", "balances"] == answers["reference", "balances"]
    assert answers["shadow", "report"] == answers["reference", "report"]
    assert answers["shadow", "balances"] != answers["production", "balances"]  # the correction shows

    again = cli(*replay_args, store=postgres_url)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["processed"] == 0  # the store's recorded positions win: nothing twice
