"""How snapshots become bytes: the library's JSON format, encoded by orjson. (Member events have a compact
format of their own, ledger.compact, which also reads their oldest versions, stored in this one.)

The stored format is exactly the library's `JSONTranscoder` format (types it
cannot write natively become `{"_type_": ..., "_data_": ...}` through the
registered transcodings), so snapshots read back with the library's own decoder
and older stores stay readable. Only encoding is swapped: the standard
library's encoder took about a sixth of Kafka consume time; orjson writes the
same bytes in half the time. orjson is told to hand datetimes and dataclasses
to the transcodings instead of writing them itself, as the standard encoder
does; `tests/test_transcoding.py` checks the bytes are the same.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Transcoding

from ledger.credit_window import Credit, CreditWindow
from ledger.eventsourcing_adapter import transcodings_encoder
from ledger.open_lots import OpenLots
from ledger.rules import Lot, PurchaseRecord

#: orjson writes these types itself unless told to pass them to `default`, as the standard encoder does.
_PASS_TO_TRANSCODINGS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class LedgerTranscoder(JSONTranscoder):
    """The library's JSON transcoder, encoding with orjson."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=transcodings_encoder(self), option=_PASS_TO_TRANSCODINGS)


class SetAsList(Transcoding):
    type = set
    name = "set"

    def encode(self, obj: set[str]) -> list[str]:
        return sorted(obj)

    def decode(self, data: list[str]) -> set[str]:
        return set(data)


class DataclassAsDict(Transcoding):
    """A dataclass of plain fields (lots, purchases in snapshots) as the dict of its fields."""

    def __init__(self, cls: type[Any], name: str) -> None:
        self.type = cls
        self.name = name

    def encode(self, obj: Any) -> dict[str, Any]:
        return asdict(obj)

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


class OpenLotsAsRows(Transcoding):
    """A snapshot's open lots as rows `[lot_id, points, remaining, expires_at]`, in spending order: a large
    member's thousands of lots cost one callback, not one per lot and per time."""

    type = OpenLots
    name = "open_lots"

    def encode(self, obj: OpenLots) -> list[list[Any]]:
        return [[lot.lot_id, lot.points, lot.remaining, lot.expires_at.isoformat()] for lot in obj]

    def decode(self, data: list[list[Any]]) -> OpenLots:
        return OpenLots(Lot(lot_id, points, remaining, datetime.fromisoformat(expires_at))
                        for lot_id, points, remaining, expires_at in data)  # fmt: skip


class CreditWindowAsRows(Transcoding):
    """A snapshot's tier window as rows `[transaction_id, effective_at, credits]`, oldest first."""

    type = CreditWindow
    name = "credit_window"

    def encode(self, obj: CreditWindow) -> list[list[Any]]:
        return [[credit.transaction_id, credit.effective_at.isoformat(), credit.credits] for credit in obj]

    def decode(self, data: list[list[Any]]) -> CreditWindow:
        window = CreditWindow()
        for transaction_id, effective_at, credits in data:
            window.restore(Credit(transaction_id, datetime.fromisoformat(effective_at), credits))
        return window


#: The transcodings member events and snapshots need beyond the library's own (sets, purchases and single
#: lots appear in snapshots of older Member versions).
LEDGER_TRANSCODINGS: tuple[Transcoding, ...] = (
    SetAsList(),
    DataclassAsDict(Lot, "lot"),
    DataclassAsDict(PurchaseRecord, "purchase"),
    OpenLotsAsRows(),
    CreditWindowAsRows(),
)
