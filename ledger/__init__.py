"""The ledger: program config, pure rules, the Member aggregate and the application service."""
