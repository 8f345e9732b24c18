"""Runnable examples for the teams that build on the ledger."""
