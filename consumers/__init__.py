"""Ingestion: bytes from Kafka topics and JSON Lines files into the ledger, bad input into dead letters; legacy
exports and reconcile reports carried over or corrected, a batch of rows per transaction."""
