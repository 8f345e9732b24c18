"""points-ledger: the command line, which wires schemas, ledger, projections, consumers and the development kit
together; nothing below it imports it."""
