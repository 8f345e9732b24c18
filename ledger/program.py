"""The loyalty program: every number the rules use, as one frozen config.

Loaded from a TOML file (`--program` / `LEDGER_PROGRAM`); anything the file
leaves out takes the default program's value.
"""

from __future__ import annotations

import functools
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.parsing import Acceptance

#: Days are whole days; the longest period any rule may use.
DAYS_MAX = 36_500
#: Most hours a message may claim to lie after its arrival (a year).
FUTURE_TOLERANCE_HOURS_MAX = 8_760

UtcTime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(UTC))]


class ProgramError(ValueError):
    """The program file is missing, unreadable or breaks a rule of its own."""


class Tier(BaseModel):
    """A tier: reached at `threshold` qualifying credits, earns at `multiplier`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
    threshold: Annotated[int, Field(ge=0)]
    multiplier: Annotated[Decimal, Field(gt=0, le=100)]


DEFAULT_TIERS = (
    Tier(name="member", threshold=0, multiplier=Decimal("1")),
    Tier(name="silver", threshold=1000, multiplier=Decimal("1.25")),
    Tier(name="gold", threshold=5000, multiplier=Decimal("1.5")),
    Tier(name="platinum", threshold=15000, multiplier=Decimal("2")),
)


class Program(BaseModel):
    """The program config in force; the defaults are the default program."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    earn_rate: Annotated[Decimal, Field(gt=0, le=1000)] = Decimal("1")
    points_validity_days: Annotated[int, Field(ge=1, le=DAYS_MAX)] = 365
    tier_window_days: Annotated[int, Field(ge=1, le=DAYS_MAX)] = 365
    tier_retention_days: Annotated[int, Field(ge=0, le=DAYS_MAX)] = 365
    point_value: Annotated[Decimal, Field(ge=0, le=1000)] = Decimal("0.01")
    breakage_rate: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0")
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    #: Messages must have happened in this range (inclusive): the ledger computes expiries and tier
    #: windows from these times, and a time outside it is a sender's error, dead-lettered.
    occurred_at_earliest: UtcTime = datetime(1970, 1, 1, tzinfo=UTC)
    occurred_at_latest: UtcTime = datetime(2100, 1, 1, tzinfo=UTC)
    #: A message more than this after it was received comes from a wrong clock and is dead-lettered.
    future_tolerance_hours: Annotated[int, Field(ge=1, le=FUTURE_TOLERANCE_HOURS_MAX)] = 24

    @model_validator(mode="after")
    def _tiers_ascend(self) -> Self:
        if not self.tiers or self.tiers[0].threshold != 0:
            raise ValueError("the first tier must have threshold 0 (every member qualifies for it)")
        thresholds = [tier.threshold for tier in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tier thresholds must strictly ascend")
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        return self._times_computable()

    def _times_computable(self) -> Self:
        """Every time a rule derives from an accepted time must exist: t - window, t + validity, ..."""
        if self.occurred_at_latest <= self.occurred_at_earliest:
            raise ValueError("occurred_at_latest must be after occurred_at_earliest")
        back = timedelta(days=self.tier_window_days + 1)
        ahead = timedelta(days=max(self.points_validity_days, self.tier_retention_days) + 1)
        if self.occurred_at_earliest - datetime.min.replace(tzinfo=UTC) < back:
            raise ValueError(f"occurred_at_earliest must be at least tier_window_days after {datetime.min.date()}")
        if datetime.max.replace(tzinfo=UTC) - self.occurred_at_latest < ahead:
            raise ValueError(
                f"occurred_at_latest must be at least the longest validity or retention before {datetime.max.date()}"
            )
        return self

    def acceptance(self) -> Acceptance:
        """What a message must satisfy, beyond the wire format, to reach the rules."""
        return Acceptance(
            currency=self.currency,
            tiers=tuple(tier.name for tier in self.tiers),
            earliest=self.occurred_at_earliest,
            latest=self.occurred_at_latest,
            future_tolerance=timedelta(hours=self.future_tolerance_hours),
        )

    @property
    def base_tier(self) -> str:
        return self.tiers[0].name

    def tier_rank(self, name: str) -> int:
        """Position of a tier, lowest first; unknown names are a broken invariant."""
        rank = self._tier_ranks.get(name)
        if rank is None:
            raise ProgramError(f"tier {name!r} is not in the program")
        return rank

    @functools.cached_property
    def _tier_ranks(self) -> dict[str, int]:
        return {tier.name: rank for rank, tier in enumerate(self.tiers)}

    def multiplier(self, name: str) -> Decimal:
        return self.tiers[self.tier_rank(name)].multiplier


def load_program(path: str | Path | None) -> Program:
    """The default program, or the one in a TOML file."""
    if path is None:
        return Program()
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ProgramError(f"cannot read program file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ProgramError(f"program file {path} is not valid TOML: {error}") from error
    try:
        return Program.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in detail['loc']) or 'program'}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        )
        raise ProgramError(f"program file {path} is invalid: {problems}") from error
