"""The outbound contract: balance events the ledger publishes for downstream services (`points-ledger publish`).

Each is the value of one Kafka record, keyed by member id, with CloudEvents headers in Kafka binary mode
(`ce_id`, `ce_type`, `ce_source`, `ce_specversion`, `ce_time`, `ce_subject`, `ce_dataschema`, `content-type`).
`ce_type` carries the schema version: a consumer that reads `…BalanceChanged.v1` knows which fields to expect,
and a change that removes or renames a field gets a new version, published beside the old while consumers move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: The version of every outbound schema below (part of `ce_type` and of the schema file names).
SCHEMA_VERSION = 1
#: Why a balance changed: one reason per roll-forward flow (adjusted_in and adjusted_out are both `adjusted`).
Reason = Literal["earned", "redeemed", "expired", "clawed_back", "adjusted", "migrated"]


class _BalanceEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BalanceChanged(_BalanceEvent):
    """A member's balance changed: the balance after, the signed change, why, and which message caused it."""

    member_id: str
    balance: int = Field(description="The member's balance after this change (negative: a debt).")
    delta: int = Field(description="The signed change of the balance.")
    reason: Reason
    tier: str = Field(description="The member's tier after this change.")
    effective_at: AwareDatetime = Field(description="The ledger time of the change.")
    occurred_at: AwareDatetime | None = Field(description="When the causing message says it happened.")
    source_event_id: str | None = Field(description="The inbound message's event_id (none for expiry).")
    sequence: int = Field(
        ge=1, description="The member's change number: strictly increasing per member, the same on every re-send."
    )


class TierChanged(_BalanceEvent):
    """A member moved up, or down, a tier."""

    member_id: str
    from_tier: str = Field(alias="from")
    to: str
    effective_at: AwareDatetime
    credits: int = Field(description="Qualifying credits in the window when the tier was decided.")


class RedemptionRejected(_BalanceEvent):
    """A redemption the rules refused, so a redeeming service learns the outcome."""

    member_id: str
    redemption_id: str
    reason: str
    balance: int = Field(description="The member's balance when the redemption was refused.")


BALANCE_EVENT_MODELS: dict[str, type[_BalanceEvent]] = {
    model.__name__: model for model in (BalanceChanged, TierChanged, RedemptionRejected)
}


@dataclass(frozen=True, slots=True)
class Outbound:
    """One record to publish: the event's name, its key (the member id), its JSON value and its headers."""

    name: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def event_type(name: str) -> str:
    """The CloudEvents `ce_type` of an outbound event, with its schema version."""
    return f"com.points-ledger.{name}.v{SCHEMA_VERSION}"


def schema_file(name: str) -> str:
    """The file name `schemas export` writes an outbound event's JSON Schema to."""
    return f"{name}.v{SCHEMA_VERSION}.schema.json"
