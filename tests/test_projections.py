"""Read models: caught up in any chunks equal rebuilt from zero equal folded from the log; rebuild swaps atomically;
many readers catch up at once exactly once; the CLI serves answers from views and from the log alike."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.kafka_batch import recorded_through
from devkit.streamgen import DEFAULT_START, generate
from ledger.application import LedgerApplication
from ledger.member import Source
from ledger.micros import from_micros, to_micros
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections.runner import Projections, select_views
from schemas import Message
from tests.cli_helpers import cli, cli_command, cli_env, one_line_error
from tests.conftest import throwaway_database
from tests.kafka_helpers import create_topic, produce, start_consume, unique, wait_for
from tests.test_properties import MEMBERS, START, streams
from tests.view_answers import caught_up_answers, log_answers, view_tables

TIMES = [START + timedelta(days=days) for days in (0, 200, 400, 800, 1200)]
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def sqlite_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'ledger.db'}"


def open_app(url: str) -> LedgerApplication:
    return LedgerApplication(parse_store_url(url), Program())


def apply_in_chunks(url: str, messages: list[Message], cuts: list[int], catch_up_after: list[bool]) -> None:
    """Each chunk in a fresh process-like app (a restart), the views caught up after some chunks only."""
    bounds = [0, *sorted(set(cuts)), len(messages)]
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        app = open_app(url)
        try:
            batch: list[tuple[Message, Source]] = [
                (message, {"file": "p", "line": start + i}) for i, message in enumerate(messages[start:end])
            ]
            if batch:
                app.apply_batch(batch)
            if catch_up_after[index % len(catch_up_after)]:
                Projections(app).catch_up()
        finally:
            app.close()


def check_views_equal_rebuild_and_log(url: str, messages: list[Message], cuts: list[int], flags: list[bool]) -> None:
    apply_in_chunks(url, messages, cuts, flags)
    app = open_app(url)
    try:
        members = [*MEMBERS, "NOBODY"]
        incremental = caught_up_answers(app, members, TIMES)
        tables = view_tables(app)
        Projections(app).rebuild(select_views())
        assert view_tables(app) == tables  # the same rows, to the byte, hash chains included
        assert caught_up_answers(app, members, TIMES) == incremental
        assert log_answers(app, members, TIMES) == incremental
    finally:
        app.close()


@PROPERTY_SETTINGS
@given(
    messages=streams(max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    flags=st.lists(st.booleans(), min_size=1, max_size=6),
)
def test_views_caught_up_in_any_chunks_equal_a_rebuild_and_the_log_on_sqlite(
    messages: list[Message], cuts: list[int], flags: list[bool]
) -> None:
    with sqlite_store() as url:
        check_views_equal_rebuild_and_log(url, messages, [cut for cut in cuts if cut <= len(messages)], flags)


@pytest.mark.postgres
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=streams(max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=3),
    flags=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_views_caught_up_in_any_chunks_equal_a_rebuild_and_the_log_on_postgresql(
    ledger_template: str, messages: list[Message], cuts: list[int], flags: list[bool]
) -> None:
    with throwaway_database(ledger_template) as url:
        check_views_equal_rebuild_and_log(url, messages, [cut for cut in cuts if cut <= len(messages)], flags)


# ---- the CLI, rebuild and concurrency on a generated stream ---------------------------------------

STREAM_MESSAGES = 6_000


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "stream.jsonl"
    path.write_bytes(b"\n".join(generate(STREAM_MESSAGES, 150, 700, seed=7)) + b"\n")
    return path


def ingested(store: str, stream_file: Path) -> None:
    result = cli("ingest", str(stream_file), "--dead-letter", os.devnull, "--format", "json", store=store)
    assert result.returncode == 0, result.stderr


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_every_query_answers_the_same_from_views_and_from_the_log(store_url: str, stream_file: Path) -> None:
    ingested(store_url, stream_file)
    as_of = (DEFAULT_START + timedelta(days=400)).isoformat()
    start = (DEFAULT_START + timedelta(days=90)).isoformat()
    queries = [
        ["balances"], ["balances", "--as-of", as_of], ["balance", "M000007"], ["balance", "M000007", "--as-of", as_of],
        ["history", "M000042"], ["report", "liability", "--as-of", as_of],
        ["report", "rollforward", "--from", start, "--to", as_of],
    ]  # fmt: skip
    head = None
    for query in queries:
        from_views = cli(*query, "--format", "json", store=store_url)
        from_log = cli(*query, "--format", "json", "--from-log", store=store_url)
        assert from_views.returncode == from_log.returncode == 0, (query, from_views.stderr, from_log.stderr)
        assert from_views.stdout == from_log.stdout, query
        answers = json_lines(from_views.stdout)
        assert answers and all(answer["position"] == answers[0]["position"] for answer in answers)
        head = head or answers[0]["position"]
        assert answers[0]["position"] == head
    status = json_lines(cli("projections", "status", "--format", "json", store=store_url).stdout)
    assert [(row["view"], row["position"], row["lag"]) for row in status] == [("members", head, 0), ("audit", head, 0)]


def test_a_rebuild_killed_midway_leaves_the_old_views_answering(postgres_url: str, stream_file: Path) -> None:
    ingested(postgres_url, stream_file)
    before = cli("balances", "--format", "json", store=postgres_url).stdout
    status_before = json_lines(cli("projections", "status", "--format", "json", store=postgres_url).stdout)

    killed = cli("rebuild", env={"POINTS_LEDGER_CRASH_AFTER_BATCH": "2"}, store=postgres_url)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after two of its batches were committed
    app = open_app(postgres_url)
    try:
        with Projections(app).db.transaction(commit=False) as sql:
            assert sql.table_exists("pl_audit__new")  # half a rebuild, never swapped in
            assert int(sql.scalar("SELECT COUNT(*) FROM pl_audit__new")) == 4_000
    finally:
        app.close()
    assert cli("balances", "--format", "json", store=postgres_url).stdout == before
    assert json_lines(cli("projections", "status", "--format", "json", store=postgres_url).stdout) == status_before

    rebuilt = cli("rebuild", "--format", "json", store=postgres_url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    summary = json.loads(rebuilt.stdout)
    assert summary["views"] == ["members", "audit"] and summary["position"] == status_before[0]["head"]
    assert cli("balances", "--format", "json", store=postgres_url).stdout == before
    app = open_app(postgres_url)
    try:
        with Projections(app).db.transaction(commit=False) as sql:
            assert not sql.table_exists("pl_audit__new")
    finally:
        app.close()


def test_readers_catching_up_at_once_apply_every_event_exactly_once(store_url: str, stream_file: Path) -> None:
    """Six processes query a ledger whose views are empty: they take turns, and no event is applied twice."""
    ingested(store_url, stream_file)
    readers = [
        subprocess.Popen(cli_command("balances", "--format", "json", store=store_url), env=cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    outputs = [reader.communicate(timeout=300) for reader in readers]
    assert [reader.returncode for reader in readers] == [0] * 6, [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    app = open_app(store_url)
    try:
        head = app.recorder.max_notification_id()
        with Projections(app).db.transaction(commit=False) as sql:
            assert sql.scalar("SELECT COUNT(*) FROM pl_audit") == head
            assert sql.scalar("SELECT COUNT(DISTINCT position) FROM pl_audit") == head
    finally:
        app.close()


def test_views_need_a_database_and_know_their_names(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'l.db'}"
    assert cli("ingest", "-", store=store, stdin=b'{"type":"enrollment","event_id":"e1","member_id":"M",'
               b'"occurred_at":"2024-01-01T00:00:00Z"}\n').returncode == 0  # fmt: skip
    unknown = cli("rebuild", "tiers", store=store)
    assert unknown.returncode == 2 and "unknown view(s) tiers; the views are members, audit" in unknown.stderr
    one_line_error(cli("balances", store="memory://"), 1, "keeps no views", "--from-log")
    follow = cli("projections", "follow", "--until-idle", "0.5", "--poll-interval", "0.1", "--format", "json",
                 store=store)  # fmt: skip
    assert follow.returncode == 0, follow.stderr
    assert json.loads(follow.stdout)["position"] == 1


def test_an_empty_ledger_has_empty_views(tmp_path: Path) -> None:
    app = open_app(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        projections = Projections(app)
        assert projections.catch_up() == 0
        assert projections.rebuild(select_views()).position == 0
        with projections.reading() as (sql, position):
            assert position == 0
            assert sql.scalar("SELECT COUNT(*) FROM pl_members") == 0
        assert [(s.name, s.position, s.lag) for s in projections.status()] == [("members", 0, 0), ("audit", 0, 0)]
    finally:
        app.close()


def test_time_columns_keep_microseconds_and_order() -> None:
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    assert [from_micros(to_micros(moment)) for moment in moments] == moments
    assert sorted(to_micros(moment) for moment in moments) == [to_micros(moment) for moment in moments]
    with pytest.raises(ValueError, match="naive"):
        to_micros(datetime(2024, 1, 1))


def test_follow_keeps_the_views_at_the_log_head_while_consume_runs(kafka_bootstrap: str, postgres_url: str) -> None:
    """`projections follow` beside `consume`: after each burst of messages the views reach the new head while
    both keep running, agree with the log, and SIGTERM stops both cleanly."""
    topic = unique("follow")
    create_topic(kafka_bootstrap, topic, 2)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    follower = subprocess.Popen(
        cli_command("projections", "follow", "--poll-interval", "1", "--format", "json", store=postgres_url),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    consumer = start_consume(postgres_url, kafka_bootstrap, topic, unique("g"))  # runs until SIGTERM
    lines = generate(4_000, 80, 300, seed=17)
    heads_reached: list[int] = []
    for start in range(0, len(lines), 1_000):  # the stream arrives in bursts while both run
        last = produce(kafka_bootstrap, topic, lines[start : start + 1_000]).last_offsets
        wait_for(partial(recorded_through_offsets, postgres_url, topic, last), 120, "consume to record the burst")
        wait_for(lambda: view_lag(postgres_url) == (0, 0), 60, "the follower to bring the views to the head")
        heads_reached.append(int(view_status(postgres_url)[0]["position"]))  # type: ignore[call-overload]
        assert consumer.poll() is None and follower.poll() is None  # both still running
    assert heads_reached == sorted(set(heads_reached)) and len(heads_reached) == 4  # a new head after each burst
    for process in (consumer, follower):
        process.send_signal(signal.SIGTERM)
    consumed, followed = consumer.communicate(timeout=60), follower.communicate(timeout=60)
    assert consumer.returncode == 0, consumed[1]
    assert follower.returncode == 0, followed[1]
    summary = json.loads(followed[0])
    app = open_app(postgres_url)
    try:
        head = app.recorder.max_notification_id()
        assert summary["position"] == head == heads_reached[-1] and summary["batches"] >= 4
        members = [f"M{index:06d}" for index in range(0, 80, 9)]
        assert caught_up_answers(app, members, TIMES) == log_answers(app, members, TIMES)
    finally:
        app.close()


def recorded_through_offsets(store_url: str, topic: str, last: dict[int, int]) -> bool:
    app = open_app(store_url)
    try:
        return recorded_through(app, topic, last)
    finally:
        app.close()


def view_status(store_url: str) -> list[dict[str, object]]:
    """`projections status` (which catches nothing up): a row per view."""
    result = cli("projections", "status", "--format", "json", store=store_url)
    assert result.returncode == 0, result.stderr
    return json_lines(result.stdout)


def view_lag(store_url: str) -> tuple[int, int]:
    """Each view's lag behind the log head."""
    rows = view_status(store_url)
    return (int(rows[0]["lag"]), int(rows[1]["lag"]))  # type: ignore[call-overload]
