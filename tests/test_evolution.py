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

from consumers.jsonlines import ingest_lines
from devkit.streamgen import DEFAULT_START
from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.program import Program
from ledger.storage.store import parse_store_url
from points_ledger.output import jsonable
from projections import kpis, periods, queries
from projections.digest import legacy_digest
from projections.runner import Projections, select_views
from schemas import Invalid, Redemption, parse_message
from tests.cli_helpers import cli
from tests.messages import CollectedLetters, encode, wire

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
