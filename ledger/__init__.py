"""The ledger, in three parts (docs/architecture.md).

- The domain, this package's own modules: the program, the pure rules, the Member aggregate and its
  decisions (member), its events (events), lot moves, claims, outcomes. No I/O: it imports no storage.
- Storage (ledger.storage): the store, its encodings and what is written beside the library's tables.
- The application service (application, pipeline): the write path's one owner, `decide` then `write`,
  wiring the domain to storage. The library's private API is reached only through eventsourcing_adapter.
"""
