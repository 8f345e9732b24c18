"""Schema evolution: a ledger written by version 1 (a fixture committed to the repository, written with the code
before redemptions named their reward by catalog id) is read, rebuilt and reported on identically by version 2,
its finance digest still verifies, and version-2 messages go in beside the old events.

The fixture (`fixtures/ledger-v1.sqlite3`, with its views) holds a legacy migration of 40 members and 1,500
generated messages of every kind, swept; `fixtures/ledger-v1.answers.json` holds what version 1 answered on it.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from eventsourcing.utils import resolve_topic

from consumers.jsonlines import ingest_lines
from devkit.streamgen import DEFAULT_START
from ledger import events
from ledger.application import SNAPSHOT_EVENTS_MIN, LedgerApplication
from ledger.member import Member, member_uuid
from ledger.outcomes import Outcome
from ledger.program import Program
from ledger.storage.claim_index import TABLE as CLAIMS_TABLE
from ledger.storage.store import parse_store_url
from points_ledger.output import jsonable
from projections import kpis, periods, queries
from projections.digest import legacy_digest
from projections.runner import Projections, select_views
from schemas import Invalid, Redemption, parse_message
from tests.cli_helpers import cli
from tests.messages import (
    CollectedLetters,
    adjustment,
    at,
    encode,
    enrollment,
    purchase,
    redemption,
    refund,
    wire,
)

FIXTURES = Path(__file__).parent / "fixtures"
REWARD = {"id": "SKU-42", "name": "coffee"}
TIMES = [DEFAULT_START + timedelta(days=days) for days in (30, 150, 301)]


def fixture_copy(tmp_path: Path, name: str = "ledger-v1") -> str:
    path = tmp_path / "ledger.sqlite3"
    shutil.copyfile(FIXTURES / f"{name}.sqlite3", path)
    return f"sqlite:///{path}"


def assert_answers_as_written(app: LedgerApplication, expected: dict[str, Any], tmp_path: Path) -> None:
    """The fixture's views, read by the code running now, then rebuilt from its log, answer as the code that
    wrote it did; the digest that code gave still verifies."""
    assert answers_of(app) == expected
    Projections(app).rebuild(select_views())
    assert answers_of(app) == expected
    saved = tmp_path / "digest.json"
    saved.write_text(json.dumps(expected["digest"]))
    verified = cli("verify", "--digest", str(saved), "--format", "json", store=app.store.url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def answers_of(app: LedgerApplication) -> dict[str, Any]:
    """What the fixture's answers file holds, computed by the code running now."""
    with Projections(app).reading() as (sql, position):
        answers: dict[str, Any] = {"position": position, "balances": list(queries.balances(sql, None))}
        for at in TIMES:
            answers[f"liability@{at.isoformat()}"] = queries.liability(sql, at, app.program)
            answers[f"balances@{at.isoformat()}"] = list(queries.balances(sql, at))
        months = periods.split(DEFAULT_START - timedelta(days=2), TIMES[-1], "month")
        answers["rollforward"] = queries.rollforwards(sql, months)
        answers["kpis"] = kpis.kpi_rows(months, kpis.counts_from_views(sql, months), app.program)
    answers["digest"] = legacy_digest(app, position).as_dict()  # the digest version 1 took, from the log
    return jsonable(answers)  # type: ignore[no-any-return]


def test_a_ledger_written_by_version_1_is_read_rebuilt_and_reported_identically_by_version_2(tmp_path: Path) -> None:
    url = fixture_copy(tmp_path)
    expected = json.loads((FIXTURES / "ledger-v1.answers.json").read_text())
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:  # what is stored is version 1, and stays so
        stored = [json.loads(state) for (state,) in db.execute(
            "SELECT state FROM stored_events WHERE topic LIKE '%PointsRedeemed'")]  # fmt: skip
    assert stored and all("reward" in state and "class_version" not in state for state in stored)

    app = LedgerApplication(parse_store_url(url), Program())
    try:
        redeemed = [e for m in app.member_ids() for e in app.member_events(m) if isinstance(e, Member.PointsRedeemed)]
        assert len(redeemed) == len(stored)
        assert {e.reward_name for e in redeemed} == {state["reward"] for state in stored}  # the text became the name
        assert all(e.reward_id is None for e in redeemed)
        assert_answers_as_written(app, expected, tmp_path)
    finally:
        app.close()

    # Version-2 messages go in beside the old events, and a version-1 one still does.
    later = (DEFAULT_START + timedelta(days=302)).date().isoformat()
    member = expected["balances"][0]["member_id"]
    lines = [
        encode(wire("purchase", member, later, transaction_id="V2-T", amount="500.00", currency="USD")),
        encode(wire("redemption", member, later, version=2, redemption_id="V2-R", points=100, reward=REWARD)),
        encode(wire("redemption", member, later, redemption_id="V1-R", points=50, reward="voucher")),
    ]
    app = LedgerApplication(parse_store_url(url), Program())
    try:
        tally = ingest_lines(app, io.BytesIO(b"\n".join(lines)), "v2.jsonl", CollectedLetters(), batch_size=10)
        assert tally.recorded == 3
        events = [e for e in app.member_events(member) if isinstance(e, Member.PointsRedeemed)][-2:]
        assert [(e.reward_id, e.reward_name) for e in events] == [("SKU-42", "coffee"), (None, "voucher")]
    finally:
        app.close()
    assert cli("verify", "--format", "json", store=url).returncode == 0


def test_a_ledger_written_in_the_librarys_format_reads_in_the_compact_one(tmp_path: Path) -> None:
    """`fixtures/ledger-v2.sqlite3` was written before the compact stored format (ledger.storage.compact)."""
    url = fixture_copy(tmp_path, "ledger-v2")
    expected = json.loads((FIXTURES / "ledger-v2.answers.json").read_text())
    app = LedgerApplication(parse_store_url(url), Program())
    try:
        old_events = app.recorder.select_notifications(start=1, limit=100_000)
        assert old_events and all(b'"_type_":"datetime_iso"' in n.state for n in old_events)
        assert_answers_as_written(app, expected, tmp_path)
        # New events go in compact beside the old ones, and the member reads whole.
        member = expected["balances"][0]["member_id"]
        later = (DEFAULT_START + timedelta(days=302)).date().isoformat()
        line = encode(wire("purchase", member, later, transaction_id="V3-T", amount="12.34", currency="USD"))
        assert ingest_lines(app, io.BytesIO(line), "v3.jsonl", CollectedLetters()).recorded == 1
        newest = app.recorder.select_notifications(start=len(old_events) + 1, limit=10)
        assert newest and all(b"_type_" not in n.state for n in newest)
        earned = app.member_events(member)[-1]
        assert isinstance(earned, Member.PointsEarned) and str(earned.amount) == "12.34"
    finally:
        app.close()
    assert cli("verify", "--format", "json", store=url).returncode == 0


def test_a_redemption_names_its_reward_as_its_version_says() -> None:
    def parse(**fields: Any) -> object:
        return parse_message(encode(wire("redemption", redemption_id="R", points=5, **fields)))

    first = parse(reward="coffee")
    second = parse(version=2, reward={"id": "SKU-1", "name": "coffee"})
    assert isinstance(first, Redemption) and (first.reward_id, first.reward_name) == (None, "coffee")
    assert isinstance(second, Redemption) and (second.reward_id, second.reward_name) == ("SKU-1", "coffee")
    wrong_object = parse(reward={"id": "SKU-1"})
    assert isinstance(wrong_object, Invalid) and 'an object needs "version": 2' in wrong_object.reason
    wrong_text = parse(version=2, reward="coffee")
    assert isinstance(wrong_text, Invalid) and "version 2 gives" in wrong_text.reason
    unknown = parse(version=3, reward="coffee")
    assert isinstance(unknown, Invalid) and "version" in unknown.reason


#: Every event class's topic before the classes moved from `Member` (ledger/member.py) to ledger/events.py.
FORMER_TOPICS = [
    f"ledger.member:Member.{name}"
    for name in ("Event", "Outcome", "Enrolled", "EnrollmentRepeated", "PointsEarned", "RefundApplied",
                 "PointsRedeemed", "PointsAdjusted", "OpeningBalanceApplied", "MessageRejected", "LotsExpired",
                 "TierChanged", "Swept")
]  # fmt: skip


def test_every_former_event_topic_names_its_class_in_ledger_events() -> None:
    assert sorted(events.FORMER_TOPICS.values()) == sorted(FORMER_TOPICS)
    for event_class, former in events.FORMER_TOPICS.items():
        assert resolve_topic(former) is event_class
        assert event_class.__module__ == "ledger.events"
        assert getattr(Member, event_class.__name__) is event_class  # `Member.PointsEarned` still names it


def _store_under_former_topics(app: LedgerApplication) -> None:
    """Rename every stored event's topic to the one it had before the move, and drop the claim index (so that
    opening the ledger fills it again from events found by their former topics)."""
    table = app.recorder.events_table_name  # type: ignore[attr-defined]
    with app.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute(f"UPDATE {table} SET topic = replace(topic, 'ledger.events:', 'ledger.member:Member.')")
        cursor.execute(f"DROP TABLE {CLAIMS_TABLE}")


def test_events_and_snapshots_stored_under_the_former_topics_load_after_the_move(store_url: str) -> None:
    store = parse_store_url(store_url)
    busy = [purchase("3.00", "BUSY", f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}", txn=f"B{i}")
            for i in range(SNAPSHOT_EVENTS_MIN + 10)]  # fmt: skip
    first = [enrollment("M1"), purchase("80.00", "M1", txn="T1"), refund("T1", "10.00", "M1", rid="R1"),
             redemption(5, "M1", "2024-01-02", rid="D1"), adjustment(7, "M2", aid="A1"), *busy]  # fmt: skip
    app = LedgerApplication(store, Program())
    try:
        app.apply_batch([(m, {"file": "old.jsonl", "line": n}) for n, m in enumerate(first, 1)])
        app.sweep(at("2026-06-01"))  # lots expire: every kind of event but a few is in the log
        before = {member_id: _state(app.member(member_id)) for member_id in ("M1", "M2", "BUSY")}
        stored = app.recorder.select_notifications(start=1, limit=1_000)
        assert {n.topic.partition(":")[0] for n in stored} == {"ledger.events"}
        assert app.snapshots is not None and app.snapshots.recorder.select_events(member_uuid("BUSY"))
        _store_under_former_topics(app)
    finally:
        app.close()

    reopened = LedgerApplication(store, Program())
    try:
        former = reopened.recorder.select_notifications(start=1, limit=1_000)
        assert len(former) == len(stored) and {n.topic for n in former} <= set(FORMER_TOPICS)
        assert sorted(reopened.member_ids()) == ["BUSY", "M1", "M2"]  # found by the former Enrolled topic
        assert {member_id: _state(reopened.member(member_id)) for member_id in before} == before
        assert all(isinstance(e, Member.Event) for e in reopened.member_events("M1"))
        later = "2026-07-01"
        again = [purchase("1.00", "M1", later, txn="T1"), redemption(1, "M1", later, rid="D1"),
                 adjustment(1, "M2", later, aid="A1"), first[1], purchase("1.00", "M1", later)]  # fmt: skip
        outcomes = [d.outcome for d in reopened.apply_batch([(m, {"file": "new.jsonl", "line": 1}) for m in again])]
        # The ids the former-topic events claimed were found again (the claim index refilled by former topics).
        assert outcomes == [Outcome.REJECTED, Outcome.REJECTED, Outcome.REJECTED, Outcome.DUPLICATE, Outcome.RECORDED]
        newest = reopened.recorder.select_notifications(start=len(stored) + 1, limit=100)
        assert newest and all(n.topic.startswith("ledger.events:") for n in newest)  # new events: today's topics
    finally:
        reopened.close()


def _state(member: Member | None) -> tuple[Any, ...]:
    assert member is not None
    return (member.version, member.balance, member.tier, member.debt, list(member.lots), member.last_qualified_at)
