"""Ingestion: bytes from JSON Lines files (and, later, Kafka) into the ledger, bad input into dead letters."""
