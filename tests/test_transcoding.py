"""Member events are stored in the compact format and read back exactly, as do those stored in the library's
format before it; snapshots are stored in exactly the bytes the library's own JSON transcoder would write."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper, StoredEvent, UUIDAsHex
from eventsourcing.utils import resolve_topic
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.streamgen import generate
from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.program import Program
from ledger.rules import Lot, PurchaseRecord
from ledger.storage.store import parse_store_url
from ledger.storage.transcoding import LEDGER_TRANSCODINGS, LedgerTranscoder
from schemas import Invalid, parse_message


def with_transcodings(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), *LEDGER_TRANSCODINGS):
        transcoder.register(transcoding)
    return transcoder


STANDARD = with_transcodings(JSONTranscoder())
OURS = with_transcodings(LedgerTranscoder())

utc_times = st.datetimes(timezones=st.just(UTC))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(),
    utc_times,
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.sets(st.text(max_size=8), max_size=4),
    st.builds(Lot, st.integers(1, 10**6), st.integers(0, 10**9), st.integers(0, 10**9), utc_times),
    st.builds(
        PurchaseRecord,
        st.text(max_size=8),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
        utc_times,
    ),
)
states = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(states)
@settings(max_examples=300)
def test_encoding_is_byte_for_byte_the_librarys(state: Any) -> None:
    assert OURS.encode(state) == STANDARD.encode(state)


def test_decimal_and_time_round_trip_exactly() -> None:
    state = {"amount": Decimal("10.10"), "at": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)}
    assert STANDARD.decode(OURS.encode(state)) == state
    assert str(STANDARD.decode(OURS.encode(state))["amount"]) == "10.10"


class ComparingTranscoder(LedgerTranscoder):
    """Encodes as the application does, and keeps what the library's own encoder wrote instead."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[bytes, bytes]] = []

    def encode(self, obj: Any) -> bytes:
        ours = super().encode(obj)
        self.pairs.append((ours, STANDARD.encode(obj)))
        return ours


class ComparingLedger(LedgerApplication):
    def construct_transcoder(self) -> ComparingTranscoder:
        transcoder = ComparingTranscoder()
        self.register_transcodings(transcoder)
        return transcoder


def _stream_ledger(app: LedgerApplication) -> LedgerApplication:
    messages = [m for m in (parse_message(line) for line in generate(3_000, members=12, seed=5))
                if not isinstance(m, Invalid)]  # fmt: skip
    for start in range(0, len(messages), 250):
        app.apply_batch([(m, {"file": "t", "line": start}) for m in messages[start : start + 250]])
    app.sweep(max(m.occurred_at for m in messages) + timedelta(days=800))  # lots expire, tiers drop
    kinds = {resolve_topic(n.topic).__name__ for n in app.recorder.select_notifications(start=1, limit=100_000)}
    assert {"Enrolled", "PointsEarned", "RefundApplied", "PointsRedeemed", "PointsAdjusted", "MessageRejected",
            "LotsExpired", "TierChanged"} <= kinds  # fmt: skip
    return app


def test_every_snapshot_of_a_stream_is_written_as_the_library_would(program: Program) -> None:
    app = _stream_ledger(ComparingLedger(parse_store_url("memory://"), program))
    transcoder = app.mapper.transcoder
    assert isinstance(transcoder, ComparingTranscoder)
    snapshots = [pair for pair in transcoder.pairs if b'"next_lot_id"' in pair[0]]
    assert snapshots and len(snapshots) == len(transcoder.pairs)  # member events take the compact path
    assert all(ours == standard for ours, standard in transcoder.pairs)
    app.close()


#: The class version each member event had before the compact format (1 unless named).
TAGGED_VERSIONS: dict[type[Any], int] = {Member.PointsRedeemed: 2}


def _as_the_library_stored_it(event: Member.Event) -> tuple[StoredEvent, Member.Event]:
    """`event` in the library's tagged format, with the class version it had before the compact one (so also
    without the fields added since), and the event that reading it back gives."""
    stored = Mapper[Any](transcoder=STANDARD).to_stored_event(event)
    state = json.loads(stored.state)
    earlier = TAGGED_VERSIONS.get(type(event), 1)
    if earlier > 1:
        state["class_version"] = earlier
    else:
        del state["class_version"]
    expected = event
    if isinstance(event, Member.Outcome):  # outcomes named their credit window's start later
        del state["credit_window_start"]
        expected = dataclasses.replace(event, credit_window_start=None)  # type: ignore[call-arg]
    return dataclasses.replace(stored, state=STANDARD.encode(STANDARD.decode(json.dumps(state).encode()))), expected


def test_every_member_event_is_stored_compact_and_read_back_exactly_in_either_format(program: Program) -> None:
    app = _stream_ledger(LedgerApplication(parse_store_url("memory://"), program))
    notifications = app.recorder.select_notifications(start=1, limit=100_000)
    for notification in notifications:
        assert b"_type_" not in notification.state  # plain JSON: times and decimals as text
        event = app.mapper.to_domain_event(notification)
        assert isinstance(event, Member.Event)
        again = app.mapper.to_domain_event(app.mapper.to_stored_event(event))
        assert again == event and vars(again) == vars(event)
        old, expected = _as_the_library_stored_it(event)
        assert b'"_type_":"datetime_iso"' in old.state
        assert app.mapper.to_domain_event(old) == expected  # read through the classes' upcasters
    app.close()
