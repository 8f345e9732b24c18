"""The development kit: a local Kafka-protocol broker, a realistic stream generator and the demo's run.

For trying the ledger out, for the tests and for the benchmarks; production never runs any of it. It sits
beside the command line, below it: it may use consumers/, ledger/, projections/ and schemas/, and the CLI
wires it into `points-ledger demo` and `points-ledger dev broker`; nothing here imports the CLI.
"""
