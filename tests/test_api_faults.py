"""`serve` under faults: concurrent writers, Kafka writing the same messages, SIGKILL under load, an unreachable
store, views lagging, and SIGTERM with requests in flight. Real servers (tests/api_helpers.py), real HTTP,
SQLite and PostgreSQL (`store_url`) unless a fault only exists on one."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import Answer, Server, running_server, stop
from tests.cli_helpers import cli
from tests.kafka_helpers import consume_args, create_topic, produce, unique, wait_for
from tests.messages import encode, wire
from tests.pg_server import pg_server

WHEN = "2024-03-01T10:00:00Z"
#: Times a test sends a message again after a 503 that asked for it (Retry-After).
RETRIES_MAX = 20


def purchase(member: str, event_id: str, amount: str = "100.00") -> dict[str, Any]:
    return wire("purchase", member, WHEN, event_id=event_id, transaction_id=f"t-{event_id}", amount=amount,
                currency="USD")  # fmt: skip


def problem_type(answer: Answer) -> str:
    assert answer.media_type == "application/problem+json", answer.body
    return str(answer.json()["type"]).rsplit(":", 1)[-1]


def api_history(server: Server, member: str) -> list[dict[str, Any]]:
    """The member's history through the API, every page."""
    lines: list[dict[str, Any]] = []
    after = ""
    while True:
        answer = server.get(f"/v1/members/{member}/history?limit=1000{after}", role="admin")
        assert answer.status == 200, answer.body
        page = answer.json()
        lines += page["items"]
        if page["next"] is None:
            return lines
        after = f"&after={page['next']}"


def log_history(store: str, member: str) -> list[dict[str, Any]]:
    """The member's history folded from the log (`history --from-log`): the ground truth, no server needed."""
    result = cli("history", member, "--from-log", "--format", "json", store=store)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def messages_in(lines: list[dict[str, Any]]) -> list[str]:
    """The event_ids of the messages a history holds, in order, each once (a message's events are consecutive:
    an event_id seen again after another one is a message recorded twice)."""
    ids = [key for key, _ in itertools.groupby(line["provenance"]["event_id"] for line in lines)]
    assert len(ids) == len(set(ids)), f"a message recorded twice: {ids}"
    return ids


def changes(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A history without what differs between two ledgers given the same messages (record times, sources)."""
    return [(line["provenance"]["event_id"], line["event"], line["change"], line["balance"], line["tier"])
            for line in lines]  # fmt: skip


def verified(store: str) -> dict[str, Any]:
    """`verify` (the log against itself, the views against the log) passed: its summary."""
    result = cli("verify", "--format", "json", store=store)
    assert result.returncode == 0, result.stdout + result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert summary["discrepancies"] == 0
    return summary


# --- 1. concurrent redemptions --------------------------------------------------------------------------------


def retrying(server: Server, message: dict[str, Any], retriable: set[str]) -> Answer:
    """Post `message` until the answer is not a 503 of a `retriable` type. A 503 says nothing was recorded and
    asks for the same event_id again; a till does exactly that, and the totals must then hold."""
    for _ in range(RETRIES_MAX):
        answer = server.post(message, role="pos")
        if answer.status != 503:
            return answer
        assert problem_type(answer) in retriable and answer.headers.get("retry-after"), answer.body
    raise AssertionError(f"still 503 after {RETRIES_MAX} tries: {message['event_id']}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_concurrent_redemptions_never_overdraw(store_url: str, tmp_path: Path, workers: str) -> None:
    """16 tills redeem 100 points each at once from a balance of 1,000: exactly 10 are recorded, 6 rejected for
    insufficient points, the balance ends at 0 and is never negative. With two server processes the member's
    next version is the only arbiter (optimistic concurrency in the store): a writer that lost the race after
    its retries answers 503 `busy`, and SQLite, one writer at a time, answers a lock it could not take as 503
    `store-unavailable` (SQLite busy); either is sent again with the same event_id, as a till would."""
    retriable = {"busy"} | ({"store-unavailable"} if store_url.startswith("sqlite") else set())
    attempts = 16
    with running_server(store_url, tmp_path, "--workers", workers) as server:
        grant = wire("adjustment", "R1", WHEN, adjustment_id="grant", points=1_000, reason="goodwill", operator="x")
        assert server.post(grant).status == 201
        redemptions = [wire("redemption", "R1", WHEN, event_id=f"redeem-{n}", redemption_id=f"r-{n}", points=100)
                       for n in range(attempts)]  # fmt: skip
        answers: list[Answer] = [Answer(0, {}, b"")] * attempts
        start = threading.Barrier(attempts)

        def redeem(n: int) -> None:
            start.wait()
            answers[n] = retrying(server, redemptions[n], retriable)

        threads = [threading.Thread(target=redeem, args=(n,)) for n in range(attempts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        statuses = sorted(answer.status for answer in answers)
        assert statuses == [201] * 10 + [409] * 6, [answer.body for answer in answers]
        assert {answer.json()["reason"] for answer in answers if answer.status == 409} == {"insufficient_points"}
        assert all(answer.json()["balance"] >= 0 for answer in answers)
        assert server.get("/v1/members/R1", role="pos").json()["balance"] == 0
        lines = api_history(server, "R1")
    assert sorted(messages_in(lines)) == sorted([grant["event_id"], *(m["event_id"] for m in redemptions)])
    recorded = {line["provenance"]["event_id"] for line in lines if line["event"] == "PointsRedeemed"}
    rejected = {line["provenance"]["event_id"] for line in lines if line["event"] == "MessageRejected"}
    assert len(recorded) == 10 and len(rejected) == 6 and recorded | rejected == {m["event_id"] for m in redemptions}
    assert min(line["balance"] for line in lines) == 0
    verified(store_url)


# --- 2. the API and Kafka: one idempotency key ------------------------------------------------------------------


def test_a_message_posted_and_consumed_from_kafka_counts_once_in_either_order(
    store_url: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Member A's purchase is posted first, then arrives on Kafka (a duplicate there); member B's arrives on
    Kafka first, then is posted (200 duplicate, with the balance now). Kafka also records a new purchase of A
    while the server holds A in memory: the server's next post for A is decided on the stored A, not its own."""
    api_first, kafka_first = purchase("KA", "api-first"), purchase("KB", "kafka-first")
    kafka_new, api_after = purchase("KA", "kafka-new", "20.00"), purchase("KA", "api-after", "30.00")
    topic = unique("api-kafka")
    create_topic(kafka_bootstrap, topic, 1)
    with running_server(store_url, tmp_path) as server:
        first = server.post(api_first, role="pos")
        assert (first.status, first.json()["balance"]) == (201, 100), first.body
        produce(kafka_bootstrap, topic, [encode(message) for message in (api_first, kafka_first, kafka_new)])
        consumed = cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up"), store=store_url)
        assert consumed.returncode == 0, consumed.stderr
        assert json.loads(consumed.stdout) == {
            "processed": 3, "recorded": 2, "duplicates": 1, "rejected": 0, "invalid": 0, "failed": 0,
        }  # fmt: skip

        again = server.post(kafka_first, role="pos")
        assert again.status == 200, again.body
        duplicate = again.json()
        assert (duplicate["outcome"], duplicate["member_id"], duplicate["balance"]) == ("duplicate", "KB", 100)
        after = server.post(api_after, role="pos")
        assert (after.status, after.json()["balance"]) == (201, 150), after.body
        history = {member: api_history(server, member) for member in ("KA", "KB")}
    assert messages_in(history["KA"]) == ["api-first", "kafka-new", "api-after"]
    assert messages_in(history["KB"]) == ["kafka-first"]
    sources = {line["provenance"]["event_id"]: line["provenance"]["source"] for line in history["KA"]}
    assert sources == {"api-first": {"api": "pos-key"}, "kafka-new": {"topic": topic, "partition": 0, "offset": 2},
                       "api-after": {"api": "pos-key"}}  # fmt: skip
    verified(store_url)


# --- 3. SIGKILL under load ----------------------------------------------------------------------------------------


class Load:
    """Tills posting purchases, each for a member of its own, one after another, until the server stops
    answering: what each sent (answered or not) and how it was answered."""

    def __init__(self, server: Server, members: list[str], per_member: int) -> None:
        self.server = server
        self.planned = {member: [purchase(member, f"{member}-{n}") for n in range(per_member)] for member in members}
        self.sent: dict[str, list[dict[str, Any]]] = {member: [] for member in members}
        self.answered: dict[str, int] = {}
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.threads = [threading.Thread(target=self._till, args=(member,)) for member in members]

    def start(self, answers_before_kill: int) -> None:
        self.kill_after = answers_before_kill
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _till(self, member: str) -> None:
        for message in self.planned[member]:
            self.sent[member].append(message)
            try:
                answer = self.server.post(message, role="pos")
            except OSError:  # refused, reset or cut off half-way: the server is gone
                return
            with self.lock:
                self.answered[message["event_id"]] = answer.status
                if len(self.answered) >= self.kill_after:
                    self.enough.set()
        self.enough.set()  # (more messages than the kill needs are planned: only if the server stopped early)


def reference_histories(tmp_path: Path, messages: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    """What each member's history must be after exactly `messages` (each member's in order), from `ingest` into
    a fresh ledger."""
    stream = tmp_path / f"reference-{time.monotonic_ns()}.jsonl"
    stream.write_bytes(b"".join(encode(message) + b"\n" for member in messages for message in messages[member]))
    store = f"sqlite:///{stream.with_suffix('.db')}"
    result = cli("ingest", str(stream), "--format", "json", store=store)
    assert result.returncode == 0, result.stderr
    return {member: changes(log_history(store, member)) for member in messages}


def test_sigkill_under_load_leaves_no_half_recorded_message_and_every_message_can_be_sent_again(
    store_url: str, tmp_path: Path
) -> None:
    """Four tills post purchases (100.00 each: members change tier on the way, so a message may be several
    events) until the server is SIGKILLed. The log then holds, per member, whole messages in the order sent,
    every one answered 201 among them; a new server takes every message sent again, answering 201 for those
    lost and 200 duplicate for those kept, and each member ends with each message exactly once."""
    members = ["K1", "K2", "K3", "K4"]
    with running_server(store_url, tmp_path) as server:
        load = Load(server, members, per_member=80)
        load.start(answers_before_kill=60)
        assert load.enough.wait(timeout=120), "the tills got no answers"
        server.process.send_signal(signal.SIGKILL)
        load.join()
    assert server.process.returncode == -signal.SIGKILL
    keys = server.keys

    verified(store_url)
    kept = {}
    for member in members:
        sent_ids = [message["event_id"] for message in load.sent[member]]
        kept[member] = messages_in(log_history(store_url, member))
        assert kept[member] == sent_ids[: len(kept[member])], (member, kept[member], sent_ids)
        assert {event_id for event_id in sent_ids if load.answered.get(event_id) == 201} <= set(kept[member])
    assert any(len(kept[member]) < len(load.sent[member]) for member in members)  # the kill cut some off
    expected = reference_histories(tmp_path, {m: load.sent[m][: len(kept[m])] for m in members})
    assert {member: changes(log_history(store_url, member)) for member in members} == expected

    with running_server(store_url, tmp_path, keys=keys) as again:
        for member in members:
            for message in load.sent[member]:
                answer = again.post(message, role="pos")
                assert answer.status == (200 if message["event_id"] in kept[member] else 201), answer.body
        balances = {member: again.get(f"/v1/members/{member}", role="pos").json()["balance"] for member in members}
    expected = reference_histories(tmp_path, load.sent)
    assert {member: changes(log_history(store_url, member)) for member in members} == expected
    assert balances == {member: expected[member][-1][3] for member in members}
    assert all(balances[member] >= 100 * len(load.sent[member]) for member in members)  # earned, never less
    verified(store_url)


# --- 4. readiness: an unreachable store, views lagging --------------------------------------------------------


def test_an_unreachable_store_answers_503_until_it_is_back(tmp_path: Path) -> None:
    """A PostgreSQL server of the test's own (the shared one is never stopped), stopped as by a crash under a
    running server: /readyz and POST /v1/messages answer 503 (the post a problem a till retries), and once the
    database is back both answer as before, the message sent during the outage recorded once."""
    during = purchase("U1", "during-outage")
    with pg_server() as database:
        store = database.url()
        with running_server(store, tmp_path, env={"POSTGRES_CONNECT_TIMEOUT": "1"}) as server:
            assert server.post(purchase("U1", "before-outage"), role="pos").status == 201
            assert server.get("/readyz").json()["status"] == "ready"
            database.stop()

            ready = server.get("/readyz")
            assert (ready.status, ready.json()["status"]) == (503, "unavailable"), ready.body
            turned_away = server.post(during, role="pos")
            assert (turned_away.status, problem_type(turned_away)) == (503, "store-unavailable"), turned_away.body
            assert turned_away.headers.get("retry-after")
            balance = server.get("/v1/members/U1", role="pos")  # a read, too, says so (not a 500)
            assert (balance.status, problem_type(balance)) == (503, "store-unavailable"), balance.body

            database.start()
            wait_for(lambda: server.get("/readyz").status == 200, 60, "/readyz to answer 200 again")
            accepted = server.post(during, role="pos")
            assert (accepted.status, accepted.json()["balance"]) == (201, 200), accepted.body
            assert messages_in(api_history(server, "U1")) == ["before-outage", "during-outage"]
        assert "Traceback" not in server.log_text()


def test_readyz_answers_503_while_the_views_lag_more_than_allowed(store_url: str, tmp_path: Path) -> None:
    """With api.ready_lag_max 0, messages written by another process (`ingest`) leave the views behind the log:
    /readyz answers 503 `lagging`; the next read through the API catches the views up, and it is ready again."""
    with running_server(store_url, tmp_path, env={"LEDGER_API_READY_LAG_MAX": "0"}) as server:
        ready = server.get("/readyz")
        assert (ready.status, ready.json()["lag_max"]) == (200, 0), ready.body
        stream = tmp_path / "stream.jsonl"
        stream.write_bytes(b"".join(encode(purchase("L1", f"ingested-{n}")) + b"\n" for n in range(3)))
        assert cli("ingest", str(stream), store=store_url).returncode == 0

        lagging = server.get("/readyz")
        assert (lagging.status, lagging.json()["status"]) == (503, "lagging"), lagging.body
        assert lagging.json()["lag"] > 0
        assert server.get("/v1/members/L1", role="pos").json()["balance"] == 300
        ready = server.get("/readyz")
        assert (ready.status, ready.json()["status"], ready.json()["lag"]) == (200, "ready", 0), ready.body


# --- 5. SIGTERM finishes what is in flight ------------------------------------------------------------------------


class HeldPost:
    """A POST /v1/messages in flight for as long as the test holds it: its headers ask `Expect: 100-continue`,
    and its body is sent only on `finish`. The server's `100 Continue` shows the request is being handled (its
    key checked, its route awaiting the body), however fast or slow the server is."""

    def __init__(self, server: Server, message: dict[str, Any]) -> None:
        self.body = encode(message)
        self.connection = socket.create_connection((server.host, server.port), timeout=30)
        head = (f"POST /v1/messages HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {server.keys['pos']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\nExpect: 100-continue\r\n"
                "Connection: close\r\n\r\n")  # fmt: skip
        self.connection.sendall(head.encode())
        self.received = b""
        while b"\r\n\r\n" not in self.received:
            self.received += self._chunk()
        assert self.received.startswith(b"HTTP/1.1 100 "), self.received

    def _chunk(self) -> bytes:
        chunk = self.connection.recv(65_536)
        if not chunk:
            raise ConnectionError(f"closed after {self.received!r}")
        return chunk

    def finish(self) -> Answer:
        """Send the body and read the answer (the server closes the connection after it)."""
        self.connection.sendall(self.body)
        self.received = self.received.split(b"\r\n\r\n", 1)[1]
        while chunk := self.connection.recv(65_536):
            self.received += chunk
        self.connection.close()
        head, body = self.received.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines)
        return Answer(int(status_line.split()[1]), headers, body)


def refused(server: Server) -> bool:
    """A new connection is refused (one let in instead is closed again, unused)."""
    try:
        socket.create_connection((server.host, server.port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_finishes_the_requests_in_flight_refuses_new_ones_and_exits_0(store_url: str, tmp_path: Path) -> None:
    """Three purchases are in flight when SIGTERM comes: the server stops listening (new connections refused)
    while it waits for them, answers each 201 once its body is in, and exits 0 with all three recorded."""
    messages = [purchase("T1", f"in-flight-{n}") for n in range(3)]
    with running_server(store_url, tmp_path) as server:
        held = [HeldPost(server, message) for message in messages]
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(server), 30, "the server to refuse new connections")
        assert server.process.poll() is None  # still there, for the requests in flight

        answers = [post.finish() for post in held]
        assert [answer.status for answer in answers] == [201, 201, 201], [answer.body for answer in answers]
        assert stop(server) == 0
    assert refused(server)
    assert messages_in(log_history(store_url, "T1")) == [message["event_id"] for message in messages]
