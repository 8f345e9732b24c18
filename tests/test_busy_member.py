"""A member with a long history costs what a new one does: ids live in the claim index, not in the member's
state; the state keeps only open lots and the credits that can still count; snapshots follow the state's size.
(benchmarks/busy_member.py measures the cost per message; these tests hold the behaviour that makes it flat.)"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import psycopg
import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import IntegrityError

from consumers.jsonlines import ingest_lines
from ledger.application import SNAPSHOT_EVENTS_MIN, LedgerApplication
from ledger.claims import Kind
from ledger.member import Member, member_uuid
from ledger.outcomes import Outcome, Rejection
from ledger.program import Program
from ledger.storage.claim_index import TABLE
from ledger.storage.store import parse_store_url
from schemas import Message
from tests.cli_helpers import cli
from tests.messages import CollectedLetters, at, encode, purchase, refund, wire

FIXTURES = Path(__file__).parent / "fixtures"


def _source(line: int = 1) -> dict[str, Any]:
    return {"file": "test", "line": line}


def _decisions(app: LedgerApplication, *messages: Message) -> list[tuple[Outcome, Rejection | None]]:
    return [(d.outcome, d.rejection) for d in app.apply_batch([(m, _source(i)) for i, m in enumerate(messages)])]


OK = (Outcome.RECORDED, None)
DUP = (Outcome.DUPLICATE, None)


def _purchases(count: int, span: timedelta, member: str = "BUSY") -> Iterator[bytes]:
    step = span / count
    for n in range(count):
        when = (at("2024-01-01") + step * n).isoformat()
        yield encode(wire("purchase", member, when, event_id=f"e{n}", transaction_id=f"T{n}", amount="10.00",
                          currency="USD"))  # fmt: skip


def test_ids_are_duplicates_across_batches_while_the_earlier_one_is_still_being_written(store_url: str) -> None:
    """Batches of one message, each decided while the one before is written (ledger.pipeline)."""
    first = encode(wire("purchase", "M1", "2024-01-01", event_id="e1", transaction_id="T1", amount="100.00",
                        currency="USD"))  # fmt: skip
    lines = [
        first,
        first,
        encode(wire("refund", "M1", "2024-01-02", event_id="e2", refund_id="R1", transaction_id="T1", amount="40.00")),
        encode(wire("refund", "M1", "2024-01-03", event_id="e3", refund_id="R1", transaction_id="T1", amount="10.00")),
        encode(wire("refund", "M1", "2024-01-03", event_id="e4", refund_id="R2", transaction_id="T1", amount="60.00")),
        encode(wire("refund", "M1", "2024-01-03", event_id="e5", refund_id="R3", transaction_id="T1", amount="0.01")),
        encode(wire("purchase", "M1", "2024-01-04", event_id="e6", transaction_id="T1", amount="5.00", currency="USD")),
    ]  # fmt: skip
    app = LedgerApplication(parse_store_url(store_url), Program())
    try:
        tally = ingest_lines(app, io.BytesIO(b"\n".join(lines)), "t.jsonl", CollectedLetters(), batch_size=1)
        assert (tally.recorded, tally.duplicates, tally.rejected) == (3, 1, 3)
        rejected = [e.reason for e in app.member_events("M1") if isinstance(e, Member.MessageRejected)]
        assert rejected == ["duplicate_refund", "exceeds_purchase", "duplicate_transaction"]
        member = app.member("M1")
        assert member is not None and member.balance == 0  # refunded in full, in two parts
    finally:
        app.close()


def test_the_claim_index_itself_refuses_an_id_claimed_twice(store_url: str) -> None:
    """Should memory ever miss a claim (another writer, a bug), the insert fails and nothing is recorded."""
    app = LedgerApplication(parse_store_url(store_url), Program())
    try:
        assert _decisions(app, purchase("10.00", event_id="e1", txn="T1")) == [OK]
        message = purchase("5.00", event_id="e2", txn="T2")
        decided = app.decide([(message, _source())])
        _insert_claim(store_url, member_uuid("M1"), Kind.EVENT, "e2")  # recorded meanwhile, elsewhere
        events_before = app.recorder.max_notification_id()
        with pytest.raises(IntegrityError):
            app.write(decided)
        assert app.recorder.max_notification_id() == events_before
    finally:
        app.close()


def _insert_claim(store_url: str, member: UUID, kind: str, key: str) -> None:
    statement = f"INSERT INTO {TABLE} (originator_id, kind, key, originator_version, ref) VALUES "
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            db.execute(statement + "(?, ?, ?, 99, NULL)", (member.bytes, kind, key))
    else:
        with psycopg.connect(store_url.replace("postgresql://", "postgres://")) as db:
            db.execute(statement + "(%s, %s, %s, 99, NULL)", (member, kind, key))


def test_a_ledger_written_before_the_claim_index_gets_it_from_its_log(tmp_path: Path) -> None:
    """`fixtures/ledger-v2.sqlite3` was written when members kept their ids in their state."""
    path = tmp_path / "ledger.sqlite3"
    shutil.copyfile(FIXTURES / "ledger-v2.sqlite3", path)
    app = LedgerApplication(parse_store_url(f"sqlite:///{path}"), Program())
    try:
        member_id = json.loads((FIXTURES / "ledger-v2.answers.json").read_text())["balances"][0]["member_id"]
        earned = next(e for e in app.member_events(member_id) if isinstance(e, Member.PointsEarned))
        event_id, txn = earned.provenance["event_id"], earned.transaction_id
        when = (app.member(member_id).last_effective_at + timedelta(days=1)).isoformat()  # type: ignore[union-attr]
        lines = [
            encode(wire("purchase", member_id, when, event_id=event_id, transaction_id="NEW", amount="1.00",
                        currency="USD")),  # a redelivery: by event id, whatever it says
            encode(wire("purchase", member_id, when, event_id="fresh-1", transaction_id=txn, amount="1.00",
                        currency="USD")),  # a reused transaction id
            encode(wire("refund", member_id, when, event_id="fresh-2", refund_id="fresh-R", transaction_id=txn,
                        amount=str(earned.amount))),  # a refund of the old purchase, in full
        ]  # fmt: skip
        tally = ingest_lines(app, io.BytesIO(b"\n".join(lines)), "t.jsonl", CollectedLetters(), batch_size=10)
        assert (tally.duplicates, tally.rejected, tally.recorded) == (1, 1, 1)
        refunded = app.member_events(member_id)[-1]
        assert isinstance(refunded, Member.RefundApplied)
        assert refunded.points_clawed_back == earned.awarded  # computed from the purchase as the log holds it
    finally:
        app.close()


def test_a_postgresql_ledger_without_its_claim_index_gets_it_filled_once(postgres_url: str) -> None:
    app = LedgerApplication(parse_store_url(postgres_url), Program())
    bought, refunded = purchase("10.00", event_id="p-1", txn="T1"), refund("T1", "5.00", rid="R1", event_id="p-2")
    assert _decisions(app, bought, refunded) == [OK, OK]
    app.close()
    with psycopg.connect(postgres_url) as db:
        db.execute(f"DROP TABLE {TABLE}")  # as a ledger written before the index existed
    app = LedgerApplication(parse_store_url(postgres_url), Program())
    try:
        dup_refund = (Outcome.REJECTED, Rejection.DUPLICATE_REFUND)
        again = [bought, refund("T1", "1.00", rid="R1", event_id="p-3"), refund("T1", "5.00", event_id="p-4")]
        assert _decisions(app, *again) == [DUP, dup_refund, OK]  # the last one: the rest of T1
        assert app.member("M1").balance == 0  # type: ignore[union-attr]
    finally:
        app.close()


def test_a_busy_members_state_holds_only_open_lots_and_counting_credits(sqlite_url: str) -> None:
    """900 purchases over three years: at the end only the last year's are open lots and count for the tier,
    and snapshots were taken as the state grew (each replaying no more events than its state holds)."""
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    try:
        lines = list(_purchases(900, timedelta(days=3 * 365)))
        tally = ingest_lines(app, io.BytesIO(b"\n".join(lines)), "busy.jsonl", CollectedLetters(), batch_size=50,
                             received_at=at("2030-01-01"))  # fmt: skip
        assert tally.recorded == 900
        member = app.member("BUSY")
        assert member is not None
        a_year = 900 // 3
        assert a_year - 2 <= len(member.lots) <= a_year + 1
        assert a_year - 2 <= len(member.credit_window) <= a_year + 1
        assert member.credit_window.total == 10 * len(member.credit_window)
        assert member.balance == sum(lot.remaining for lot in member.lots) == member.lots.points > 0

        assert app.snapshots is not None
        snapshots = [cast(Snapshot, snapshot) for snapshot in app.snapshots.get(member.id)]
        versions = [snapshot.originator_version for snapshot in snapshots]
        assert versions and versions[0] >= SNAPSHOT_EVENTS_MIN
        for earlier, later in itertools.pairwise(snapshots):
            held = len(earlier.state["lots"]) + len(earlier.state["credit_window"])
            assert later.originator_version - earlier.originator_version >= max(SNAPSHOT_EVENTS_MIN, held)
        # The newest snapshot and the events after it make the member that folding every event makes.
        folded: Any = None
        for event in app.member_events("BUSY"):
            folded = event.mutate(folded)
        assert vars(member) == vars(folded)
    finally:
        app.close()


def test_an_older_ledger_whose_log_claims_an_id_twice_still_opens_and_verify_names_it(sqlite_url: str) -> None:
    """Filling the index keeps a duplicated id's first claim, instead of stopping every command."""
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    assert _decisions(app, purchase("10.00", event_id="p-1", txn="T1")) == [OK]
    app.close()
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # as an older ledger, whose member state let a re-sent purchase in twice
        member, version, topic, state = db.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE topic LIKE "
            "'%PointsEarned' ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        db.execute("INSERT INTO stored_events (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                   (member, version + 1, topic, state))  # fmt: skip
        db.execute(f"DROP TABLE {TABLE}")
    reopened = LedgerApplication(parse_store_url(sqlite_url), Program())
    try:
        assert reopened.claimed("M1", Kind.EVENT, "p-1")
    finally:
        reopened.close()
    verified = cli("verify", "--format", "json", store=sqlite_url)
    assert verified.returncode == 1
    assert "event id 'p-1' is recorded twice" in verified.stdout
