"""The one error that stops the ledger: a broken invariant."""

from __future__ import annotations


class LedgerInvariantError(RuntimeError):
    """A broken invariant: the ledger stops rather than record something wrong (never a rule's verdict, never
    dead-lettered)."""
