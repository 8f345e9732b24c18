"""What happened to one message: the vocabulary shared by the ledger and its callers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.parsing import bounded_reason


class Outcome(StrEnum):
    """How a valid message ended; invalid input never reaches the ledger."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    #: A rule raised for this message: nothing of it is recorded, the rest of its batch is.
    FAILED = "failed"


class Rejection(StrEnum):
    """Business reasons a valid message changes no balance (recorded as an event)."""

    DUPLICATE_TRANSACTION = "duplicate_transaction"
    DUPLICATE_REFUND = "duplicate_refund"
    DUPLICATE_REDEMPTION = "duplicate_redemption"
    DUPLICATE_ADJUSTMENT = "duplicate_adjustment"
    #: A member's second opening balance (a legacy balance is carried over once).
    DUPLICATE_OPENING_BALANCE = "duplicate_opening_balance"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    EXCEEDS_PURCHASE = "exceeds_purchase"
    INSUFFICIENT_POINTS = "insufficient_points"
    #: The message would take a purchase's award or a member's balance beyond the ledger's limits.
    LIMIT_EXCEEDED = "limit_exceeded"


@dataclass(frozen=True, slots=True)
class Decision:
    """The ledger's answer to one message."""

    outcome: Outcome
    rejection: Rejection | None = None


RECORDED = Decision(Outcome.RECORDED)
DUPLICATE = Decision(Outcome.DUPLICATE)
FAILED = Decision(Outcome.FAILED)


@dataclass(frozen=True, slots=True)
class Failure:
    """A message of a batch that made a rule raise; the batch was applied without it."""

    index: int
    error: Exception

    @property
    def reason(self) -> str:
        text = (str(self.error).strip() or "no detail").splitlines()[0]
        return bounded_reason(f"{type(self.error).__name__}: {text}")


@dataclass(slots=True)
class Tally:
    """Counts of outcomes, as the ingest summary prints them."""

    processed: int = 0
    recorded: int = 0
    duplicates: int = 0
    rejected: int = 0
    invalid: int = 0
    failed: int = 0

    def count(self, outcome: Outcome | None) -> None:
        """Count one message; `None` means it was invalid."""
        self.processed += 1
        if outcome is None:
            self.invalid += 1
        elif outcome is Outcome.RECORDED:
            self.recorded += 1
        elif outcome is Outcome.DUPLICATE:
            self.duplicates += 1
        elif outcome is Outcome.FAILED:
            self.failed += 1
        else:
            self.rejected += 1

    def add(self, other: Tally) -> None:
        """Add another tally's counts to this one."""
        self.processed += other.processed
        self.recorded += other.recorded
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.invalid += other.invalid
        self.failed += other.failed

    @property
    def dead_letters(self) -> int:
        """Invalid messages and messages a rule failed on: both go to the dead letters."""
        return self.invalid + self.failed

    def as_dict(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "invalid": self.invalid,
            "failed": self.failed,
        }
