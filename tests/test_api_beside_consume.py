"""The API and the Kafka consumer writing the same members at the same moment: neither overspends, applies a
message twice or loses one. Each writer decides on the members it holds in memory; the store takes each
member's next version once, and the writer that loses decides again on what the other recorded."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.api_helpers import Server, running_server
from tests.cli_helpers import cli
from tests.kafka_helpers import create_topic, produce, start_consume, unique, wait_for

MEMBERS = [f"both-{n}" for n in range(4)]
KAFKA_MESSAGES = 400
API_MESSAGES = 160
API_THREADS = 4
#: Kafka messages produced at a time, while the API posts.
KAFKA_CHUNK = 20


def purchase(event_id: str, member: str, amount: str) -> dict[str, Any]:
    return {"type": "purchase", "event_id": event_id, "member_id": member, "occurred_at": "2026-03-01T00:00:00Z",
            "transaction_id": f"t-{event_id}", "amount": amount, "currency": "USD"}  # fmt: skip


def post_until_decided(server: Server, message: dict[str, Any]) -> int:
    """Post; a 503 (another writer changed the member first, every retry) is retried with the same event_id,
    as a till would."""
    for _ in range(20):
        answer = server.post(message, "pos")
        if answer.status != 503:
            return answer.status
    raise AssertionError(f"{message['event_id']}: still 503 after 20 tries")


def test_the_api_and_consume_on_the_same_members_at_once_count_every_message_once(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> None:
    topic = unique("both")
    create_topic(kafka_bootstrap, topic, 2)
    kafka = [purchase(f"k-{n}", MEMBERS[n % len(MEMBERS)], "1.00") for n in range(KAFKA_MESSAGES)]
    api = [purchase(f"a-{n}", MEMBERS[n % len(MEMBERS)], "10.00") for n in range(API_MESSAGES)]
    shared = kafka[:40]  # sent by both: each counts once
    with running_server(postgres_url, tmp_path) as server:
        consumer = start_consume(postgres_url, kafka_bootstrap, topic, unique("g"))
        try:
            produce(kafka_bootstrap, topic, [json.dumps(message).encode() for message in kafka[:KAFKA_CHUNK]])
            wait_for(lambda: total_balance(server) == KAFKA_CHUNK, 60, "the consumer recording")  # it is live
            statuses: list[int] = []

            def post_share(share: list[dict[str, Any]]) -> None:
                statuses.extend(post_until_decided(server, message) for message in share)

            def produce_the_rest() -> None:  # while the API posts, in small batches
                for start in range(KAFKA_CHUNK, KAFKA_MESSAGES, KAFKA_CHUNK):
                    produce(
                        kafka_bootstrap, topic, [json.dumps(m).encode() for m in kafka[start : start + KAFKA_CHUNK]]
                    )

            both = api + shared
            threads = [threading.Thread(target=post_share, args=(both[n::API_THREADS],)) for n in range(API_THREADS)]
            threads.append(threading.Thread(target=produce_the_rest))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            expected = KAFKA_MESSAGES * 1 + API_MESSAGES * 10
            wait_for(lambda: total_balance(server) == expected, 120, f"every message counted once ({expected} points)")
        finally:
            consumer.terminate()
            _, consumer_log = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, consumer_log  # it never gave up on a batch
        assert statuses.count(201) + statuses.count(200) == len(both), sorted(set(statuses))
        assert statuses.count(201) >= API_MESSAGES  # the API's own messages were all recorded by it
    for member in MEMBERS:  # and no message has two records
        lines = [
            json.loads(x) for x in cli("history", member, "--format", "json", store=postgres_url).stdout.splitlines()
        ]
        event_ids = [line["provenance"]["event_id"] for line in lines if line["event"] == "PointsEarned"]
        assert len(event_ids) == len(set(event_ids)) == (KAFKA_MESSAGES + API_MESSAGES) // len(MEMBERS)
    assert cli("verify", store=postgres_url).returncode == 0


def total_balance(server: Server) -> int:
    total = 0
    for member in MEMBERS:
        answer = server.get(f"/v1/members/{member}", "pos")
        total += answer.json()["balance"] if answer.status == 200 else 0
    return total
