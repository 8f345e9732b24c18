"""`publish`: balance events for downstream services. One record per change, valid against its versioned schema,
with CloudEvents headers and a stable id; at least once through failures and SIGKILLs, never skipping; the
example downstream service ends equal to the ledger."""

from __future__ import annotations

import io
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consumers.jsonlines import ingest_lines
from consumers.metrics import PublisherMetrics
from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections import publish, queries
from projections.defaults import DEFAULT_SOURCE
from projections.publish import Publisher
from projections.runner import Projections
from schemas.balance_events import BALANCE_EVENT_MODELS, Outbound, event_type
from tests.cli_helpers import cli_command, cli_env
from tests.kafka_helpers import SESSION_TIMEOUT_MS, read_topic, unique
from tests.messages import CollectedLetters

EXAMPLE_SERVICE = Path(__file__).parent.parent / "examples" / "balance_service.py"


class ListSink:
    """Keeps what was sent; `fail_on_flush` makes the Nth flush fail (the broker did not acknowledge)."""

    def __init__(self, fail_on_flush: int | None = None) -> None:
        self.records: list[Outbound] = []
        self.flushes = 0
        self.fail_on_flush = fail_on_flush

    def send(self, record: Outbound) -> None:
        self.records.append(record)

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == self.fail_on_flush:
            raise RuntimeError("not acknowledged")


def ledger_with_stream(url: str, messages: int = 3_000, members: int = 60) -> LedgerApplication:
    app = LedgerApplication(parse_store_url(url), Program())
    stream = b"\n".join(generate(messages, members, 400, seed=23))
    ingest_lines(app, io.BytesIO(stream), "stream.jsonl", CollectedLetters(), batch_size=500)
    return app


def headers_of(record: Outbound) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def balances_from(records: list[Outbound]) -> dict[str, int]:
    """Each member's balance as a downstream service keeps it: the BalanceChanged of highest sequence."""
    latest: dict[str, tuple[int, int]] = {}
    for record in records:
        if record.name == "BalanceChanged":
            event = json.loads(record.value)
            if event["sequence"] > latest.get(event["member_id"], (0, 0))[0]:
                latest[event["member_id"]] = (event["sequence"], event["balance"])
    return {member: balance for member, (_, balance) in latest.items()}


def ledger_balances(app: LedgerApplication) -> dict[str, int]:
    with Projections(app).reading() as (sql, _):
        return {row["member_id"]: row["balance"] for row in queries.balances(sql, None)}


def expected_counts(app: LedgerApplication) -> Counter[str]:
    with Projections(app).reading() as (sql, _):
        changes = sql.scalar("SELECT COUNT(*) FROM pl_audit WHERE flow IS NOT NULL AND delta <> 0")
        tiers = sql.scalar("SELECT COUNT(*) FROM pl_audit WHERE kind = 'TierChanged'")
        rejected = sum(
            json.loads(row["details"])["message_type"] == "redemption"
            for row in sql.rows("SELECT details FROM pl_audit WHERE kind = 'MessageRejected'")
        )
    return Counter({"BalanceChanged": int(changes), "TierChanged": int(tiers), "RedemptionRejected": rejected})


def test_every_change_is_published_once_valid_ordered_and_again_from_the_beginning(sqlite_url: str) -> None:
    app = ledger_with_stream(sqlite_url)
    try:
        sink = ListSink()
        tally = publish.PublishTally()
        Publisher(Projections(app), "balances", sink).publish_available(tally)
        expected = expected_counts(app)
        assert expected["BalanceChanged"] > 1_000 and expected["TierChanged"] > 0 and expected["RedemptionRejected"] > 0
        assert Counter(record.name for record in sink.records) == expected == tally.published
        assert tally.position == app.recorder.max_notification_id()
        ids = [headers_of(record)["ce_id"] for record in sink.records]
        assert len(set(ids)) == len(ids)
        sequences: dict[str, int] = {}
        for record in sink.records:
            headers = headers_of(record)
            model = BALANCE_EVENT_MODELS[record.name].model_validate_json(record.value)  # the versioned schema
            assert headers["ce_type"] == event_type(record.name) and headers["ce_specversion"] == "1.0"
            assert headers["content-type"] == "application/json" and headers["ce_source"] == DEFAULT_SOURCE
            assert record.key.decode() == headers["ce_subject"] == json.loads(record.value)["member_id"]
            assert headers["ce_time"].endswith("Z")
            if record.name == "BalanceChanged":
                sequence = model.model_dump()["sequence"]
                assert sequence > sequences.get(headers["ce_subject"], 0)  # per-member order
                sequences[headers["ce_subject"]] = sequence
        balances = ledger_balances(app)
        assert balances_from(sink.records) == {m: b for m, b in balances.items() if m in sequences}
        assert all(balances[m] == 0 for m in balances if m not in sequences)

        again = ListSink()
        publisher = Publisher(Projections(app), "balances", again)
        publisher.publish_available(publish.PublishTally())
        assert again.records == []  # nothing new
        publisher.restart_from_beginning()
        publisher.publish_available(publish.PublishTally())
        assert again.records == sink.records  # the same ids and values: a new subscriber sees the same history
        other_topic = ListSink()
        Publisher(Projections(app), "another", other_topic).publish_available(publish.PublishTally())
        assert other_topic.records == sink.records  # each topic keeps its own position
    finally:
        app.close()


def test_a_page_the_broker_did_not_acknowledge_is_sent_again_never_skipped(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PUBLISH_PAGE", 300)
    app = ledger_with_stream(sqlite_url, messages=1_500, members=30)
    try:
        failing = ListSink(fail_on_flush=3)
        publisher = Publisher(Projections(app), "balances", failing)
        with pytest.raises(RuntimeError, match="not acknowledged"):
            publisher.publish_available(publish.PublishTally())
        stopped_at = publisher.position()
        assert 0 < stopped_at < (app.recorder.max_notification_id() or 0)
        retry = ListSink()
        Publisher(Projections(app), "balances", retry).publish_available(publish.PublishTally())
        everything = ListSink()
        Publisher(Projections(app), "fresh", everything).publish_available(publish.PublishTally())
        delivered = {headers_of(r)["ce_id"]: r for r in [*failing.records, *retry.records]}
        assert set(delivered) == {headers_of(r)["ce_id"] for r in everything.records}  # none skipped
        resent = {headers_of(r)["ce_id"] for r in failing.records} & {headers_of(r)["ce_id"] for r in retry.records}
        assert resent  # the unacknowledged page went again (at least once)
        assert balances_from([*failing.records, *retry.records]) == balances_from(everything.records)
    finally:
        app.close()


def _start_publisher(store: str, bootstrap: str, topic: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command("publish", "--bootstrap-servers", bootstrap, "--topic", topic, "--partitions", "3",
                    "--poll-interval", "0.5", "--format", "json", *extra, store=store),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def published_position(store: str, topic: str) -> int:
    app = LedgerApplication(parse_store_url(store), Program())
    try:
        return Projections(app).db.position(f"publish:{topic}")
    finally:
        app.close()


def _run_service(bootstrap: str, topic: str, db: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE_SERVICE), "--bootstrap-servers", bootstrap, "--topic", topic,
         "--group", unique("service"), "--db", str(db), "--until-idle", "4",
         "--session-timeout-ms", SESSION_TIMEOUT_MS],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_the_example_service_ends_equal_to_the_ledger_after_publishers_killed_at_random(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    """Publishers SIGKILLed at random moments, then one that runs to the end: every change reaches the topic
    at least once, and the example service, de-duplicating by ce_id, ends with the ledger's balances."""
    app = ledger_with_stream(postgres_url, messages=20_000, members=300)
    try:
        expected = expected_counts(app)
        balances = ledger_balances(app)
    finally:
        app.close()
    topic = unique("balances")
    chance = random.Random(5)
    killed_at = []
    for _ in range(3):  # each killed at a random moment after it saved a page (mid-page, or between pages)
        before = published_position(postgres_url, topic)
        publisher = _start_publisher(postgres_url, kafka_bootstrap, topic)
        deadline = time.monotonic() + 120
        while published_position(postgres_url, topic) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(chance.uniform(0, 0.1))  # at most ~1,000 records more (10,000/s): the kills leave work
        publisher.send_signal(signal.SIGKILL)
        publisher.communicate(timeout=60)
        killed_at.append(published_position(postgres_url, topic))
    finisher = _start_publisher(postgres_url, kafka_bootstrap, topic, "--until-idle", "1")
    out, err = finisher.communicate(timeout=300)
    assert finisher.returncode == 0, err
    summary = json.loads(out)
    assert summary["lag"] == 0 and summary["published"] > 0  # the kills left work for the last run
    assert killed_at == sorted(killed_at) and 0 < killed_at[0] < summary["position"]

    records = read_topic(kafka_bootstrap, topic)
    ids = Counter(dict(record.headers)["ce_id"] for record in records)
    assert len(ids) == sum(expected.values())  # every change, none missing
    service = _run_service(kafka_bootstrap, topic, tmp_path / "service.sqlite3")
    assert service["duplicates"] == len(records) - len(ids)
    assert service["applied"] + service["stale"] == expected["BalanceChanged"]
    with sqlite3.connect(tmp_path / "service.sqlite3") as db:
        kept = dict(db.execute("SELECT member_id, balance FROM balances").fetchall())
    assert kept == {member: balance for member, balance in balances.items() if member in kept}
    assert all(balance == 0 for member, balance in balances.items() if member not in kept)


def test_publisher_metrics_count_records_by_type_and_the_lag(sqlite_url: str) -> None:
    app = ledger_with_stream(sqlite_url, messages=800, members=20)
    try:
        metrics = PublisherMetrics()
        sink = ListSink()
        Publisher(Projections(app), "balances", sink).publish_available(
            publish.PublishTally(), lambda t: metrics.page(dict(t.published), t.position, t.head)
        )
        sent = Counter(record.name for record in sink.records)
        assert set(sent) == set(BALANCE_EVENT_MODELS)  # every type was published: each one's counter is checked
        for name in BALANCE_EVENT_MODELS:
            assert metrics.registry.get_sample_value(
                "points_ledger_balance_events_published_total", {"type": name}
            ) == sent[name] > 0  # fmt: skip
        assert (
            metrics.registry.get_sample_value("points_ledger_publisher_position") == app.recorder.max_notification_id()
        )
        assert metrics.registry.get_sample_value("points_ledger_publisher_lag_events") == 0
    finally:
        app.close()
