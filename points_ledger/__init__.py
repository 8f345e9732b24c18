"""points-ledger: the command line, the one place that wires schemas, ledger, projections and consumers."""
