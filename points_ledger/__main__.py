"""`python -m points_ledger` runs the CLI."""

from points_ledger.cli import run

run()
