"""The ids a member's history has used: what makes a redelivery a duplicate and a reused business id a rejection.

A member's recorded events claim ids: every message's `event_id`, a purchase's transaction id, a refund's,
a redemption's and an adjustment's own id. Deciding a new message asks whether its ids are already
claimed (and, for a refund, what became of its purchase). These answers are not kept in the member's
state, which would then grow with its whole history: the application looks them up per batch in an
index the store keeps beside the events (`ledger.storage.claim_index`), written in the same transaction.
"""

from __future__ import annotations

from typing import Final, NamedTuple, Protocol

from ledger.rules import PurchaseRecord
from schemas import Adjustment, Message, Purchase, Redemption, Refund


class Kind:
    """What an id is, as its one-letter code in the store's index. Plain strings, not an Enum: every message
    hashes a few of them, and an Enum member hashes through Python code (measured: a tenth of deciding)."""

    EVENT: Final = "e"
    TRANSACTION: Final = "t"
    REFUND: Final = "r"
    REDEMPTION: Final = "d"
    ADJUSTMENT: Final = "a"
    #: Each kind with how a person would name it.
    NAMES: Final = {
        EVENT: "event id", TRANSACTION: "transaction id", REFUND: "refund id", REDEMPTION: "redemption id",
        ADJUSTMENT: "adjustment id",
    }  # fmt: skip


class Claim(NamedTuple):
    """An id an event uses up for its member (`kind` one of Kind's codes); `purchase` names the transaction a
    refund belongs to."""

    kind: str
    key: str
    purchase: str | None = None


class Recall(Protocol):
    """What a member's recorded history says about ids, asked while deciding one message."""

    def claimed(self, kind: str, key: str) -> bool:
        """Has an event of this member used this id?"""
        ...

    def purchase(self, transaction_id: str) -> PurchaseRecord | None:
        """The member's purchase with this transaction id, with what refunds took back since; None if none."""
        ...


def claims_to_check(message: Message) -> list[Claim]:
    """The ids deciding `message` asks about."""
    claims = [Claim(Kind.EVENT, message.event_id)]
    if isinstance(message, Purchase):
        claims.append(Claim(Kind.TRANSACTION, message.transaction_id))
    elif isinstance(message, Refund):
        claims.append(Claim(Kind.REFUND, message.refund_id))
    elif isinstance(message, Redemption):
        claims.append(Claim(Kind.REDEMPTION, message.redemption_id))
    elif isinstance(message, Adjustment):
        claims.append(Claim(Kind.ADJUSTMENT, message.adjustment_id))
    return claims


def purchase_to_recall(message: Message) -> str | None:
    """The transaction whose purchase deciding `message` needs: a refund's."""
    return message.transaction_id if isinstance(message, Refund) else None
