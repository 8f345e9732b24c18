"""Inbound message models: one strict pydantic model per message `type`.

Strict mode is deliberate: a POS system that sends `"points": "5"` or a naive
timestamp has a bug we want to see in the dead letters, not silently coerced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: Largest amount of money one message may carry (12 integer digits, 2 decimals).
AMOUNT_MAX_DIGITS = 14
#: Largest absolute number of points one message may move.
POINTS_MAX = 1_000_000_000
#: Longest member id.
MEMBER_ID_MAX_CHARS = 64
#: One cent: every amount is a whole number of cents.
CENT = Decimal("0.01")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before the first representable UTC time
        raise ValueError("is outside the range of representable times") from None


def _whole_cents(amount: Decimal) -> Decimal:
    """An exact count of cents, written with two places (1E-999999999 passes pydantic 2.13's digit checks)."""
    try:
        exact = amount.quantize(CENT)
    except InvalidOperation:
        raise ValueError("is not an amount of money") from None
    if exact != amount:
        raise ValueError("must be a whole number of cents")
    return exact


def _nonzero(points: int) -> int:
    if points == 0:
        raise ValueError("must not be 0")
    return points


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
EventId = Annotated[str, Field(min_length=1, max_length=128)]
MemberId = Annotated[str, Field(min_length=1, max_length=MEMBER_ID_MAX_CHARS)]
BusinessId = Annotated[str, Field(min_length=1, max_length=128)]
ShortText = Annotated[str, Field(min_length=1, max_length=256)]
Amount = Annotated[Decimal, Field(gt=0, decimal_places=2, max_digits=AMOUNT_MAX_DIGITS), AfterValidator(_whole_cents)]
PositivePoints = Annotated[int, Field(gt=0, le=POINTS_MAX)]
SignedPoints = Annotated[int, Field(ge=-POINTS_MAX, le=POINTS_MAX)]
Currency = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]


class _Message(BaseModel):
    """Fields every message carries."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    member_id: MemberId
    occurred_at: UtcDatetime


class Purchase(_Message):
    """A member bought something; earns points."""

    type: Literal["purchase"]
    transaction_id: BusinessId
    amount: Amount
    currency: Currency
    store_id: ShortText | None = None
    channel: ShortText | None = None

    @field_validator("currency")
    @classmethod
    def _program_currency(cls, currency: str, info: ValidationInfo) -> str:
        """The program's currency comes in as validation context (schemas know no program)."""
        expected = (info.context or {}).get("currency")
        if expected is not None and currency != expected:
            raise ValueError(f"must be the program currency {expected}, not {currency}")
        return currency


class Refund(_Message):
    """Money returned for (part of) an earlier purchase; claws points back."""

    type: Literal["refund"]
    refund_id: BusinessId
    transaction_id: BusinessId
    amount: Amount


class Reward(BaseModel):
    """What a redemption bought, as a version-2 redemption names it: the catalog's id and the name shown."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: ShortText
    name: ShortText | None = None


class Redemption(_Message):
    """Points spent on a reward.

    Version 1 (no `version`, or 1) names the reward with free text, `reward`. Version 2 (`"version": 2`)
    gives an object, `reward: {"id", "name"}`, so rewards can be counted by catalog id. Both are accepted."""

    type: Literal["redemption"]
    version: Literal[1, 2] = 1
    redemption_id: BusinessId
    points: PositivePoints
    reward: ShortText | Reward | None = None

    @model_validator(mode="after")
    def _reward_of_its_version(self) -> Redemption:
        if self.version == 1 and isinstance(self.reward, Reward):
            raise ValueError('reward: an object needs "version": 2 (version 1 names the reward with text)')
        if self.version == 2 and isinstance(self.reward, str):
            raise ValueError('reward: version 2 gives {"id", "name"}, not text')
        return self

    @property
    def reward_id(self) -> str | None:
        return self.reward.id if isinstance(self.reward, Reward) else None

    @property
    def reward_name(self) -> str | None:
        return self.reward.name if isinstance(self.reward, Reward) else self.reward


class Adjustment(_Message):
    """A manual correction by an operator, with a reason."""

    type: Literal["adjustment"]
    adjustment_id: BusinessId
    points: Annotated[SignedPoints, AfterValidator(_nonzero)]
    reason: ShortText
    operator: ShortText


class Enrollment(_Message):
    """A member joins the program."""

    type: Literal["enrollment"]
    enrolled_at: UtcDatetime | None = None


class OpeningBalance(_Message):
    """A balance carried over from a legacy loyalty system: accepted once per member.

    Positive points become a lot (expiring at `expires_at`, or after the program's validity); negative points
    a debt carried over. A `tier` above the member's current one is granted at once."""

    type: Literal["opening_balance"]
    opening_balance_id: BusinessId
    points: SignedPoints
    tier: ShortText | None = None
    expires_at: UtcDatetime | None = None
    legacy_ref: ShortText | None = None

    @field_validator("tier")
    @classmethod
    def _program_tier(cls, tier: str | None, info: ValidationInfo) -> str | None:
        """The program's tier names come in as validation context, like its currency."""
        tiers = (info.context or {}).get("tiers")
        if tier is not None and tiers is not None and tier not in tiers:
            raise ValueError(f"must be one of the program's tiers ({', '.join(tiers)}), not {tier}")
        return tier

    @model_validator(mode="after")
    def _expires_after_it_occurred(self) -> OpeningBalance:
        if self.expires_at is not None and self.expires_at <= self.occurred_at:
            raise ValueError("expires_at must be later than occurred_at")
        return self


Message = Annotated[
    Purchase | Refund | Redemption | Adjustment | Enrollment | OpeningBalance,
    Field(discriminator="type"),
]

#: Every message model by its wire `type`.
MESSAGE_MODELS: dict[str, type[_Message]] = {
    "purchase": Purchase,
    "refund": Refund,
    "redemption": Redemption,
    "adjustment": Adjustment,
    "enrollment": Enrollment,
    "opening_balance": OpeningBalance,
}
