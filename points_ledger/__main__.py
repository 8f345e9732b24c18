"""`python -m points_ledger` runs the CLI."""

from points_ledger.cli import run

if __name__ == "__main__":  # not when something only imports the module
    run()
